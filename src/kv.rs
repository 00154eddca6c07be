//! The KV cache: one K and one V tensor per layer, sized from `-c` and the cache
//! types, living on a backend buffer.
//!
//! Keys are stored rotated (RoPE applied) in the current frequency basis. When a
//! bucketed scaling (CLEX) changes basis, [`crate::session`] re-rotates every cached
//! key by the difference of the two bases, so queries and keys always share one.

use crate::model::HParams;
use crate::{Error, Result};
use ggml_sys::safe::{type_info, Backend, Tensor, TensorStore};

/// Layout and storage of the cache.
pub struct KvCache {
    store: TensorStore,
    k: Vec<usize>,
    v: Vec<usize>,
    /// Cells (tokens) the cache holds.
    pub n_ctx: usize,
    pub type_k: u32,
    pub type_v: u32,
    /// V stored transposed ([n_ctx, n_embd_kv]), for the non-flash attention path.
    pub v_trans: bool,
}

/// Parses a cache type name as llama.cpp's `-ctk/-ctv` take it.
pub fn parse_cache_type(s: &str) -> Result<u32> {
    let t = ggml_sys::safe::type_by_name(s).ok_or_else(|| Error::Other(format!("unknown cache type {s:?}")))?;
    match t.name {
        "f32" | "f16" | "bf16" | "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "iq4_nl" => Ok(t.id),
        _ => Err(Error::Other(format!("cache type {s:?} is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)"))),
    }
}

impl KvCache {
    /// Bytes a cache of this shape takes.
    pub fn bytes_needed(hp: &HParams, n_ctx: usize, type_k: u32, type_v: u32) -> u64 {
        let row = |t: u32| {
            let ti = type_info(t).expect("valid type");
            (hp.n_embd_kv() as u64).div_ceil(ti.block_size) * ti.type_size
        };
        (row(type_k) + row(type_v)) * n_ctx as u64 * hp.n_layer as u64
    }

    /// Allocates a cache of `n_ctx` cells on `backend`, zero-filled.
    pub fn new(hp: &HParams, n_ctx: usize, type_k: u32, type_v: u32, flash_attn: bool, backend: &Backend) -> Result<Self> {
        Self::new_split(hp, n_ctx, type_k, type_v, flash_attn, backend, None)
    }

    /// [`KvCache::new`], with the layers of an offloaded model on their device:
    /// `device` is the device's backend and the number of (last) layers it runs.
    pub fn new_split(
        hp: &HParams,
        n_ctx: usize,
        type_k: u32,
        type_v: u32,
        flash_attn: bool,
        backend: &Backend,
        device: Option<(&Backend, usize)>,
    ) -> Result<Self> {
        for (what, t) in [("K", type_k), ("V", type_v)] {
            let ti = type_info(t).ok_or_else(|| Error::Other(format!("bad {what} cache type {t}")))?;
            if hp.head_dim as u64 % ti.block_size != 0 {
                return Err(Error::Other(format!(
                    "{what} cache type {} needs head_dim ({}) to be a multiple of {}",
                    ti.name, hp.head_dim, ti.block_size
                )));
            }
        }
        let v_quant = type_info(type_v).map(|t| t.block_size > 1).unwrap_or(false);
        if v_quant && !flash_attn {
            return Err(Error::Other("a quantized V cache needs flash attention (-fa on)".into()));
        }
        let v_trans = !flash_attn;
        let kv = hp.n_embd_kv() as i64;
        let mut store = TensorStore::new(2 * hp.n_layer + 1);
        let mut k = Vec::new();
        let mut v = Vec::new();
        for il in 0..hp.n_layer {
            k.push(store.add(&format!("cache_k_l{il}"), type_k, &[kv, n_ctx as i64]));
            let vd = if v_trans { [n_ctx as i64, kv] } else { [kv, n_ctx as i64] };
            v.push(store.add(&format!("cache_v_l{il}"), type_v, &vd));
        }
        if let Some((dev, n_dev)) = device {
            let first = hp.n_layer.saturating_sub(n_dev);
            let idx: Vec<usize> = (first..hp.n_layer).flat_map(|il| [k[il], v[il]]).collect();
            store.alloc_some(dev, &idx).map_err(|e| Error::Device(format!("KV cache on {}: {e}", dev.name())))?;
        }
        if device.map_or(true, |(_, n)| n < hp.n_layer) {
            store.alloc_rest(backend).map_err(|e| Error::Other(format!("KV cache: {e}")))?;
        }
        store.clear(0);
        Ok(Self { store, k, v, n_ctx, type_k, type_v, v_trans })
    }

    /// Layer `il`'s K tensor: [n_embd_kv, n_ctx].
    pub fn k(&self, il: usize) -> Tensor<'_> {
        self.store.get(self.k[il])
    }

    /// Layer `il`'s V tensor: [n_embd_kv, n_ctx], or [n_ctx, n_embd_kv] when transposed.
    pub fn v(&self, il: usize) -> Tensor<'_> {
        self.store.get(self.v[il])
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.store.allocated_bytes()
    }

    /// Zero-fills the cache (after a reset; stale cells are masked anyway).
    pub fn clear(&mut self) {
        self.store.clear(0);
    }
}
