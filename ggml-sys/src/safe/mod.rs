//! The one safe wrapper over the raw bindings. Everything outside `ggml-sys` goes
//! through these types; none of them exposes a raw pointer that the caller must
//! keep valid by hand.

mod mmap;

pub use mmap::MappedFile;
