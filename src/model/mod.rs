//! A LLaMA-family model: hyper-parameters, weights bound zero-copy from the GGUF
//! map, the tokenizer, and the graph that runs it.

mod clex_gguf;
mod graph;
mod hparams;
mod offload;

pub use graph::{v_trans_idxs, BatchInputs, ForwardSpec};
pub use clex_gguf::load_clex;
pub use hparams::{Arch, HParams};
pub use offload::{gpu_features, list_devices, Offload};

use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use ggml_sys::safe::{TensorStore, WeightUse};
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
    pub tokenizer: Tokenizer,
    pub(crate) gguf: GgufFile,
    pub(crate) store: TensorStore,
    pub(crate) w: Weights,
    /// The GGUF's own `rope_freqs.weight` (Llama 3.1 style), if any.
    pub rope_freqs: Option<Vec<f32>>,
    /// The CLEX frequency table, for CLEX models.
    pub clex: Option<crate::clex::ClexTable>,
    /// GPU offload (`-ngl`), if any.
    pub offload: Option<Offload>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("hparams", &self.hparams).finish_non_exhaustive()
    }
}

/// How a model is loaded.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Put the weights that the CPU backend's extra buffer types accept (ggml's
    /// repacked layouts for Q4_0/Q4_K/IQ4_NL/… matrix products, depending on the CPU)
    /// into those buffers, as llama.cpp does by default: faster prompt evaluation and
    /// the same numbers as llama.cpp, at the cost of copying those weights out of the
    /// file map (their file pages are released again). `false`: every weight stays
    /// zero-copy on the map and the plain kernels run.
    pub repack: bool,
    /// Layers to run on a GPU (llama.cpp's `-ngl`): the last `n_gpu_layers` repeating
    /// layers; more than the model has also moves the output layer. 0: CPU only.
    pub n_gpu_layers: usize,
    /// The GPU to use, by ggml's device name ("Vulkan0", "CUDA0"); `None`: the first.
    pub device: Option<String>,
    /// Called as the load advances (see [`crate::LoadProgress`]); returning `false`
    /// abandons the load with [`Error::Cancelled`].
    pub progress: Option<crate::LoadProgress>,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { repack: true, n_gpu_layers: 0, device: None, progress: None }
    }
}

/// Registers tensors of the file in the store, checking each shape.
struct Binder<'a> {
    f: &'a GgufFile,
    store: TensorStore,
    /// Tensor index, byte offset in the file, how the graph uses it.
    placements: Vec<(usize, usize, WeightUse)>,
}

impl Binder<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<usize> {
        self.opt(name, shape)?.ok_or_else(|| Error::Model(format!("missing tensor {name:?}")))
    }

    /// [`Binder::take`] for a weight used only as `mul_mat`'s first operand.
    fn take_mm(&mut self, name: &str, shape: &[usize]) -> Result<usize> {
        let i = self.take(name, shape)?;
        self.placements.last_mut().expect("just added").2 = WeightUse::MulMat;
        Ok(i)
    }

    fn opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<usize>> {
        let Some(t) = self.f.tensor(name) else { return Ok(None) };
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        if dims != shape {
            return Err(Error::Model(format!("tensor {name:?} has shape {dims:?}, expected {shape:?}")));
        }
        let dims_i: Vec<i64> = t.dims.iter().map(|&d| d as i64).collect();
        let idx = self.store.add(name, t.ty.id, &dims_i);
        self.placements.push((idx, (self.f.data_offset() + t.offset) as usize, WeightUse::Other));
        Ok(Some(idx))
    }
}

impl Model {
    /// Loads a GGUF model: parses and checks the header, binds the weights to the
    /// memory-mapped file (no copy, except the weights repacked for the CPU, see
    /// [`ModelOptions::repack`]) and builds the tokenizer. Uses the default
    /// [`ModelOptions`].
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &ModelOptions::default())
    }

    /// [`Model::load`] with options.
    pub fn load_with(path: &Path, opts: &ModelOptions) -> Result<Self> {
        crate::api::route_ggml_logs();
        crate::api::report(opts.progress.as_ref(), 0.0)?;
        let gguf = GgufFile::open(path)?;
        Self::from_gguf_with(gguf, opts)
    }

    /// Builds a model from an opened (mapped) GGUF file, with the default options.
    pub fn from_gguf(gguf: GgufFile) -> Result<Self> {
        Self::from_gguf_with(gguf, &ModelOptions::default())
    }

    /// Builds a model from an opened (mapped) GGUF file.
    pub fn from_gguf_with(gguf: GgufFile, opts: &ModelOptions) -> Result<Self> {
        crate::api::route_ggml_logs();
        let progress = |f: f32| crate::api::report(opts.progress.as_ref(), f);
        progress(0.05)?;
        let hp = HParams::from_gguf(&gguf)?;
        let tokenizer = Tokenizer::from_gguf(&gguf).map_err(Error::Tokenizer)?;
        if tokenizer.n_vocab() != hp.n_vocab {
            return Err(Error::Model(format!(
                "vocabulary has {} tokens but token_embd.weight has {} rows",
                tokenizer.n_vocab(),
                hp.n_vocab
            )));
        }
        let map = gguf.mapped().ok_or_else(|| Error::Model("model file is not memory-mapped".into()))?;
        let mut b = Binder { f: &gguf, store: TensorStore::new(gguf.tensors().len() + 1), placements: Vec::new() };
        let (e, v, ff, kv, q) = (hp.n_embd, hp.n_vocab, hp.n_ff, hp.n_embd_kv(), hp.head_dim * hp.n_head);
        let tok_embd = b.take("token_embd.weight", &[e, v])?;
        let output_norm = b.take("output_norm.weight", &[e])?;
        let output = b.opt("output.weight", &[e, v])?;
        if output.is_some() {
            b.placements.last_mut().expect("just added").2 = WeightUse::MulMat;
        }
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
                wq: b.take_mm(&n("attn_q.weight"), &[e, q])?,
                wk: b.take_mm(&n("attn_k.weight"), &[e, kv])?,
                wv: b.take_mm(&n("attn_v.weight"), &[e, kv])?,
                bq: bias(&mut b, "attn_q.bias", q)?,
                bk: bias(&mut b, "attn_k.bias", kv)?,
                bv: bias(&mut b, "attn_v.bias", kv)?,
                wo: b.take_mm(&n("attn_output.weight"), &[q, e])?,
                ffn_norm: b.take(&n("ffn_norm.weight"), &[e])?,
                gate: b.take_mm(&n("ffn_gate.weight"), &[e, ff])?,
                up: b.take_mm(&n("ffn_up.weight"), &[e, ff])?,
                down: b.take_mm(&n("ffn_down.weight"), &[ff, e])?,
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
        progress(0.1)?;
        let offload = offload::resolve(opts.n_gpu_layers, opts.device.as_deref(), hp.n_layer)?;
        let Binder { mut store, mut placements, .. } = b;
        // Weights of offloaded layers go to the device (uploaded once), except those the
        // device cannot hold or use; everything else stays mapped (or repacked) on the CPU.
        let mut on_device = Vec::new();
        let device_backend = offload.as_ref().map(|o| o.backend()).transpose()?;
        if let (Some(off), Some(backend)) = (&offload, &device_backend) {
            let mut dev: Vec<usize> = Vec::new();
            for (il, l) in layers.iter().enumerate() {
                if off.has_layer(il, hp.n_layer) {
                    dev.extend([l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.ffn_norm, l.gate, l.up, l.down]);
                    dev.extend([l.bq, l.bk, l.bv].into_iter().flatten());
                }
            }
            if off.output {
                dev.push(output_norm);
                dev.extend(output);
            }
            let (d, cpu): (Vec<_>, Vec<_>) = placements.into_iter().partition(|p| dev.contains(&p.0));
            let (ok, refused): (Vec<_>, Vec<_>) = d.into_iter().partition(|p| backend.supports_weight(store.get(p.0), p.2));
            if !refused.is_empty() {
                let names: Vec<String> = refused.iter().map(|p| store.get(p.0).name()).collect();
                tracing::info!("{} weight(s) stay on the CPU, {} cannot run them: {}", refused.len(), off.device_name, names.join(", "));
            }
            placements = cpu;
            placements.extend(refused);
            on_device = ok;
        }
        if opts.repack {
            let st = store.bind_mapped_repack(map.clone(), &placements).map_err(Error::Model)?;
            tracing::debug!(
                "repacked {} weights ({} bytes) into {:?}; released {} bytes of file pages",
                st.tensors,
                st.bytes,
                st.buffer_types,
                st.released_bytes
            );
        } else {
            let plain: Vec<(usize, usize)> = placements.iter().map(|&(i, off, _)| (i, off)).collect();
            store.bind_mapped(map.clone(), &plain).map_err(Error::Model)?;
        }
        progress(if on_device.is_empty() { 0.95 } else { 0.5 })?;
        if let (Some(off), Some(backend)) = (&offload, &device_backend) {
            let idx: Vec<usize> = on_device.iter().map(|p| p.0).collect();
            let bytes = store
                .alloc_some(backend, &idx)
                .map_err(|e| Error::Device(format!("uploading {} weights to {}: {e}", idx.len(), off.device_name)))?;
            for (k, &(i, start, _)) in on_device.iter().enumerate() {
                let t = store.get(i);
                t.set_bytes(0, &map.bytes()[start..start + t.nbytes()]);
                progress(0.5 + 0.45 * (k + 1) as f32 / on_device.len() as f32)?;
            }
            tracing::info!(
                "offloaded {} of {} layers{} to {} ({} weights, {:.1} MiB)",
                off.n_layers,
                hp.n_layer,
                if off.output { " and the output layer" } else { "" },
                off.device_name,
                idx.len(),
                bytes as f64 / 1048576.0
            );
        }
        progress(1.0)?;
        Ok(Self { hparams: hp, tokenizer, gguf, store, w: Weights { tok_embd, output_norm, output, layers }, rope_freqs, clex, offload })
    }

    /// The GGUF file the model came from.
    pub fn gguf(&self) -> &GgufFile {
        &self.gguf
    }

    /// Number of weight tensors (sizes the graph).
    pub fn n_tensors(&self) -> usize {
        self.store.len()
    }

    /// Where each weight lives: (GGUF tensor name, ggml buffer type name), e.g.
    /// ("blk.0.ffn_up.weight", "AMX") for a weight repacked for the CPU's AMX kernels,
    /// "CPU_Mapped" for one read in place from the file map, "CPU" for a plain copy, a GPU's
    /// name when offloaded.
    /// The buffer type decides which matrix kernel runs a weight's products, and with it
    /// their rounding (an F16 weight in a plain CPU buffer has its activations rounded
    /// to f16; ggml's AMX buffer keeps them f32).
    pub fn weight_placement(&self) -> Vec<(String, String)> {
        (0..self.store.len())
            .map(|i| {
                let t = self.store.get(i);
                (t.name(), t.buffer_type_name().unwrap_or_else(|| "none".into()))
            })
            .collect()
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
