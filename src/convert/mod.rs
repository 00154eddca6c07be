//! Hugging Face checkpoints to GGUF, and CLEX GGUFs to stock-llama.cpp GGUFs.
//!
//! [`convert`] reads a Hugging Face model folder (LLaMA / Mistral / Qwen2, `config.json`,
//! safetensors single or sharded in F32/F16/BF16, `tokenizer.model` or `tokenizer.json`) and
//! writes a GGUF the way llama.cpp's `convert_hf_to_gguf.py` (+ `llama-quantize` for the
//! 4-bit types) does: the same keys, tensor names, vocabulary layout and, for LLaMA, the
//! Q/K row permutation that turns Hugging Face's half-split RoPE into ggml's adjacent pairs
//! (Qwen2 uses NeoX RoPE and is not permuted). CLEX checkpoints (`rope_scaling.type =
//! "clex"`) additionally get the CLEX keys and the three F32 CLEX tensors of
//! `docs/gguf-clex.md`, with `{arch}.context_length = L·T`.
//!
//! The weights are never loaded whole: source files are memory-mapped, each output tensor is
//! produced in row batches (converted to f32, permuted, quantized on a rayon pool) and
//! streamed into the file by [`crate::gguf::GgufWriter`].
//!
//! [`export_llamacpp`] turns a CLEX GGUF into a file stock llama.cpp runs with one CLEX
//! bucket frozen (`rope_freqs.weight` = θ_j / z_j(t)).

pub mod hf;
pub mod quant;
mod sentencepiece;
pub mod vocab;
mod export;

pub use export::export_llamacpp;

use crate::gguf::{GgufFile, GgufWriter, Value};
use crate::{Error, Result};
use hf::{Arch, Checkpoint, HfConfig, RopeScaling, SourceTensor};
use quant::Role;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The output type of a conversion (`--outtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    Bf16,
    Q8_0,
    /// llama-quantize's Q4_0 mix (output Q6_K).
    Q4_0,
    /// llama-quantize's Q4_K_M mix (see [`quant`]).
    Q4KM,
}

impl OutType {
    /// All of them, in `--outtype` order.
    pub const ALL: [OutType; 6] =
        [OutType::F32, OutType::F16, OutType::Bf16, OutType::Q8_0, OutType::Q4_0, OutType::Q4KM];

    /// The `--outtype` spelling.
    pub fn name(self) -> &'static str {
        match self {
            OutType::F32 => "f32",
            OutType::F16 => "f16",
            OutType::Bf16 => "bf16",
            OutType::Q8_0 => "q8_0",
            OutType::Q4_0 => "q4_0",
            OutType::Q4KM => "q4_k_m",
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::Q4_0 => 2,
            OutType::Q8_0 => 7,
            OutType::Q4KM => 15,
            OutType::Bf16 => 32,
        }
    }
}

impl fmt::Display for OutType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let l = s.trim().to_ascii_lowercase();
        OutType::ALL
            .into_iter()
            .find(|t| t.name() == l || (l == "q4_k" && *t == OutType::Q4KM))
            .ok_or_else(|| format!("unknown outtype {s:?} (f32, f16, bf16, q8_0, q4_0, q4_k_m)"))
    }
}

/// Where a conversion is, for a progress bar.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// The GGUF tensor being written.
    pub tensor: &'a str,
    /// Its index, 0-based.
    pub index: usize,
    pub n_tensors: usize,
    /// Tensor-data bytes written so far (the unit of the bar).
    pub bytes_done: u64,
    /// Tensor-data bytes in all.
    pub bytes_total: u64,
}

/// A progress callback; called from the writing thread after each batch of rows.
pub type ProgressFn = dyn Fn(&Progress<'_>) + Send + Sync;

/// What to convert, where, how.
pub struct ConvertOptions {
    /// The Hugging Face model folder.
    pub input: PathBuf,
    /// The GGUF to write (written as `…partial` and renamed at the end).
    pub output: PathBuf,
    pub outtype: OutType,
    /// Threads for quantization; 0 = all cores.
    pub threads: usize,
    /// Called as tensor data is written.
    pub progress: Option<Box<ProgressFn>>,
}

impl ConvertOptions {
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>, outtype: OutType) -> Self {
        Self { input: input.into(), output: output.into(), outtype, threads: 0, progress: None }
    }

    /// Sets the progress callback.
    pub fn with_progress(mut self, f: impl Fn(&Progress<'_>) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Sets the thread count (0 = all cores).
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
}

impl fmt::Debug for ConvertOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConvertOptions")
            .field("input", &self.input)
            .field("output", &self.output)
            .field("outtype", &self.outtype)
            .field("threads", &self.threads)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// `general.architecture`.
    pub arch: &'static str,
    pub outtype: OutType,
    pub n_tensors: usize,
    /// Elements over all tensors.
    pub n_params: u64,
    /// How many tensors of each ggml type ("f32", "q4_K", …).
    pub type_counts: BTreeMap<String, usize>,
    /// Vocabulary size and `tokenizer.ggml.model` / `pre`.
    pub n_vocab: usize,
    pub vocab_model: String,
    pub vocab_pre: String,
    /// Whether the CLEX keys and tensors were written.
    pub clex: bool,
    /// `{arch}.context_length` as written (L·T for CLEX).
    pub context_length: u32,
    /// Size of the GGUF.
    pub file_bytes: u64,
    pub elapsed: Duration,
}

/// Where the f32 values of an output tensor come from.
enum Source {
    /// A checkpoint tensor, rows optionally permuted for LLaMA's RoPE layout (`Some(n_head)`).
    Hf { t: SourceTensor, permute: Option<u32> },
    /// Values computed here (permuted 1-D biases, rope_freqs, a default inv_freq).
    Data(Vec<f32>),
}

struct Planned {
    name: String,
    source: Source,
    /// ggml order.
    dims: Vec<u64>,
    role: Role,
    layer: Option<u32>,
}

fn model_err(msg: impl fmt::Display) -> Error {
    Error::Model(msg.to_string())
}

/// The LLaMA Q/K permutation (llama.cpp's `LlamaModel.permute`): within each of `n_head`
/// heads of `hd` rows, output row `2i + s` is input row `s·hd/2 + i`. Returns the source row
/// of output row `r`.
pub fn permuted_row(r: usize, n_head: usize, rows: usize) -> usize {
    let hd = rows / n_head;
    let (h, w) = (r / hd, r % hd);
    let (i, s) = (w / 2, w % 2);
    h * hd + s * (hd / 2) + i
}

/// Converts a Hugging Face model folder to GGUF. See the module documentation.
pub fn convert(opts: &ConvertOptions) -> Result<ConvertReport> {
    let start = Instant::now();
    let dir = opts.input.as_path();
    let cfg = HfConfig::load(dir)?;
    let ck = Checkpoint::open(dir)?;
    let (plan, n_vocab, tied) = plan_tensors(&cfg, &ck)?;
    let vocab = vocab::load_vocab(dir, n_vocab, &cfg.raw)?;

    let arch = cfg.arch.name();
    let k = |s: &str| format!("{arch}.{s}");
    let mut w = GgufWriter::new();
    let name = dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    w.add_kv("general.architecture", Value::String(arch.into()))?;
    w.add_kv("general.type", Value::String("model".into()))?;
    if let Some(n) = name {
        w.add_kv("general.name", Value::String(n))?;
    }
    let clex = cfg.clex().cloned();
    let ctx_len = match &clex {
        Some(c) => cfg.max_position_embeddings * c.max_factor,
        None => cfg.max_position_embeddings,
    };
    if cfg.arch == Arch::Llama {
        w.add_kv(k("vocab_size"), Value::U32(n_vocab as u32))?;
    }
    w.add_kv(k("block_count"), Value::U32(cfg.num_hidden_layers))?;
    w.add_kv(k("context_length"), Value::U32(ctx_len))?;
    w.add_kv(k("embedding_length"), Value::U32(cfg.hidden_size))?;
    w.add_kv(k("feed_forward_length"), Value::U32(cfg.intermediate_size))?;
    w.add_kv(k("attention.head_count"), Value::U32(cfg.num_attention_heads))?;
    w.add_kv(k("attention.head_count_kv"), Value::U32(cfg.num_key_value_heads))?;
    w.add_kv(k("rope.freq_base"), Value::F32(cfg.rope_theta))?;
    w.add_kv(k("attention.layer_norm_rms_epsilon"), Value::F32(cfg.rms_norm_eps))?;
    if cfg.head_dim_explicit {
        w.add_kv(k("attention.key_length"), Value::U32(cfg.head_dim))?;
        w.add_kv(k("attention.value_length"), Value::U32(cfg.head_dim))?;
    }
    w.add_kv(k("rope.dimension_count"), Value::U32(cfg.head_dim))?;
    match &cfg.rope_scaling {
        RopeScaling::None | RopeScaling::Llama3 { .. } => {}
        RopeScaling::Linear { factor } => {
            w.add_kv(k("rope.scaling.type"), Value::String("linear".into()))?;
            w.add_kv(k("rope.scaling.factor"), Value::F32(*factor))?;
        }
        RopeScaling::Yarn { factor, original_context, ext_factor, attn_factor, beta_fast, beta_slow } => {
            w.add_kv(k("rope.scaling.type"), Value::String("yarn".into()))?;
            w.add_kv(k("rope.scaling.factor"), Value::F32(*factor))?;
            w.add_kv(k("rope.scaling.original_context_length"), Value::U32(*original_context))?;
            for (key, v) in [
                ("yarn_ext_factor", ext_factor),
                ("yarn_attn_factor", attn_factor),
                ("yarn_beta_fast", beta_fast),
                ("yarn_beta_slow", beta_slow),
            ] {
                if let Some(v) = v {
                    w.add_kv(k(&format!("rope.scaling.{key}")), Value::F32(*v))?;
                }
            }
        }
        RopeScaling::Clex(c) => {
            w.add_kv(k("rope.scaling.type"), Value::String("clex".into()))?;
            w.add_kv(k("rope.scaling.original_context_length"), Value::U32(cfg.max_position_embeddings))?;
            w.add_kv(k("rope.clex.max_factor"), Value::U32(c.max_factor))?;
            w.add_kv(k("rope.clex.param_factor"), Value::U32(c.param_factor))?;
            w.add_kv(k("rope.clex.act"), Value::String(c.act.as_str().into()))?;
            w.add_kv(k("rope.clex.time_dt"), Value::F32(c.time_dt))?;
            w.add_kv(k("rope.clex.log_scale"), Value::Bool(c.log_scale))?;
            w.add_kv(k("rope.clex.ntk_base"), Value::F32(hf::CLEX_NTK_BASE))?;
        }
    }
    w.add_kv("general.file_type", Value::U32(opts.outtype.file_type()))?;
    w.add_kv("general.quantization_version", Value::U32(2))?;
    for (key, v) in vocab.to_metadata() {
        w.add_kv(key, v)?;
    }

    // Check the CLEX ODE solves before writing gigabytes.
    if let Some(params) = cfg.clex_params() {
        let get = |n: &str| -> Result<Vec<f32>> {
            let p = plan.iter().find(|p| p.name == n).ok_or_else(|| model_err(format!("missing {n}")))?;
            match &p.source {
                Source::Hf { t, .. } => ck.to_f32(t),
                Source::Data(v) => Ok(v.clone()),
            }
        };
        crate::clex::ClexTable::solve(
            &params,
            &get("clex.inv_freq")?,
            &get("clex.ode_up_proj")?,
            &get("clex.ode_down_proj")?,
        )
        .map_err(|e| Error::Clex(format!("the checkpoint's CLEX ODE does not solve: {e}")))?;
    }

    let mut type_counts = BTreeMap::new();
    let mut n_params = 0u64;
    for p in &plan {
        let ty =
            quant::tensor_type(opts.outtype, p.role, p.layer, cfg.num_hidden_layers, p.dims[0], p.dims.len(), tied);
        let idx = w.add_tensor(&p.name, ty, &p.dims)?;
        let ti = &w.tensors()[idx];
        *type_counts.entry(ti.ty.name.to_string()).or_insert(0) += 1;
        n_params += ti.n_elements();
    }

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| Error::Other(format!("thread pool: {e}")))?;
    let infos = w.tensors().to_vec();
    let bytes_total: u64 = infos.iter().map(|t| t.size).sum();
    let mut bytes_done = 0u64;
    let mut failure: Option<Error> = None;
    let written = w.write(&opts.output, |i, out| {
        let p = &plan[i];
        let ti = &infos[i];
        let r = write_tensor(&ck, p, ti.ty.id, &pool, out, &mut |n| {
            bytes_done += n;
            if let Some(f) = &opts.progress {
                f(&Progress { tensor: &p.name, index: i, n_tensors: infos.len(), bytes_done, bytes_total });
            }
        });
        r.map_err(|e| {
            let io = std::io::Error::other(format!("tensor {:?}: {e}", p.name));
            failure = Some(e);
            io
        })
    });
    let file_bytes = match written {
        Ok(n) => n,
        Err(e) => {
            return Err(match failure {
                Some(Error::Io { source, .. }) => Error::Io { path: opts.output.clone(), source },
                Some(other) => other,
                None => Error::Io { path: opts.output.clone(), source: e },
            })
        }
    };
    Ok(ConvertReport {
        arch,
        outtype: opts.outtype,
        n_tensors: infos.len(),
        n_params,
        type_counts,
        n_vocab,
        vocab_model: vocab.model.clone(),
        vocab_pre: vocab.pre.clone(),
        clex: clex.is_some(),
        context_length: ctx_len,
        file_bytes,
        elapsed: start.elapsed(),
    })
}

/// Produces one tensor's bytes in row batches and writes them; `progress(n)` after each.
fn write_tensor(
    ck: &Checkpoint,
    p: &Planned,
    ty: u32,
    pool: &rayon::ThreadPool,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let ncols = p.dims[0] as usize;
    let nrows: usize = p.dims[1..].iter().product::<u64>() as usize;
    let fill = |r0: usize, nr: usize, buf: &mut Vec<f32>| -> Result<(), String> {
        match &p.source {
            Source::Data(v) => {
                buf.extend_from_slice(&v[r0 * ncols..(r0 + nr) * ncols]);
                Ok(())
            }
            Source::Hf { t, permute: None } => {
                ck.read_f32(t, r0 * ncols, (r0 + nr) * ncols, buf).map_err(|e| e.to_string())
            }
            Source::Hf { t, permute: Some(n_head) } => {
                for r in r0..r0 + nr {
                    let s = permuted_row(r, *n_head as usize, nrows);
                    ck.read_f32(t, s * ncols, (s + 1) * ncols, buf).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    };
    let row_bytes =
        ggml_sys::safe::check_quantizable(ty, ncols).map_err(|e| model_err(format!("tensor {:?}: {e}", p.name)))?;
    // Batches of at most ~64 MiB of output.
    let batch_rows = ((64usize << 20) / row_bytes.max(1)).clamp(1, nrows.max(1));
    let mut r0 = 0;
    while r0 < nrows {
        let nr = batch_rows.min(nrows - r0);
        let bytes = pool
            .install(|| quant::quantize_rows(ty, ncols, r0, nr, &fill))
            .map_err(|e| model_err(format!("tensor {:?}: {e}", p.name)))?;
        out.write_all(&bytes).map_err(|e| Error::Io { path: PathBuf::from("<output>"), source: e })?;
        progress(bytes.len() as u64);
        r0 += nr;
    }
    Ok(())
}

/// Maps and validates the checkpoint's tensors against the config. Returns the plan (in
/// llama.cpp's usual order), the vocabulary size and whether the embeddings are tied.
fn plan_tensors(cfg: &HfConfig, ck: &Checkpoint) -> Result<(Vec<Planned>, usize, bool)> {
    let h = cfg.hidden_size as usize;
    let hd = cfg.head_dim as usize;
    let nh = cfg.num_attention_heads as usize;
    let nkv = cfg.num_key_value_heads as usize;
    let ff = cfg.intermediate_size as usize;
    let nl = cfg.num_hidden_layers;
    let permute = cfg.arch == Arch::Llama;

    let mut used: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut plan = Vec::new();
    let shape_err = |t: &SourceTensor, want: &[usize], why: &str| {
        model_err(format!("tensor {:?} has shape {:?}, expected {:?} ({why})", t.name, t.shape, want))
    };
    let mut take = |name: &str, required: bool| -> Result<Option<SourceTensor>> {
        match ck.get(name) {
            Some(t) => {
                Checkpoint::check_dtype(t)?;
                used.insert(ck.tensors().get_key_value(name).expect("present").0.as_str());
                Ok(Some(t.clone()))
            }
            None if required => Err(model_err(format!("tensor {name:?} is missing from the checkpoint"))),
            None => Ok(None),
        }
    };
    let dims_of = |shape: &[usize]| -> Vec<u64> { shape.iter().rev().map(|&d| d as u64).collect() };
    let push =
        |plan: &mut Vec<Planned>, name: String, source: Source, shape: &[usize], role: Role, layer: Option<u32>| {
            plan.push(Planned { name, source, dims: dims_of(shape), role, layer });
        };

    let embd = take("model.embed_tokens.weight", true)?.expect("required");
    if embd.shape.len() != 2 || embd.shape[1] != h {
        return Err(shape_err(&embd, &[cfg.vocab_size.unwrap_or(0) as usize, h], "[vocab_size, hidden_size]"));
    }
    let n_vocab = embd.shape[0];
    if let Some(v) = cfg.vocab_size {
        if v as usize != n_vocab {
            return Err(model_err(format!(
                "config.json: vocab_size ({v}) contradicts model.embed_tokens.weight, which has {n_vocab} rows"
            )));
        }
    }
    let shape = embd.shape.clone();
    push(&mut plan, "token_embd.weight".into(), Source::Hf { t: embd, permute: None }, &shape, Role::TokenEmbd, None);

    for l in 0..nl {
        let pre = format!("model.layers.{l}");
        let blk = format!("blk.{l}");
        let q_rows = nh * hd;
        let kv_rows = nkv * hd;
        let mat = |rows: usize, cols: usize| vec![rows, cols];
        // (HF name, GGUF name, shape, role, permute heads, what the shape is)
        type Item<'a> = (&'a str, &'a str, Vec<usize>, Role, Option<u32>, &'a str);
        let items: [Item; 7] = [
            (
                "self_attn.q_proj",
                "attn_q",
                mat(q_rows, h),
                Role::AttnQ,
                permute.then_some(nh as u32),
                "[num_attention_heads·head_dim, hidden_size]",
            ),
            (
                "self_attn.k_proj",
                "attn_k",
                mat(kv_rows, h),
                Role::AttnK,
                permute.then_some(nkv as u32),
                "[num_key_value_heads·head_dim, hidden_size]",
            ),
            (
                "self_attn.v_proj",
                "attn_v",
                mat(kv_rows, h),
                Role::AttnV,
                None,
                "[num_key_value_heads·head_dim, hidden_size]",
            ),
            (
                "self_attn.o_proj",
                "attn_output",
                mat(h, q_rows),
                Role::AttnOutput,
                None,
                "[hidden_size, num_attention_heads·head_dim]",
            ),
            ("mlp.gate_proj", "ffn_gate", mat(ff, h), Role::FfnGate, None, "[intermediate_size, hidden_size]"),
            ("mlp.up_proj", "ffn_up", mat(ff, h), Role::FfnUp, None, "[intermediate_size, hidden_size]"),
            ("mlp.down_proj", "ffn_down", mat(h, ff), Role::FfnDown, None, "[hidden_size, intermediate_size]"),
        ];
        let norm = |hf: &str, gg: &str| (format!("{pre}.{hf}.weight"), format!("{blk}.{gg}.weight"));
        let (n_hf, n_gg) = norm("input_layernorm", "attn_norm");
        let t = take(&n_hf, true)?.expect("required");
        if t.shape != [h] {
            return Err(shape_err(&t, &[h], "[hidden_size]"));
        }
        push(&mut plan, n_gg, Source::Hf { t, permute: None }, &[h], Role::F32Only, Some(l));
        for (i, (hf_name, gg, want, role, perm, why)) in items.into_iter().enumerate() {
            if i == 4 {
                let (n_hf, n_gg) = norm("post_attention_layernorm", "ffn_norm");
                let t = take(&n_hf, true)?.expect("required");
                if t.shape != [h] {
                    return Err(shape_err(&t, &[h], "[hidden_size]"));
                }
                push(&mut plan, n_gg, Source::Hf { t, permute: None }, &[h], Role::F32Only, Some(l));
            }
            let t = take(&format!("{pre}.{hf_name}.weight"), true)?.expect("required");
            if t.shape != want {
                return Err(shape_err(&t, &want, why));
            }
            push(&mut plan, format!("{blk}.{gg}.weight"), Source::Hf { t, permute: perm }, &want, role, Some(l));
            let bias_required = cfg.arch == Arch::Qwen2 && i < 3;
            if let Some(b) = take(&format!("{pre}.{hf_name}.bias"), bias_required)? {
                if b.shape != [want[0]] {
                    return Err(shape_err(&b, &[want[0]], "[output rows]"));
                }
                let source = match perm {
                    Some(n) => {
                        let v = ck.to_f32(&b)?;
                        Source::Data((0..v.len()).map(|r| v[permuted_row(r, n as usize, v.len())]).collect())
                    }
                    None => Source::Hf { t: b, permute: None },
                };
                push(&mut plan, format!("{blk}.{gg}.bias"), source, &[want[0]], Role::F32Only, Some(l));
            }
        }
    }

    let norm = take("model.norm.weight", true)?.expect("required");
    if norm.shape != [h] {
        return Err(shape_err(&norm, &[h], "[hidden_size]"));
    }
    push(&mut plan, "output_norm.weight".into(), Source::Hf { t: norm, permute: None }, &[h], Role::F32Only, None);
    let tied = match take("lm_head.weight", false)? {
        Some(t) => {
            if t.shape != [n_vocab, h] {
                return Err(shape_err(&t, &[n_vocab, h], "[vocab_size, hidden_size]"));
            }
            push(&mut plan, "output.weight".into(), Source::Hf { t, permute: None }, &[n_vocab, h], Role::Output, None);
            false
        }
        None if cfg.tie_word_embeddings => true,
        None => {
            return Err(model_err(
                "tensor \"lm_head.weight\" is missing and config.json's tie_word_embeddings is not true",
            ))
        }
    };

    if let RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_context } = cfg.rope_scaling {
        let base = cfg.rope_theta as f64;
        let low_wl = original_context as f64 / low_freq_factor as f64;
        let high_wl = original_context as f64 / high_freq_factor as f64;
        let f: Vec<f32> = (0..hd / 2)
            .map(|j| {
                let freq = (1.0 / base.powf(2.0 * j as f64 / hd as f64)) as f32 as f64;
                let wl = 2.0 * std::f64::consts::PI / freq;
                (if wl < high_wl {
                    1.0
                } else if wl > low_wl {
                    factor as f64
                } else {
                    let smooth = (original_context as f64 / wl - low_freq_factor as f64)
                        / (high_freq_factor as f64 - low_freq_factor as f64);
                    1.0 / ((1.0 - smooth) / factor as f64 + smooth)
                }) as f32
            })
            .collect();
        plan.insert(
            0,
            Planned {
                name: "rope_freqs.weight".into(),
                source: Source::Data(f),
                dims: vec![(hd / 2) as u64],
                role: Role::F32Only,
                layer: None,
            },
        );
    }

    // CLEX: the shared ODE weights and inv_freq, always F32.
    let clex_names = [
        "model.clex_layer.proj_func.ode_up_proj",
        "model.clex_layer.proj_func.ode_down_proj",
        "model.clex_layer.inv_freq",
    ];
    match cfg.clex() {
        Some(c) => {
            let d2 = hd / 2;
            let m = c.param_factor as usize * hd;
            let up = take(clex_names[0], true)?.expect("required");
            if up.shape != [d2, m] {
                return Err(shape_err(&up, &[d2, m], "[head_dim/2, param_factor·head_dim]"));
            }
            let down = take(clex_names[1], true)?.expect("required");
            if down.shape != [m, d2] {
                return Err(shape_err(&down, &[m, d2], "[param_factor·head_dim, head_dim/2]"));
            }
            let inv = match take(clex_names[2], false)? {
                Some(t) if t.shape != [d2] => return Err(shape_err(&t, &[d2], "[head_dim/2]")),
                Some(t) => Source::Hf { t, permute: None },
                None => Source::Data(
                    (0..d2).map(|j| (1.0 / (cfg.rope_theta as f64).powf((2 * j) as f64 / hd as f64)) as f32).collect(),
                ),
            };
            push(
                &mut plan,
                "clex.ode_up_proj".into(),
                Source::Hf { t: up, permute: None },
                &[d2, m],
                Role::F32Only,
                None,
            );
            push(
                &mut plan,
                "clex.ode_down_proj".into(),
                Source::Hf { t: down, permute: None },
                &[m, d2],
                Role::F32Only,
                None,
            );
            push(&mut plan, "clex.inv_freq".into(), inv, &[d2], Role::F32Only, None);
        }
        None => {
            // A CLEX checkpoint whose config had its rope_scaling removed converts to a plain
            // model (what CLEX does for n <= L anyway); the ODE weights are left out.
            for n in clex_names {
                if ck.get(n).is_some() {
                    tracing::warn!(
                        "{n}: config.json's rope_scaling.type is not \"clex\"; converting as a plain model without it"
                    );
                    used.insert(ck.tensors().get_key_value(n).expect("present").0.as_str());
                }
            }
        }
    }

    // Everything else must be accounted for (unused rotary buffers excepted).
    for name in ck.tensors().keys() {
        if used.contains(name.as_str()) || name.ends_with(".rotary_emb.inv_freq") {
            continue;
        }
        if let Some(rest) = name.strip_prefix("model.layers.") {
            if let Some(Ok(l)) = rest.split('.').next().map(str::parse::<u32>) {
                if l >= nl {
                    return Err(model_err(format!("tensor {name:?} is beyond config.json's num_hidden_layers ({nl})")));
                }
            }
        }
        return Err(model_err(format!("tensor {name:?} is not part of a {} model this converter knows", cfg.hf_arch)));
    }
    Ok((plan, n_vocab, tied))
}
