//! The trained CLEX model shipped in models/ (`clex-llama-5m.gguf`, F16), run by our
//! runtime, against its PyTorch training code (models/train/make_reference.py) on a held-out
//! 1024-token window of the Book of Isaiah: one forward over all 1024 tokens, CLEX bucket
//! t = ceil(1024/256) = 4.
//!
//! The reference (tests/data/trained/reference.json, `mode` f16w) is computed with the
//! weights exactly as the GGUF stores them: the matrices rounded to f16, float32 activations.
//! Measured max |Δlogit| against it: 1.97e-3 (5 M model; the 3 M model before it: 2.6e-5).
//! The gap is there at position 0 already, so it comes from the matrix products (ggml's F16
//! path against PyTorch's float32 GEMM), not from RoPE or CLEX. Against the unrounded float32
//! checkpoint the reference itself moves by 5.9e-3; the file records how far the modes differ.
//! On a CPU without AMX (ggml's other F16 path, as with `repack: false` here) the gap is
//! 4.7e-3 and the 2e-3 logit bound fails; see models/README.md.
//! Checks: full-vocabulary
//! logits at 8 positions and the max logit at every position within 2e-3, the argmax equal
//! wherever the reference's top-1/top-2 gap is at least 2e-3, the window's mean NLL within
//! 1e-3, the CLEX table row within 1e-5 relative, and the tokenizer against SentencePiece.
mod common;
use clex::model::Model;
use clex::session::{Logits, Session, SessionOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| {
        let p = root().join("tests/data/trained/reference.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    })
}

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let name = reference()["gguf"].as_str().unwrap();
        Arc::new(Model::load(&root().join("models").join(name)).unwrap())
    })
    .clone()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}
fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

#[test]
fn logits_match_pytorch_on_a_heldout_window() {
    let r = reference();
    let m = model();
    let n_vocab = m.hparams.n_vocab;
    let ids = u32s(&r["ids"]);
    let n = ids.len();
    assert_eq!(n as u64, r["n"].as_u64().unwrap());
    let opts = SessionOptions {
        n_ctx: n,
        n_ubatch: n, // one forward over the whole window, as the reference
        n_threads: 2,
        flash_attn: false,
        type_k: ggml_sys::GGML_TYPE_F32,
        type_v: ggml_sys::GGML_TYPE_F32,
        ..Default::default()
    };
    let mut s = Session::new(m.clone(), opts).unwrap();
    let logits = s.eval(&ids, Logits::All).unwrap();
    assert_eq!(s.bucket() as u64, r["t"].as_u64().unwrap(), "CLEX bucket for n = {n}");
    let row = |i: usize| &logits[i * n_vocab..(i + 1) * n_vocab];

    // full logits at the chosen positions
    let mut worst_full = 0f64;
    for (k, p) in r["positions"].as_array().unwrap().iter().enumerate() {
        let p = p.as_u64().unwrap() as usize;
        let want = floats(&r["logits"][k]);
        assert_eq!(want.len(), n_vocab);
        for (a, b) in want.iter().zip(row(p)) {
            worst_full = worst_full.max((a - *b as f64).abs());
        }
    }
    // max logit and argmax at every position
    let (want_max, want_arg, margin) = (floats(&r["max_logit"]), u32s(&r["argmax"]), floats(&r["margin"]));
    let mut worst_max = 0f64;
    let (mut checked, mut ties) = (0, 0);
    for i in 0..n {
        let got = row(i);
        let a = argmax(got);
        worst_max = worst_max.max((got[a] as f64 - want_max[i]).abs());
        if margin[i] >= 2e-3 {
            assert_eq!(a as u32, want_arg[i], "argmax at position {i} (reference gap {})", margin[i]);
            checked += 1;
        } else {
            ties += 1;
        }
    }
    // mean NLL of the window (every prediction after the first token)
    let mut nll = 0f64;
    for i in 0..n - 1 {
        let l = row(i);
        let mx = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = mx + l.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
        nll += lse - l[ids[i + 1] as usize] as f64;
    }
    nll /= (n - 1) as f64;
    let want_nll = r["mean_nll"].as_f64().unwrap();
    eprintln!(
        "n = {n}, t = {}, reference mode {}: max |Δlogit| {worst_full:.2e} over {} full rows, \
         {worst_max:.2e} over the max logit of all {n} positions; {checked} argmaxes equal ({ties} near-ties skipped); \
         mean NLL {nll:.6} vs {want_nll:.6} (PPL {:.3}); reference modes differ by {}",
        s.bucket(),
        r["mode"],
        r["positions"].as_array().unwrap().len(),
        nll.exp(),
        r["mode_max_abs_diffs"]
    );
    assert!(worst_full <= 2e-3, "full logits differ by {worst_full}");
    assert!(worst_max <= 2e-3, "max logits differ by {worst_max}");
    assert!((nll - want_nll).abs() <= 1e-3, "mean NLL {nll} vs {want_nll}");
}

#[test]
fn clex_table_row_matches_pytorch() {
    let r = reference();
    let m = model();
    let table = m.clex.as_ref().expect("a CLEX model");
    assert_eq!(table.orig_ctx() as u64, r["L"].as_u64().unwrap());
    assert_eq!(table.log_scale(), r["log_scale"].as_bool().unwrap());
    let t = r["t"].as_u64().unwrap() as u32;
    let want = floats(&r["table_t"]);
    let got = table.z(t);
    let worst = want.iter().zip(got).map(|(a, &b)| ((a - b as f64) / a).abs()).fold(0f64, f64::max);
    eprintln!("z({t}): max relative difference {worst:.2e}");
    assert!(worst <= 1e-5, "z({t}) differs by {worst} (relative)");
}

#[test]
fn tokenizer_matches_sentencepiece() {
    let case = &reference()["tokenizer_case"];
    let got = model().tokenizer.encode(case["text"].as_str().unwrap(), true, false);
    assert_eq!(got, u32s(&case["ids"]));
}
