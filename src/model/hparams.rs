//! Hyper-parameters read from GGUF metadata with llama.cpp's key names.

use crate::gguf::GgufFile;
use crate::{Error, Result};

/// The architectures the graph builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA 1/2/3, Mistral, CodeLlama (`general.architecture = llama`).
    Llama,
    /// Qwen2 / Qwen2.5: LLaMA with Q/K/V biases and NEOX RoPE.
    Qwen2,
}

impl Arch {
    /// The GGUF architecture name (the prefix of its keys).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
    /// ggml's RoPE mode for the architecture.
    pub fn rope_mode(self) -> i32 {
        match self {
            Arch::Llama => ggml_sys::GGML_ROPE_TYPE_NORMAL,
            Arch::Qwen2 => ggml_sys::GGML_ROPE_TYPE_NEOX,
        }
    }
}

/// Model shape and numerics.
#[derive(Debug, Clone)]
pub struct HParams {
    pub arch: Arch,
    pub name: String,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rms_eps: f32,
    pub rope_freq_base: f32,
    /// `{arch}.rope.scaling.type` as written in the file ("none" when absent).
    pub rope_scaling_type: String,
    /// `{arch}.rope.scaling.factor` (0 when absent).
    pub rope_scaling_factor: f32,
    /// `{arch}.rope.scaling.original_context_length` (0 when absent).
    pub rope_orig_ctx: usize,
    /// `{arch}.rope.scaling.attn_factor` (0 when absent).
    pub rope_attn_factor: f32,
}

fn need<T>(v: Option<T>, key: &str) -> Result<T> {
    v.ok_or_else(|| Error::Model(format!("missing metadata key {key:?}")))
}

impl HParams {
    /// Reads and checks the hyper-parameters of `f`.
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch_name = need(f.get_str("general.architecture")?, "general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => return Err(Error::Model(format!("unsupported architecture {other:?} (supported: llama, qwen2)"))),
        };
        let k = |s: &str| format!("{arch_name}.{s}");
        let u = |s: &str| -> Result<Option<usize>> { Ok(f.get_u64(&k(s))?.map(|v| v as usize)) };
        let n_embd = need(u("embedding_length")?, &k("embedding_length"))?;
        let n_layer = need(u("block_count")?, &k("block_count"))?;
        let n_ff = need(u("feed_forward_length")?, &k("feed_forward_length"))?;
        let n_head = need(u("attention.head_count")?, &k("attention.head_count"))?;
        let n_head_kv = u("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ctx_train = need(u("context_length")?, &k("context_length"))?;
        if n_head == 0 || n_head_kv == 0 || n_embd == 0 || n_layer == 0 || n_ff == 0 {
            return Err(Error::Model("a head count, embedding length, block count or feed-forward length is 0".into()));
        }
        if n_head % n_head_kv != 0 {
            return Err(Error::Model(format!("head_count {n_head} is not a multiple of head_count_kv {n_head_kv}")));
        }
        if n_layer > 4096 || n_embd > 1 << 20 || n_head > 4096 {
            return Err(Error::Model(format!("implausible shape: {n_layer} layers, {n_embd} embedding, {n_head} heads")));
        }
        let head_dim = match u("attention.key_length")? {
            Some(d) if (1..=4096).contains(&d) && d % 2 == 0 => d,
            Some(d) => return Err(Error::Model(format!("attention.key_length {d} is not an even number in 2..=4096"))),
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => return Err(Error::Model(format!("embedding_length {n_embd} is not a multiple of head_count {n_head}"))),
        };
        if let Some(vd) = u("attention.value_length")? {
            if vd != head_dim {
                return Err(Error::Model(format!("value_length {vd} differs from key_length {head_dim} (unsupported)")));
            }
        }
        let n_rot = u("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 || head_dim % 2 != 0 {
            return Err(Error::Model(format!("rope.dimension_count {n_rot} does not fit head_dim {head_dim}")));
        }
        let rms_eps = f.get_f32(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5);
        let rope_freq_base = f.get_f32(&k("rope.freq_base"))?.unwrap_or(10000.0);
        if !(rope_freq_base.is_finite() && rope_freq_base > 1.0) {
            return Err(Error::Model(format!("rope.freq_base {rope_freq_base} is not a number > 1")));
        }
        let emb = f.tensor("token_embd.weight").ok_or_else(|| Error::Model("missing tensor \"token_embd.weight\"".into()))?;
        if emb.dims.len() != 2 || emb.dims[0] as usize != n_embd {
            return Err(Error::Model(format!("token_embd.weight has shape {:?}, expected [{n_embd}, n_vocab]", emb.dims)));
        }
        Ok(Self {
            arch,
            name: f.get_str("general.name")?.unwrap_or("").to_string(),
            n_vocab: emb.dims[1] as usize,
            n_ctx_train,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rms_eps,
            rope_freq_base,
            rope_scaling_type: f.get_str(&k("rope.scaling.type"))?.unwrap_or("none").to_string(),
            rope_scaling_factor: f.get_f32(&k("rope.scaling.factor"))?.unwrap_or(0.0),
            rope_orig_ctx: u("rope.scaling.original_context_length")?.unwrap_or(0),
            rope_attn_factor: f.get_f32(&k("rope.scaling.attn_factor"))?.unwrap_or(0.0),
        })
    }

    /// Width of the K (and V) rows of one token across all KV heads.
    pub fn n_embd_kv(&self) -> usize {
        self.head_dim * self.n_head_kv
    }
}
