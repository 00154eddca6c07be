//! Which ggml type each tensor gets, and the parallel, streaming conversion of a tensor's
//! rows to that type.
//!
//! ## Type rules
//!
//! * 1-D tensors, norms, biases, `rope_freqs` and the CLEX tensors are always F32.
//! * `f32` / `f16` / `bf16`: every other tensor in that type (llama.cpp's converter).
//! * `q8_0`: every other tensor Q8_0 (llama.cpp's converter; F16 when a row is not a
//!   multiple of 32).
//! * `q4_0` and `q4_k_m`: llama-quantize's mixes (`llama_tensor_get_type`), for dense
//!   LLaMA/Qwen2 models:
//!   - `output.weight` (and `token_embd.weight` when the model has no separate output, i.e.
//!     tied embeddings): Q6_K;
//!   - `q4_k_m` only: `attn_v` and `ffn_down` of layer i get Q6_K when
//!     `i < n/8 || i >= 7n/8 || (i − n/8) % 3 == 2` ("use_more_bits"), and `attn_v` is Q5_K
//!     in 80-layer (70B-class) models otherwise;
//!   - everything else the base type (Q4_0, Q4_K; so an untied `token_embd` is Q4_K).
//!   - Rows that are not a multiple of the chosen type's block fall back as llama-quantize
//!     does: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and to F16 if even that does not fit.

use super::OutType;
use ggml_sys::{
    GGML_TYPE_BF16, GGML_TYPE_F16, GGML_TYPE_F32, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
    GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0,
};

/// What a tensor is, for choosing its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    TokenEmbd,
    Output,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    /// Norm weights, biases, rope_freqs, CLEX tensors: always F32.
    F32Only,
}

fn block(ty: u32) -> u64 {
    ggml_sys::safe::type_info(ty).map_or(1, |t| t.block_size)
}

/// llama-quantize's `use_more_bits`.
fn use_more_bits(i: u32, n: u32) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// llama-quantize's `tensor_type_fallback` for a row length `ncols`.
fn fallback(ty: u32, ncols: u64) -> u32 {
    if ncols.is_multiple_of(block(ty)) {
        return ty;
    }
    let fb = match ty {
        GGML_TYPE_Q4_K => GGML_TYPE_Q5_0,
        GGML_TYPE_Q5_K => GGML_TYPE_Q5_1,
        GGML_TYPE_Q6_K => GGML_TYPE_Q8_0,
        t => t,
    };
    if ncols.is_multiple_of(block(fb)) {
        fb
    } else {
        GGML_TYPE_F16
    }
}

/// The ggml type of a tensor (see the module documentation).
///
/// * `layer`: the block index for per-layer tensors; `n_layers`: the block count.
/// * `ncols`: the row length (ggml `ne[0]`); `n_dims`: the number of dimensions.
/// * `tied`: the model has no `output.weight` (the embedding doubles as the output).
pub fn tensor_type(
    out: OutType,
    role: Role,
    layer: Option<u32>,
    n_layers: u32,
    ncols: u64,
    n_dims: usize,
    tied: bool,
) -> u32 {
    if n_dims <= 1 || role == Role::F32Only {
        return GGML_TYPE_F32;
    }
    match out {
        OutType::F32 => GGML_TYPE_F32,
        OutType::F16 => GGML_TYPE_F16,
        OutType::Bf16 => GGML_TYPE_BF16,
        OutType::Q8_0 => fallback(GGML_TYPE_Q8_0, ncols),
        OutType::Q4_0 | OutType::Q4KM => {
            let base = if out == OutType::Q4_0 { GGML_TYPE_Q4_0 } else { GGML_TYPE_Q4_K };
            let i = layer.unwrap_or(0);
            let ty = match role {
                Role::Output => GGML_TYPE_Q6_K,
                Role::TokenEmbd if tied => GGML_TYPE_Q6_K,
                Role::AttnV if out == OutType::Q4KM && use_more_bits(i, n_layers) => GGML_TYPE_Q6_K,
                Role::AttnV if out == OutType::Q4KM && n_layers == 80 => GGML_TYPE_Q5_K,
                Role::FfnDown if out == OutType::Q4KM && use_more_bits(i, n_layers) => GGML_TYPE_Q6_K,
                _ => base,
            };
            // llama-quantize first sends an output whose row is not a multiple of the base
            // block to Q8_0, then applies the usual fallback.
            let ty = if ty == GGML_TYPE_Q6_K
                && matches!(role, Role::Output | Role::TokenEmbd)
                && !ncols.is_multiple_of(block(base))
            {
                GGML_TYPE_Q8_0
            } else {
                ty
            };
            fallback(ty, ncols)
        }
    }
}

/// Converts rows of f32 into `ty`, splitting the rows across the current rayon pool.
/// `fill(first_row, n_rows, buf)` must append the f32 values of those rows to `buf`.
/// Returns the bytes of all rows.
pub fn quantize_rows<F>(ty: u32, ncols: usize, first_row: usize, n_rows: usize, fill: &F) -> Result<Vec<u8>, String>
where
    F: Fn(usize, usize, &mut Vec<f32>) -> Result<(), String> + Sync,
{
    use rayon::prelude::*;
    let row_bytes = ggml_sys::safe::check_quantizable(ty, ncols)?;
    let mut out = vec![0u8; n_rows * row_bytes];
    if n_rows == 0 {
        return Ok(out);
    }
    // Pieces of ~256 KiB of f32 each: enough to keep every thread busy, small enough that
    // each thread's scratch stays in cache-friendly sizes.
    let rows_per_piece = ((1usize << 16) / ncols).clamp(1, n_rows);
    out.par_chunks_mut(rows_per_piece * row_bytes).enumerate().try_for_each_init(Vec::new, |buf, (k, dst)| {
        let r0 = first_row + k * rows_per_piece;
        let nr = dst.len() / row_bytes;
        buf.clear();
        fill(r0, nr, buf)?;
        if buf.len() != nr * ncols {
            return Err(format!("row source gave {} values for {nr} rows of {ncols}", buf.len()));
        }
        ggml_sys::safe::quantize_into(ty, buf, ncols, dst).map(|_| ())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_k_m_mix_matches_llama_quantize_on_qwen_0_5b() {
        // Qwen2.5-0.5B: 24 layers, hidden 896 (not a multiple of 256), ffn 4864; the
        // published Q4_K_M has 12 attn_v Q8_0 (Q6_K fallback), 12 ffn_down Q6_K, 12 Q4_K.
        let n = 24;
        let v: Vec<u32> = (0..n).map(|i| tensor_type(OutType::Q4KM, Role::AttnV, Some(i), n, 896, 2, false)).collect();
        assert_eq!(v.iter().filter(|&&t| t == GGML_TYPE_Q8_0).count(), 12);
        assert_eq!(v.iter().filter(|&&t| t == GGML_TYPE_Q5_0).count(), 12);
        let d: Vec<u32> =
            (0..n).map(|i| tensor_type(OutType::Q4KM, Role::FfnDown, Some(i), n, 4864, 2, false)).collect();
        assert_eq!(d.iter().filter(|&&t| t == GGML_TYPE_Q6_K).count(), 12);
        assert_eq!(d.iter().filter(|&&t| t == GGML_TYPE_Q4_K).count(), 12);
        assert_eq!(tensor_type(OutType::Q4KM, Role::TokenEmbd, None, n, 896, 2, true), GGML_TYPE_Q8_0);
        assert_eq!(tensor_type(OutType::Q4KM, Role::TokenEmbd, None, n, 4096, 2, false), GGML_TYPE_Q4_K);
        assert_eq!(tensor_type(OutType::Q4KM, Role::Output, None, n, 4096, 2, false), GGML_TYPE_Q6_K);
        assert_eq!(tensor_type(OutType::Q4KM, Role::AttnQ, Some(3), n, 4096, 2, false), GGML_TYPE_Q4_K);
        assert_eq!(tensor_type(OutType::Q4_0, Role::Output, None, n, 4096, 2, false), GGML_TYPE_Q6_K);
        assert_eq!(tensor_type(OutType::Q4_0, Role::AttnQ, None, n, 4096, 2, false), GGML_TYPE_Q4_0);
        assert_eq!(tensor_type(OutType::Q8_0, Role::AttnQ, None, n, 100, 2, false), GGML_TYPE_F16);
        assert_eq!(tensor_type(OutType::Q8_0, Role::F32Only, None, n, 4096, 2, false), GGML_TYPE_F32);
        assert_eq!(tensor_type(OutType::Bf16, Role::AttnQ, None, n, 4096, 1, false), GGML_TYPE_F32);
    }
}
