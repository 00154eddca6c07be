//! The `clex-run` command line: raw args → validated options → `run()`; errors →
//! one line on stderr and an exit code.

pub mod args;
mod bench;
mod chat;
mod common;
mod convert;
mod devices;
mod generate;
mod inspect;
mod perplexity;

use args::{Cli, Command};
use clap::Parser;
use std::process::ExitCode;

/// Exit codes (documented in the README).
pub mod exit {
    // 2: a usage error, returned by clap itself.
    /// The model or another input file is invalid.
    pub const BAD_INPUT: u8 = 3;
    /// The context is too small / a limit was hit.
    pub const CONTEXT: u8 = 4;
    /// Any other runtime failure.
    pub const FAILURE: u8 = 1;
    /// A GPU device asked for is unavailable (or the build has no GPU backend).
    pub const DEVICE: u8 = 5;
    /// Interrupted by Ctrl-C.
    pub const INTERRUPTED: u8 = 130;
}

fn code_for(e: &clex::Error) -> u8 {
    match e {
        clex::Error::Gguf(_) | clex::Error::Model(_) | clex::Error::Tokenizer(_) | clex::Error::Clex(_) => exit::BAD_INPUT,
        clex::Error::Context(_) => exit::CONTEXT,
        clex::Error::Device(_) => exit::DEVICE,
        clex::Error::Io { .. } => exit::BAD_INPUT,
        _ => exit::FAILURE,
    }
}

/// Parses arguments, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(args::normalize_args(std::env::args_os()));
    let verbose = cli.generate.verbose || matches!(&cli.command, Some(Command::Bench(b)) if b.verbose);
    let verbose = verbose || matches!(&cli.command, Some(Command::Chat(c)) if c.verbose);
    init_logging(verbose);
    let result = match &cli.command {
        Some(Command::Inspect(a)) => inspect::run(a),
        Some(Command::Perplexity(a)) => perplexity::run(a),
        Some(Command::Convert(a)) => convert::run(a),
        Some(Command::ExportLlamacpp(a)) => convert::export(a),
        Some(Command::Devices) => devices::run(),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Chat(a)) => chat::run(a),
        None if cli.generate.chat.interactive => chat::run(&cli.generate),
        None => generate::run(&cli.generate).map_err(|e| {
            if generate::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
                std::process::exit(exit::INTERRUPTED as i32);
            }
            e
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clex-run: error: {e}");
            ExitCode::from(code_for(&e))
        }
    }
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("CLEX_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
    // ggml's own log lines into tracing (the library does it on the first model load;
    // done here too for the commands that call ggml before loading a model).
    clex::route_ggml_logs();
}
