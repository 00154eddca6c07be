//! The one safe wrapper over the raw bindings. Everything outside `ggml-sys` goes
//! through these types; none of them exposes a raw pointer that the caller must
//! keep valid by hand.

mod mmap;
mod quant;
mod types;

pub use mmap::MappedFile;
pub use quant::*;
pub use types::{type_by_name, type_info, TypeInfo};
