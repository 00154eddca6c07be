//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in clex, each variant naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid GGUF: {0}")]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("{0}")]
    Model(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("CLEX: {0}")]
    Clex(String),
    #[error("context: {0}")]
    Context(String),
    #[error("ggml: {0}")]
    Ggml(String),
    /// A GPU device asked for is missing, or this build has no GPU backend.
    #[error("device: {0}")]
    Device(String),
    #[error("{0}")]
    Other(String),
    /// Stopped on request: a [`crate::CancelToken`], or a load progress callback that
    /// returned `false`.
    #[error("cancelled")]
    Cancelled,
    /// A saved session state that cannot be restored here: not a state file, another
    /// format version, another model or session options, or corrupt.
    #[error("session state: {0}")]
    State(String),
    /// A chat template that fails to render the messages, or a model without one.
    #[error("chat template: {0}")]
    Chat(String),
    /// A bad argument given to the library API (an option out of range, an empty list).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
