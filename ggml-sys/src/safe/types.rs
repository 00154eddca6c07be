//! ggml tensor types: block size, bytes per block and name, as the linked ggml
//! defines them.

use crate::{ggml_blck_size, ggml_type_name, ggml_type_size, GGML_TYPE_COUNT};
use std::ffi::CStr;

/// What ggml knows about one tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// The `ggml_type` value.
    pub id: u32,
    /// ggml's name for it ("f32", "q4_K", …).
    pub name: &'static str,
    /// Elements per block (1 for plain types).
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
}

/// Looks up a ggml type. `None` for ids past the end of ggml's table and for the
/// ids ggml has retired (block size 0).
pub fn type_info(id: u32) -> Option<TypeInfo> {
    if id >= GGML_TYPE_COUNT {
        return None;
    }
    // SAFETY: `id` is below GGML_TYPE_COUNT, so these index ggml's static type
    // table in bounds; the name is a static C string or null.
    let (blck, size, name) = unsafe { (ggml_blck_size(id), ggml_type_size(id), ggml_type_name(id)) };
    if blck <= 0 || size == 0 || name.is_null() {
        return None;
    }
    // SAFETY: non-null pointer to a static NUL-terminated string in ggml.
    let name = unsafe { CStr::from_ptr(name) }.to_str().ok()?;
    Some(TypeInfo { id, name, block_size: blck as u64, type_size: size as u64 })
}

/// Looks a type up by ggml's name (case-insensitive: "Q8_0", "q4_k", "bf16").
pub fn type_by_name(name: &str) -> Option<TypeInfo> {
    (0..GGML_TYPE_COUNT).filter_map(type_info).find(|t| t.name.eq_ignore_ascii_case(name))
}
