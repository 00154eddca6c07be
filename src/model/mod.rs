//! A LLaMA-family model: hyper-parameters, weights bound zero-copy from the GGUF
//! map, the tokenizer, and the graph that runs it.

mod clex_gguf;
mod graph;
mod hparams;

pub use graph::{BatchInputs, ForwardSpec};
pub use clex_gguf::load_clex;
pub use hparams::{Arch, HParams};

use crate::gguf::GgufFile;
use crate::{Error, Result};
use ggml_sys::safe::TensorStore;
use std::path::Path;

/// Indices of one layer's weights in the store.
#[derive(Debug, Clone)]
pub(crate) struct LayerWeights {
    pub attn_norm: usize,
    pub wq: usize,
    pub wk: usize,
    pub wv: usize,
    pub bq: Option<usize>,
    pub bk: Option<usize>,
    pub bv: Option<usize>,
    pub wo: usize,
    pub ffn_norm: usize,
    pub gate: usize,
    pub up: usize,
    pub down: usize,
}

/// Indices of the model's weights in the store.
#[derive(Debug, Clone)]
pub(crate) struct Weights {
    pub tok_embd: usize,
    pub output_norm: usize,
    /// `None` when the output projection is tied to the embeddings.
    pub output: Option<usize>,
    pub layers: Vec<LayerWeights>,
}

/// A loaded model. `Send + Sync`: share it with `Arc` between sessions.
pub struct Model {
    pub hparams: HParams,
    pub(crate) gguf: GgufFile,
    pub(crate) store: TensorStore,
    pub(crate) w: Weights,
    /// The GGUF's own `rope_freqs.weight` (Llama 3.1 style), if any.
    pub rope_freqs: Option<Vec<f32>>,
    /// The CLEX frequency table, for CLEX models.
    pub clex: Option<crate::clex::ClexTable>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("hparams", &self.hparams).finish_non_exhaustive()
    }
}

/// Registers tensors of the file in the store, checking each shape.
struct Binder<'a> {
    f: &'a GgufFile,
    store: TensorStore,
    placements: Vec<(usize, usize)>,
}

impl Binder<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<usize> {
        self.opt(name, shape)?.ok_or_else(|| Error::Model(format!("missing tensor {name:?}")))
    }

    fn opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<usize>> {
        let Some(t) = self.f.tensor(name) else { return Ok(None) };
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        if dims != shape {
            return Err(Error::Model(format!("tensor {name:?} has shape {dims:?}, expected {shape:?}")));
        }
        let dims_i: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
        let idx = self.store.add(name, t.ty.id, &dims_i);
        self.placements.push((idx, (self.f.data_offset() + t.offset) as usize));
        Ok(Some(idx))
    }
}

impl Model {
    /// Loads a GGUF model: parses and checks the header, binds every weight to the
    /// memory-mapped file (no copy) and builds the tokenizer.
    pub fn load(path: &Path) -> Result<Self> {
        let gguf = GgufFile::open(path)?;
        Self::from_gguf(gguf)
    }

    /// Builds a model from an opened (mapped) GGUF file.
    pub fn from_gguf(gguf: GgufFile) -> Result<Self> {
        let hp = HParams::from_gguf(&gguf)?;
        let map = gguf.mapped().ok_or_else(|| Error::Model("model file is not memory-mapped".into()))?;
        let mut b = Binder { f: &gguf, store: TensorStore::new(gguf.tensors().len() + 1), placements: Vec::new() };
        let (e, v, ff, kv, q) = (hp.n_embd, hp.n_vocab, hp.n_ff, hp.n_embd_kv(), hp.head_dim * hp.n_head);
        let tok_embd = b.take("token_embd.weight", &[e, v])?;
        let output_norm = b.take("output_norm.weight", &[e])?;
        let output = b.opt("output.weight", &[e, v])?;
        let biases = hp.arch == Arch::Qwen2;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let bias = |b: &mut Binder, s: &str, len: usize| -> Result<Option<usize>> {
                if biases {
                    b.take(&n(s), &[len]).map(Some)
                } else {
                    b.opt(&n(s), &[len])
                }
            };
            layers.push(LayerWeights {
                attn_norm: b.take(&n("attn_norm.weight"), &[e])?,
                wq: b.take(&n("attn_q.weight"), &[e, q])?,
                wk: b.take(&n("attn_k.weight"), &[e, kv])?,
                wv: b.take(&n("attn_v.weight"), &[e, kv])?,
                bq: bias(&mut b, "attn_q.bias", q)?,
                bk: bias(&mut b, "attn_k.bias", kv)?,
                bv: bias(&mut b, "attn_v.bias", kv)?,
                wo: b.take(&n("attn_output.weight"), &[q, e])?,
                ffn_norm: b.take(&n("ffn_norm.weight"), &[e])?,
                gate: b.take(&n("ffn_gate.weight"), &[e, ff])?,
                up: b.take(&n("ffn_up.weight"), &[e, ff])?,
                down: b.take(&n("ffn_down.weight"), &[ff, e])?,
            });
        }
        let rope_freqs = match gguf.tensor("rope_freqs.weight") {
            None => None,
            Some(t) if t.dims == [hp.n_rot as u64 / 2] && t.ty.name == "f32" => Some(
                gguf.tensor_data(t).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            ),
            Some(t) => {
                return Err(Error::Model(format!(
                    "rope_freqs.weight must be f32 [{}], found {} {:?}",
                    hp.n_rot / 2,
                    t.ty.name,
                    t.dims
                )))
            }
        };
        let clex = load_clex(&gguf, &hp)?;
        let Binder { mut store, placements, .. } = b;
        store.bind_mapped(map, &placements).map_err(Error::Model)?;
        Ok(Self { hparams: hp, gguf, store, w: Weights { tok_embd, output_norm, output, layers }, rope_freqs, clex })
    }

    /// The GGUF file the model came from.
    pub fn gguf(&self) -> &GgufFile {
        &self.gguf
    }

    /// Number of weight tensors (sizes the graph).
    pub fn n_tensors(&self) -> usize {
        self.store.len()
    }

    /// Size of the weights in bytes.
    pub fn weights_bytes(&self) -> u64 {
        self.gguf.tensors().iter().map(|t| t.size).sum()
    }

    /// Number of parameters.
    pub fn n_params(&self) -> u64 {
        self.gguf.tensors().iter().map(|t| t.n_elements()).sum()
    }
}
