//! End to end against the reference CLEX implementation: the tiny HF checkpoint in
//! ../shared/fixtures/clex-tiny, converted to GGUF by our converter, run by our runtime,
//! compared with the reference's logits, cached greedy trace and NLLs.
//!
//! Tolerances (from the fixture README): logits 2e-3 absolute, argmax equal where the
//! stored top-1/top-2 gap is ≥ 5e-3, greedy tokens and t identical, NLL 1e-3.
mod common;
use clex::model::Model;
use clex::rope::RopeScaling;
use clex::session::{Logits, RopeSettings, Session, SessionOptions};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

fn reference() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| {
        let p = common::fixtures().join("clex-tiny/reference.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    })
}

/// The fixture converted to an f32 GGUF (once per test process).
fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let out = common::temp_path("clex-tiny-f32.gguf");
        common::convert_hf(&common::fixtures().join("clex-tiny/hf"), &out, "f32");
        Arc::new(Model::load(&out).unwrap())
    })
    .clone()
}

fn session(scaling: Option<RopeScaling>) -> Session {
    let opts = SessionOptions {
        n_ctx: 512,
        n_threads: 2,
        flash_attn: false,
        type_k: ggml_sys::GGML_TYPE_F32,
        type_v: ggml_sys::GGML_TYPE_F32,
        rope: RopeSettings { scaling, ..Default::default() },
        ..Default::default()
    };
    Session::new(model(), opts).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}
fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

#[test]
fn full_forward_logits_at_three_lengths() {
    let r = reference();
    let n_vocab = model().hparams.n_vocab;
    for case in r["full_forward"].as_array().unwrap() {
        let ids = ids(&case["ids"]);
        let mut s = session(None);
        let logits = s.eval(&ids, Logits::All).unwrap();
        assert_eq!(s.bucket() as u64, case["t"].as_u64().unwrap(), "bucket for n = {}", ids.len());
        let mut worst = 0f64;
        for (k, pos) in case["last4_positions"].as_array().unwrap().iter().enumerate() {
            let pos = pos.as_u64().unwrap() as usize;
            let want = floats(&case["last4_logits"][k]);
            let got = &logits[pos * n_vocab..(pos + 1) * n_vocab];
            for (a, b) in want.iter().zip(got) {
                worst = worst.max((a - *b as f64).abs());
            }
        }
        let margins = floats(&case["argmax_margin"]);
        let want_arg = ids_usize(&case["argmax"]);
        let mut checked = 0;
        for (i, (&m, &w)) in margins.iter().zip(&want_arg).enumerate() {
            if m >= 5e-3 {
                assert_eq!(argmax(&logits[i * n_vocab..(i + 1) * n_vocab]), w, "argmax at position {i}");
                checked += 1;
            }
        }
        eprintln!("{}: n = {}, t = {}, max |Δlogit| = {worst:.2e}, {checked} argmaxes equal", case["name"], ids.len(), s.bucket());
        assert!(worst <= 2e-3, "{}: logits differ by {worst}", case["name"]);
    }
}

fn ids_usize(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

#[test]
fn cached_greedy_trace_across_the_bucket_boundary() {
    let g = &reference()["greedy_cached"];
    let mut s = session(None);
    let mut logits = s.eval(&ids(&g["prompt_ids"]), Logits::Last).unwrap();
    let mut worst = 0f64;
    for step in g["steps"].as_array().unwrap() {
        assert_eq!(s.n_past() as u64, step["kv_len"].as_u64().unwrap());
        assert_eq!(s.bucket() as u64, step["t"].as_u64().unwrap(), "t at step {}", step["step"]);
        let tok = argmax(&logits);
        assert_eq!(tok as u64, step["token"].as_u64().unwrap(), "token at step {}", step["step"]);
        for pair in step["top5"].as_array().unwrap() {
            let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
            worst = worst.max((logits[id] as f64 - want).abs());
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let want_ids: Vec<usize> = step["top5"].as_array().unwrap().iter().map(|p| p[0].as_u64().unwrap() as usize).collect();
        assert_eq!(&order[..5], &want_ids[..], "top-5 at step {}", step["step"]);
        logits = s.eval(&[tok as u32], Logits::Last).unwrap();
    }
    eprintln!("greedy: 24 steps identical, max |Δlogit| over top-5 = {worst:.2e}, re-rotations {}", s.rerotations);
    assert!(worst <= 2e-3);
    assert_eq!(s.rerotations, 1, "exactly one bucket change (t 1 → 2) re-rotates the cache");
}

fn check_nll(case: &Value, ids: &[u32]) {
    let mut s = session(None);
    let n_vocab = model().hparams.n_vocab;
    let logits = s.eval(ids, Logits::All).unwrap();
    let nll = clex::logprob::token_nlls(&logits[..(ids.len() - 1) * n_vocab], n_vocab, &ids[1..]);
    let want = floats(&case["token_nll"]);
    assert_eq!(nll.len(), want.len());
    let worst = nll.iter().zip(&want).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    let mean = nll.iter().sum::<f64>() / nll.len() as f64;
    let want_mean = case["mean_nll"].as_f64().unwrap();
    eprintln!("NLL: mean {mean:.6} vs {want_mean:.6}, worst token {worst:.2e}");
    assert!((mean - want_mean).abs() <= 1e-3);
    assert!(worst <= 1e-3);
}

#[test]
fn perplexity_case_nll() {
    let p = &reference()["perplexity"];
    // "sequence" names the full_forward case it scores, e.g. "full_forward[name=2L+5]".
    let name = p["sequence"].as_str().unwrap().trim_start_matches("full_forward[name=").trim_end_matches(']');
    let case = reference()["full_forward"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    let seq = ids(&case["ids"]);
    check_nll(p, &seq);
}

#[test]
fn text_case_tokenizes_and_scores_like_the_reference() {
    let tc = &reference()["text_case"];
    let want = ids(&tc["ids"]);
    let got = model().tokenizer.encode(tc["text"].as_str().unwrap(), true, false);
    assert_eq!(got, want, "tokenization of the text case");
    check_nll(tc, &want);
}

#[test]
fn bucket_one_is_bit_identical_to_plain_rope() {
    let case = &reference()["full_forward"][0];
    assert_eq!(case["t"].as_u64(), Some(1));
    let ids = ids(&case["ids"]);
    let a = session(None).eval(&ids, Logits::All).unwrap();
    let b = session(Some(RopeScaling::None)).eval(&ids, Logits::All).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "t = 1 must equal plain RoPE bit for bit");
}

#[test]
fn beyond_the_hard_limit_is_refused() {
    let err = Session::new(model(), SessionOptions { n_ctx: 513, ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("L·T") && err.contains("512"), "{err}");
    let mut s = session(None);
    let ids = vec![1u32; 512];
    s.eval(&ids, Logits::Last).unwrap();
    assert_eq!(s.bucket(), 8);
}
