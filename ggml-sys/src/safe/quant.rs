//! Quantization (and the reverse) through ggml, behind checks that keep ggml's asserts from
//! aborting the process.
//!
//! [`quantize`] / [`quantize_into`] wrap `ggml_quantize_chunk`: f32 rows in, rows of any type
//! ggml can produce out (the block-quantized types, and F16/BF16/F32 themselves). The checks:
//! the type is one `ggml_quantize_chunk` handles, it does not need an importance matrix
//! (`ggml_quantize_requires_imatrix`; none is taken here), the row length is a positive
//! multiple of the type's block size, the input is whole rows and the output buffer is large
//! enough. `ggml_quantize_init` is called before the first use of a type (ggml makes it
//! idempotent and thread-safe), so the functions may run on many threads at once, each on
//! its own rows.

use crate::*;
use std::ffi::c_void;

/// The types `ggml_quantize_chunk` can produce.
const QUANTIZABLE: &[u32] = &[
    GGML_TYPE_F32,
    GGML_TYPE_F16,
    GGML_TYPE_BF16,
    GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1,
    GGML_TYPE_Q5_0,
    GGML_TYPE_Q5_1,
    GGML_TYPE_Q8_0,
    GGML_TYPE_Q2_K,
    GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K,
    GGML_TYPE_Q5_K,
    GGML_TYPE_Q6_K,
    GGML_TYPE_TQ1_0,
    GGML_TYPE_TQ2_0,
    GGML_TYPE_IQ2_XXS,
    GGML_TYPE_IQ2_XS,
    GGML_TYPE_IQ3_XXS,
    GGML_TYPE_IQ3_S,
    GGML_TYPE_IQ2_S,
    GGML_TYPE_IQ1_S,
    GGML_TYPE_IQ1_M,
    GGML_TYPE_IQ4_NL,
    GGML_TYPE_IQ4_XS,
    GGML_TYPE_MXFP4,
    GGML_TYPE_NVFP4,
    GGML_TYPE_Q1_0,
    GGML_TYPE_Q2_0,
];

/// Whether ggml refuses to quantize to `type_id` without an importance matrix (the IQ1/IQ2
/// family). `false` for unknown types.
pub fn quantize_requires_imatrix(type_id: u32) -> bool {
    if super::type_info(type_id).is_none() {
        return false;
    }
    // SAFETY: a valid ggml type id; the function only reads a static table.
    unsafe { ggml_quantize_requires_imatrix(type_id) }
}

/// Checks that rows of `n_per_row` f32 values can be converted to `type_id` by [`quantize`];
/// returns the byte size of one output row.
pub fn check_quantizable(type_id: u32, n_per_row: usize) -> Result<usize, String> {
    let ti = super::type_info(type_id).ok_or_else(|| format!("unknown or retired ggml type {type_id}"))?;
    if !QUANTIZABLE.contains(&type_id) {
        return Err(format!("ggml cannot quantize to {}", ti.name));
    }
    if quantize_requires_imatrix(type_id) {
        return Err(format!("{} needs an importance matrix, which this quantizer does not take", ti.name));
    }
    if n_per_row == 0 || !(n_per_row as u64).is_multiple_of(ti.block_size) {
        return Err(format!(
            "row length {n_per_row} is not a positive multiple of the {} block size {}",
            ti.name, ti.block_size
        ));
    }
    if n_per_row > i64::MAX as usize / 8 {
        return Err(format!("row length {n_per_row} is too large"));
    }
    Ok((n_per_row as u64 / ti.block_size * ti.type_size) as usize)
}

/// Quantizes `src` (whole rows of `n_per_row` values, row-major) to ggml type `type_id` and
/// returns the bytes, `src.len() / n_per_row` rows of `ggml_row_size(type, n_per_row)` each.
/// Errors name what is wrong (unknown type, type needing an imatrix, row length not a
/// multiple of the block size, input not whole rows) instead of letting ggml abort.
pub fn quantize(type_id: u32, src: &[f32], n_per_row: usize) -> Result<Vec<u8>, String> {
    let row = check_quantizable(type_id, n_per_row)?;
    let mut dst = vec![0u8; src.len() / n_per_row * row];
    quantize_into(type_id, src, n_per_row, &mut dst)?;
    Ok(dst)
}

/// As [`quantize`], into `dst` (at least `rows · row_size` bytes; only that prefix is written).
/// Returns the number of bytes written.
pub fn quantize_into(type_id: u32, src: &[f32], n_per_row: usize, dst: &mut [u8]) -> Result<usize, String> {
    let row = check_quantizable(type_id, n_per_row)?;
    if !src.len().is_multiple_of(n_per_row) {
        return Err(format!("{} values are not whole rows of {n_per_row}", src.len()));
    }
    let nrows = src.len() / n_per_row;
    let need = nrows * row;
    if dst.len() < need {
        return Err(format!("output buffer has {} bytes, {nrows} rows need {need}", dst.len()));
    }
    if nrows == 0 {
        return Ok(0);
    }
    if !(dst.as_ptr() as usize).is_multiple_of(8) {
        // ggml's block structs hold u16/f16 fields: give it an aligned buffer.
        let mut tmp = vec![0u64; need.div_ceil(8)];
        let bytes = &mut bytes_of_mut(&mut tmp)[..need];
        let n = quantize_into(type_id, src, n_per_row, bytes)?;
        dst[..n].copy_from_slice(&bytes[..n]);
        return Ok(n);
    }
    // SAFETY: the type is one ggml_quantize_chunk handles and needs no imatrix (checked);
    // `src` holds nrows·n_per_row floats and `dst` at least nrows·row_size bytes; start = 0
    // satisfies ggml's block/row alignment asserts; ggml_quantize_init is idempotent and
    // guarded by ggml's critical section, and the chunk call only reads src and writes dst.
    let written = unsafe {
        ggml_quantize_init(type_id);
        ggml_quantize_chunk(
            type_id,
            src.as_ptr(),
            dst.as_mut_ptr() as *mut c_void,
            0,
            nrows as i64,
            n_per_row as i64,
            std::ptr::null(),
        )
    };
    if written != need {
        return Err(format!("ggml wrote {written} bytes, expected {need}"));
    }
    Ok(written)
}

/// Converts `n` values of ggml type `type_id` (whole blocks) back to f32: the inverse of
/// [`quantize`], up to the quantization error. For checks and tools.
pub fn dequantize(type_id: u32, data: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let ti = super::type_info(type_id).ok_or_else(|| format!("unknown or retired ggml type {type_id}"))?;
    if !(n as u64).is_multiple_of(ti.block_size) {
        return Err(format!("{n} values are not whole {} blocks of {}", ti.name, ti.block_size));
    }
    let need = (n as u64 / ti.block_size * ti.type_size) as usize;
    if data.len() != need {
        return Err(format!("{n} values of {} take {need} bytes, got {}", ti.name, data.len()));
    }
    if type_id == GGML_TYPE_F32 {
        return Ok(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    // SAFETY: valid type id; ggml returns a pointer into its static trait table.
    let to_float = unsafe { (*ggml_get_type_traits(type_id)).to_float }
        .ok_or_else(|| format!("ggml has no conversion from {} to f32", ti.name))?;
    let mut out = vec![0f32; n];
    let mut aligned = Vec::new();
    let data = if !(data.as_ptr() as usize).is_multiple_of(8) {
        aligned.resize(data.len().div_ceil(8), 0u64);
        let b = &mut bytes_of_mut(&mut aligned)[..data.len()];
        b.copy_from_slice(data);
        &*b
    } else {
        data
    };
    if n > 0 {
        // SAFETY: `data` holds exactly n/blck blocks of the type and `out` n floats; the
        // conversion reads the former and writes the latter only.
        unsafe { to_float(data.as_ptr() as *const c_void, out.as_mut_ptr(), n as i64) };
    }
    Ok(out)
}

/// The bytes of a u64 buffer (8-aligned).
fn bytes_of_mut(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers exactly the
    // same memory and the borrow is tied to `v`.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 8) }
}
