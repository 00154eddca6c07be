//! Load a model, give it a prompt, stream a greedy continuation to standard output.
//!
//!     cargo run --release --example generate -- models/clex-tiny-random.gguf "Once upon a time" 32
//!
//! The library prints nothing itself: set `CLEX_LOG=debug` to see its (and ggml's) log,
//! which this example then sends to standard error through `tracing-subscriber`.

use clex::{Event, GenerateOptions, Model, ModelOptions, Session, SessionOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

fn run(model: PathBuf, prompt: &str, n: usize) -> clex::Result<()> {
    let model = Arc::new(Model::load_with(&model, &ModelOptions::default())?);
    let n_ctx = model.hparams.n_ctx_train.min(2048);
    let mut session = Session::new(model, SessionOptions { n_ctx, ..Default::default() })?;
    session.prompt(prompt)?;
    let mut out = std::io::stdout().lock();
    for event in session.generate(GenerateOptions::greedy(n))? {
        let text = match event? {
            Event::Token(t) => t.text,
            Event::Finished { text, .. } => text,
        };
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    Ok(())
}

fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("CLEX_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, prompt, rest @ ..] = args.as_slice() else {
        eprintln!("usage: generate MODEL.gguf PROMPT [N_TOKENS]");
        return ExitCode::from(2);
    };
    let n = rest.first().and_then(|s| s.parse().ok()).unwrap_or(32);
    match run(PathBuf::from(model), prompt, n) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("generate: {e}");
            ExitCode::FAILURE
        }
    }
}
