//! Raw ggml / gguf / llama bindings, re-exported from `llama-cpp-sys-2`, plus the C
//! `#define`s bindgen does not bind. The safe wrapper in [`safe`] is the only code in
//! the workspace that calls them.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]

pub use llama_cpp_sys_2::*;

/// `GGML_ROPE_TYPE_NEOX` from ggml.h.
pub const GGML_ROPE_TYPE_NEOX: i32 = 2;
/// `GGML_ROPE_TYPE_NORMAL` (no flag).
pub const GGML_ROPE_TYPE_NORMAL: i32 = 0;
/// `GGML_DEFAULT_GRAPH_SIZE` from ggml.h.
pub const GGML_DEFAULT_GRAPH_SIZE: usize = 2048;
pub mod safe;
