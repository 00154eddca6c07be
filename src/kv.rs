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
        let host_layers = hp.n_layer - device.map_or(0, |(_, n)| n.min(hp.n_layer));
        check_fits(hp, n_ctx, type_k, type_v, host_layers, available_memory())?;
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

    /// A copy of every layer's K and V bytes (see [`KvCache::restore`]).
    pub fn snapshot(&self) -> Vec<u8> {
        let tensors = || self.k.iter().chain(&self.v).map(|&i| self.store.get(i));
        let mut out = vec![0u8; tensors().map(|t| t.nbytes()).sum()];
        let mut at = 0;
        for t in tensors() {
            t.get_bytes(0, &mut out[at..at + t.nbytes()]);
            at += t.nbytes();
        }
        out
    }

    /// Writes back a [`KvCache::snapshot`] of a cache of the same shape and types.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let tensors = || self.k.iter().chain(&self.v).map(|&i| self.store.get(i));
        let want: usize = tensors().map(|t| t.nbytes()).sum();
        if bytes.len() != want {
            return Err(Error::Other(format!("KV snapshot has {} bytes, this cache {want}", bytes.len())));
        }
        let mut at = 0;
        for t in tensors() {
            t.set_bytes(0, &bytes[at..at + t.nbytes()]);
            at += t.nbytes();
        }
        Ok(())
    }
}

/// The most a KV cache may take when the free memory cannot be read (no `/proc`): 1 TiB.
pub const KV_ABSOLUTE_LIMIT: u64 = 1 << 40;

/// Memory this process can still take, in bytes: `MemAvailable` from `/proc/meminfo`,
/// lowered to the cgroup v2 headroom (`memory.max − memory.current`) when one is set.
/// `None` when `/proc/meminfo` cannot be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let mut avail = kb.saturating_mul(1024);
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).ok()?.trim().parse::<u64>().ok();
    if let (Some(max), Some(cur)) = (read("memory.max"), read("memory.current")) {
        avail = avail.min(max.saturating_sub(cur));
    }
    Some(avail)
}

/// Refuses, before anything is allocated, a cache whose host part (`host_layers` layers)
/// does not fit in `available` bytes ([`available_memory`]; [`KV_ABSOLUTE_LIMIT`] when
/// unknown, and never more). The error (`Error::Context`) gives both figures and the ways out.
pub fn check_fits(
    hp: &HParams,
    n_ctx: usize,
    type_k: u32,
    type_v: u32,
    host_layers: usize,
    available: Option<u64>,
) -> Result<()> {
    let row = |t: u32| -> Result<u128> {
        let ti = type_info(t).ok_or_else(|| Error::Other(format!("bad cache type {t}")))?;
        Ok((hp.n_embd_kv() as u128).div_ceil(ti.block_size as u128) * ti.type_size as u128)
    };
    let per_cell = row(type_k)? + row(type_v)?;
    let need = per_cell * n_ctx as u128 * host_layers as u128;
    let limit = available.unwrap_or(KV_ABSOLUTE_LIMIT).min(KV_ABSOLUTE_LIMIT);
    if need <= limit as u128 {
        return Ok(());
    }
    let name = |t: u32| type_info(t).map_or("?", |ti| ti.name);
    let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
    let what = if available.is_some() { "of memory is available (MemAvailable)" } else { "is the limit (free memory unknown)" };
    Err(Error::Context(format!(
        "the KV cache for -c {n_ctx} needs {:.1} GiB ({host_layers} layers × {n_ctx} cells × {per_cell} bytes, K {} + V {}) \
         but only {:.1} GiB {what}; use a smaller -c, or a quantized cache (-ctk q8_0 -ctv q8_0 -fa on halves it, q4_0 \
         takes 3.6× less than f16)",
        gib(need),
        name(type_k),
        name(type_v),
        gib(limit as u128),
    )))
}
