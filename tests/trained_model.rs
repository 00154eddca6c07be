//! The trained CLEX model shipped in models/ (`clex-llama-5m.gguf`, F16), run by our
//! runtime, against its PyTorch training code (models/train/make_reference.py) on a held-out
//! 1024-token window of the Book of Isaiah: one forward over all 1024 tokens, CLEX bucket
//! t = ceil(1024/256) = 4.
//!
//! The reference (tests/data/trained/reference.json) uses the weights exactly as the GGUF
//! stores them (matrices rounded to f16) and float64 for everything else. What it cannot
//! share with float64 is the rounding of ggml's F16 matrix kernels, and that depends on the
//! CPU: ggml's AMX buffer type (the default on AMX CPUs, as here and on CI) multiplies with
//! float32 activations, its plain F16 kernel rounds the activations to f16 first. The file
//! holds one variant per kernel assignment, naming the matrices whose input is rounded; the
//! test reads where the runtime placed each weight (`Model::weight_placement`) and compares
//! against the matching variant. With float32 activations ("amx") the bound is the issue's
//! 2e-3. With f16 activations ("generic", CPUs without AMX) a rounding of an activation that
//! sits near an f16 midpoint can go either way, so the runtime and any reference drift apart
//! by ~1 f16 step and the bound is 1e-2 (see models/README.md for the figures).
//! Checks: full-vocabulary logits at 8 positions and the max logit at every position within
//! the bound, the argmax equal wherever the reference's top-1/top-2 gap exceeds the bound,
//! the window's mean NLL within 1e-3, the CLEX table row within 1e-5 relative, and the
//! tokenizer against SentencePiece.
mod common;
use clex::model::{Model, ModelOptions};
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

/// The reference variant for the kernels the runtime picked: the set of matrix kinds whose
/// products round their input to f16 (F16 weights outside ggml's AMX buffer type).
fn matching_variant(m: &Model) -> (&'static str, &'static Value) {
    const KINDS: [&str; 8] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output"];
    let mut rounded = std::collections::BTreeSet::new();
    let placement = m.weight_placement();
    for (name, buft) in &placement {
        let kind = name.trim_end_matches(".weight").rsplit('.').next().unwrap();
        if KINDS.contains(&kind) && buft != "AMX" {
            rounded.insert(kind.to_string());
        }
    }
    for (name, v) in reference()["variants"].as_object().unwrap() {
        let want: std::collections::BTreeSet<String> =
            v["f16_inputs"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
        if want == rounded {
            return (name.as_str(), v);
        }
    }
    panic!("no reference variant rounds the inputs of exactly {rounded:?} (weight placement: {placement:?})");
}

#[test]
fn logits_match_pytorch_on_a_heldout_window() {
    check_window(model());
}

/// The same window with every weight left on the file map (`--no-repack`): ggml's plain F16
/// kernel on every matrix, as on a CPU without AMX: the "generic" variant.
#[test]
fn logits_match_pytorch_with_the_plain_f16_kernels() {
    let name = reference()["gguf"].as_str().unwrap();
    let opts = ModelOptions { repack: false, ..Default::default() };
    let m = Arc::new(Model::load_with(&root().join("models").join(name), &opts).unwrap());
    assert_eq!(matching_variant(&m).0, "generic");
    check_window(m);
}

fn check_window(m: Arc<Model>) {
    let r = reference();
    let (variant, v) = matching_variant(&m);
    let bound = if variant == "generic" { 1e-2 } else { 2e-3 };
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
        let want = floats(&v["logits"][k]);
        assert_eq!(want.len(), n_vocab);
        for (a, b) in want.iter().zip(row(p)) {
            worst_full = worst_full.max((a - *b as f64).abs());
        }
    }
    // max logit and argmax at every position
    let (want_max, want_arg, margin) = (floats(&v["max_logit"]), u32s(&v["argmax"]), floats(&v["margin"]));
    let mut worst_max = 0f64;
    let (mut checked, mut ties) = (0, 0);
    for i in 0..n {
        let got = row(i);
        let a = argmax(got);
        worst_max = worst_max.max((got[a] as f64 - want_max[i]).abs());
        if margin[i] > bound {
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
    let want_nll = v["mean_nll"].as_f64().unwrap();
    eprintln!(
        "n = {n}, t = {}, reference variant {variant} (f16 inputs {}): max |Δlogit| {worst_full:.2e} over {} full rows, \
         {worst_max:.2e} over the max logit of all {n} positions (bound {bound:.0e}); {checked} argmaxes equal \
         ({ties} near-ties skipped); mean NLL {nll:.6} vs {want_nll:.6} (PPL {:.3}); reference differences {}",
        s.bucket(),
        v["f16_inputs"],
        r["positions"].as_array().unwrap().len(),
        nll.exp(),
        r["max_abs_diffs"]
    );
    assert!(worst_full <= bound, "full logits differ by {worst_full} (bound {bound}, variant {variant})");
    assert!(worst_max <= bound, "max logits differ by {worst_max} (bound {bound}, variant {variant})");
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
