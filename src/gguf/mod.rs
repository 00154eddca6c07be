//! GGUF files: reading (validated, zero-copy over a memory map) and writing.
#[derive(Debug, thiserror::Error)]
pub enum GgufError { #[error("placeholder")] Placeholder }
