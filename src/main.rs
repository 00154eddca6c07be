//! `clex-run`: the command-line front end of the clex runtime.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
