//! Our graph against llama.cpp on the same files: greedy tokens and logits.
mod common;
use clex::model::Model;
use clex::session::{Logits, Session, SessionOptions};
use common::oracle;
use std::path::Path;
use std::sync::Arc;

fn ours_greedy(path: &Path, prompt: &[u32], n: usize, n_ctx: usize, flash: bool) -> (Vec<u32>, Vec<f32>) {
    let model = Arc::new(Model::load(path).unwrap());
    let opts = SessionOptions { n_ctx, n_threads: 2, flash_attn: flash, ..Default::default() };
    let mut s = Session::new(model, opts).unwrap();
    let first = s.eval(prompt, Logits::Last).unwrap();
    let mut logits = first.clone();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = oracle::argmax(&logits);
        out.push(t);
        logits = s.eval(&[t], Logits::Last).unwrap();
    }
    (out, first)
}

fn check(path: &Path, prompts: &[&str], flash: bool) {
    let lm = oracle::load(path);
    let mut worst = 0f32;
    for p in prompts {
        let toks = oracle::tokenize(&lm, p, true);
        let (want, want_logits) = oracle::greedy(&lm, &toks, 32, 512, flash);
        let (got, got_logits) = ours_greedy(path, &toks, 32, 512, flash);
        let max_abs = want_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = want_logits.iter().zip(&got_logits).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        worst = worst.max(diff / max_abs);
        eprintln!("{} fa={flash} {p:?}: max |Δlogit| = {diff:.3e} (largest |logit| {max_abs:.3})", path.file_name().unwrap().to_string_lossy());
        assert!(diff <= 1e-3 * max_abs, "logits differ by {diff} (> 1e-3 × {max_abs})");
        assert_eq!(got, want, "greedy tokens differ for {p:?}");
    }
    eprintln!("worst relative difference: {worst:.3e}");
}

const PROMPTS: [&str; 3] = ["Once upon a time", "The capital of France is", "fn main() {\n    let x ="];

#[test]
fn tiny_random_llama_matches_llama_cpp() {
    let p = common::fixtures().join("llama-2-tiny-random.gguf");
    check(&p, &PROMPTS, false);
}

#[test]
fn qwen_matches_llama_cpp() {
    let Some(p) = common::qwen() else { return };
    check(&p, &PROMPTS, false);
}

#[test]
fn qwen_flash_attention_matches_llama_cpp() {
    let Some(p) = common::qwen() else { return };
    check(&p, &PROMPTS[..1], true);
}
