//! One-shot generation: `clex-run MODEL.gguf -p "…"`.

use super::args::GenerateArgs;
use super::common;
use clex::sample::Sampler;
use clex::session::{Logits, Session};
use clex::tokenizer::StreamDecoder;
use clex::{Error, Result};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Set by Ctrl-C: generation stops at the next token.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn run(a: &GenerateArgs) -> Result<()> {
    let prompt = match (&a.prompt, &a.file) {
        (Some(p), None) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).map_err(|e| Error::Io { path: f.clone(), source: e })?,
        (Some(_), Some(_)) => return Err(Error::Other("give the prompt with -p or -f, not both".into())),
        (None, None) => return Err(Error::Other("no prompt: use -p TEXT or -f FILE".into())),
    };
    let opts = common::session_options(&a.model)?;
    let t0 = Instant::now();
    let model = Arc::new(common::load_model(&a.model)?);
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let tok = &model.tokenizer;
    let tokens = tok.encode(&prompt, true, true);
    if tokens.is_empty() {
        return Err(Error::Other("the prompt tokenizes to nothing".into()));
    }
    let mut session = Session::new(Arc::clone(&model), opts)?;
    let n_ctx = session.n_ctx();
    if tokens.len() >= n_ctx {
        return Err(Error::Context(format!(
            "the prompt is {} tokens but the context holds {n_ctx}; raise -c (nothing was truncated)",
            tokens.len()
        )));
    }
    let mut sampler = Sampler::new(common::sampler_config(&a.sample), model.hparams.n_vocab);
    for &t in &tokens {
        sampler.accept(t);
    }
    let mut out = std::io::stdout().lock();
    let mut dec = StreamDecoder::new();
    if !a.no_display_prompt {
        let _ = out.write_all(prompt.as_bytes());
        let _ = out.flush();
    }
    let _ = ctrlc_install();

    let t1 = Instant::now();
    let mut logits = session.eval(&tokens, Logits::Last)?;
    let prompt_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let mut n_gen = 0usize;
    let limit = if a.n_predict < 0 { usize::MAX } else { a.n_predict as usize };
    let mut stop_reason = "limit";
    while n_gen < limit {
        if INTERRUPTED.load(Ordering::Relaxed) {
            stop_reason = "interrupted";
            break;
        }
        let t = sampler.sample(&logits);
        sampler.accept(t);
        if tok.is_eog(t) && !a.ignore_eos {
            stop_reason = "end of generation";
            break;
        }
        n_gen += 1;
        let piece = dec.push(&tok.token_to_piece(t));
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        if session.n_past() + 1 > n_ctx {
            stop_reason = "context full";
            break;
        }
        logits = session.eval(&[t], Logits::Last)?;
    }
    let _ = out.write_all(dec.finish().as_bytes());
    let _ = writeln!(out);
    let _ = out.flush();
    let gen_s = t2.elapsed().as_secs_f64();
    eprintln!();
    eprintln!(
        "clex-run: load {load_ms:.0} ms · prompt {} tokens in {:.0} ms ({:.2} tok/s) · generated {n_gen} tokens in {:.0} ms ({:.2} tok/s) · stop: {stop_reason}",
        tokens.len(),
        prompt_s * 1e3,
        tokens.len() as f64 / prompt_s.max(1e-9),
        gen_s * 1e3,
        n_gen as f64 / gen_s.max(1e-9)
    );
    if session.rope().table().is_some() || session.bucket() > 1 {
        eprintln!("clex-run: rope {} · bucket t = {} · re-rotations {}", session.rope().scaling(), session.bucket(), session.rerotations);
    }
    if a.verbose {
        if let Some(kb) = peak_rss_kb() {
            eprintln!("clex-run: peak RSS {:.1} MiB · KV cache {:.1} MiB", kb as f64 / 1024.0, session.kv_bytes() as f64 / 1048576.0);
        }
    }
    if stop_reason == "interrupted" {
        return Err(Error::Other("interrupted".into()));
    }
    if stop_reason == "context full" && a.n_predict < 0 {
        eprintln!("clex-run: stopped: the context of {n_ctx} tokens is full (raise -c)");
    }
    Ok(())
}

fn ctrlc_install() -> std::result::Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
}

/// Peak resident set size (VmHWM) in KiB, on Linux.
pub fn peak_rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}
