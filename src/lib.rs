//! clex: a LLaMA-family GGUF runtime on ggml with CLEX (Continuous Length EXtrapolation).
//!
//! Module map: [`gguf`] reads and writes model files; [`tokenizer`] turns text into
//! tokens exactly as llama.cpp does; [`clex`] solves the CLEX ODE into a frequency
//! table; [`rope`] turns a RoPE-scaling choice into ggml rope parameters; [`model`]
//! builds the LLaMA graph on ggml; [`kv`] owns the KV cache; [`session`] runs prompts
//! and generation; [`sample`] picks tokens; [`chat`] renders chat templates.
#![forbid(unsafe_code)]

pub mod api;
pub mod cancel;
pub mod chat;
pub mod clex;
pub mod convert;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kv;
pub mod logprob;
pub mod model;
pub mod perplexity;
pub mod rope;
pub mod sample;
pub mod session;
pub mod tokenizer;

pub use error::{Error, Result};

// The embedding API (docs/LIBRARY.md): load a model once, share it between sessions.
pub use api::{route_ggml_logs, LoadProgress};
pub use cancel::CancelToken;
pub use chat::{ChatFormat, ChatMessage};
pub use generate::{Event, GenerateOptions, Generation, PromptStats, StopReason, Timings, TokenEvent};
pub use model::{Model, ModelOptions};
pub use sample::SamplerConfig;
pub use session::{BucketPolicy, RopeSettings, Session, SessionOptions};
