//! Hugging Face checkpoints: `config.json` (validated into [`HfConfig`]) and safetensors
//! weights, single file or sharded, read through memory maps ([`Checkpoint`]).

use crate::clex::{ClexAct, ClexParams};
use crate::{Error, Result};
use ggml_sys::safe::MappedFile;
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::model::Arch;

/// RoPE scaling as found in `rope_scaling`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Linear position interpolation by `factor`.
    Linear {
        factor: f32,
    },
    /// YaRN.
    Yarn {
        factor: f32,
        original_context: u32,
        ext_factor: Option<f32>,
        attn_factor: Option<f32>,
        beta_fast: Option<f32>,
        beta_slow: Option<f32>,
    },
    /// Llama 3.1's frequency factors (written as the `rope_freqs.weight` tensor).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_context: u32,
    },
    /// CLEX (see `docs/gguf-clex.md`).
    Clex(ClexConfig),
}

/// The CLEX settings of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct ClexConfig {
    /// T (`rope_scaling.max_factor`).
    pub max_factor: u32,
    /// p (`rope_scaling.param_factor`).
    pub param_factor: u32,
    /// `rope_scaling.act`; missing means SiLU (the October 2023 code).
    pub act: ClexAct,
    /// `rope_scaling.time_dt`; missing means 0.01.
    pub time_dt: f32,
    /// Top-level `log_scale`; missing means false.
    pub log_scale: bool,
}

/// The NTK base inside the CLEX ODE: 10000 in every released version of the reference.
pub const CLEX_NTK_BASE: f32 = 10000.0;

/// A validated `config.json`.
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub arch: Arch,
    /// The `architectures[0]` entry.
    pub hf_arch: String,
    /// `vocab_size`, if given (the embedding's rows otherwise).
    pub vocab_size: Option<u32>,
    pub hidden_size: u32,
    pub intermediate_size: u32,
    pub num_hidden_layers: u32,
    pub num_attention_heads: u32,
    pub num_key_value_heads: u32,
    /// `head_dim`, or hidden_size / num_attention_heads.
    pub head_dim: u32,
    /// Whether `head_dim` was given explicitly (llama.cpp then writes key/value lengths).
    pub head_dim_explicit: bool,
    /// `max_position_embeddings`: the context length (L for CLEX).
    pub max_position_embeddings: u32,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub tie_word_embeddings: bool,
    pub rope_scaling: RopeScaling,
    /// The whole file, for the special-token ids (`bos_token_id`, …).
    pub raw: Map<String, Json>,
}

fn cfg_err(msg: impl std::fmt::Display) -> Error {
    Error::Model(format!("config.json: {msg}"))
}

fn get_u32(m: &Map<String, Json>, prefix: &str, key: &str) -> Result<Option<u32>> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => {
            let n = v.as_u64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
            match n {
                Some(n) if n <= u32::MAX as u64 => Ok(Some(n as u32)),
                _ => Err(cfg_err(format!("{prefix}{key} must be a non-negative integer, found {v}"))),
            }
        }
    }
}

fn need_u32(m: &Map<String, Json>, prefix: &str, key: &str, why: &str) -> Result<u32> {
    match get_u32(m, prefix, key)? {
        Some(0) => Err(cfg_err(format!("{prefix}{key} must be > 0{why}"))),
        Some(n) => Ok(n),
        None => Err(cfg_err(format!("{prefix}{key} is missing{why}"))),
    }
}

fn get_f32(m: &Map<String, Json>, prefix: &str, key: &str) -> Result<Option<f32>> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() => Ok(Some(f as f32)),
            _ => Err(cfg_err(format!("{prefix}{key} must be a finite number, found {v}"))),
        },
    }
}

fn get_bool(m: &Map<String, Json>, prefix: &str, key: &str) -> Result<Option<bool>> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(cfg_err(format!("{prefix}{key} must be true or false, found {v}"))),
    }
}

fn get_str<'a>(m: &'a Map<String, Json>, prefix: &str, key: &str) -> Result<Option<&'a str>> {
    match m.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(v) => Err(cfg_err(format!("{prefix}{key} must be a string, found {v}"))),
    }
}

/// Reads a JSON file into an object.
pub(crate) fn read_json(path: &Path) -> Result<Map<String, Json>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
    match serde_json::from_str(&text) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Model(format!("{}: not a JSON object", path.display()))),
        Err(e) => Err(Error::Model(format!("{}: {e}", path.display()))),
    }
}

impl HfConfig {
    /// Reads and validates `dir/config.json`.
    pub fn load(dir: &Path) -> Result<HfConfig> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(Error::Model(format!(
                "{}: no config.json (is this a Hugging Face model folder?)",
                dir.display()
            )));
        }
        Self::from_json(read_json(&path)?)
    }

    /// Parses and validates the text of a `config.json` (as [`HfConfig::load`] does with
    /// the file's contents).
    pub fn from_json_text(text: &str) -> Result<HfConfig> {
        match serde_json::from_str(text) {
            Ok(Json::Object(m)) => Self::from_json(m),
            Ok(_) => Err(cfg_err("not a JSON object")),
            Err(e) => Err(cfg_err(e)),
        }
    }

    /// Validates a parsed `config.json`. Every error names the field.
    pub fn from_json(raw: Map<String, Json>) -> Result<HfConfig> {
        let m = &raw;
        let hf_arch = match m.get("architectures") {
            Some(Json::Array(a)) if !a.is_empty() => match &a[0] {
                Json::String(s) => s.clone(),
                v => return Err(cfg_err(format!("architectures[0] must be a string, found {v}"))),
            },
            Some(v) if !v.is_null() => {
                return Err(cfg_err(format!("architectures must be a non-empty list, found {v}")))
            }
            _ => return Err(cfg_err("architectures is missing (expected e.g. [\"LlamaForCausalLM\"])")),
        };
        let arch = match hf_arch.as_str() {
            "LlamaForCausalLM" | "MistralForCausalLM" => Arch::Llama,
            "Qwen2ForCausalLM" => Arch::Qwen2,
            other => {
                return Err(cfg_err(format!(
                "architectures = {other:?} is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"
            )))
            }
        };
        if let Some(act) = get_str(m, "", "hidden_act")? {
            if act != "silu" {
                return Err(cfg_err(format!("hidden_act = {act:?} is not supported (only \"silu\")")));
            }
        }
        let hidden_size = need_u32(m, "", "hidden_size", "")?;
        let intermediate_size = need_u32(m, "", "intermediate_size", "")?;
        let num_hidden_layers = need_u32(m, "", "num_hidden_layers", "")?;
        let num_attention_heads = need_u32(m, "", "num_attention_heads", "")?;
        let num_key_value_heads = match get_u32(m, "", "num_key_value_heads")? {
            None => num_attention_heads,
            Some(0) => return Err(cfg_err("num_key_value_heads must be > 0")),
            Some(n) => n,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(cfg_err(format!(
                "num_attention_heads ({num_attention_heads}) is not a multiple of num_key_value_heads ({num_key_value_heads})"
            )));
        }
        let (head_dim, head_dim_explicit) = match get_u32(m, "", "head_dim")? {
            Some(0) => return Err(cfg_err("head_dim must be > 0")),
            Some(d) => (d, true),
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(cfg_err(format!(
                        "hidden_size ({hidden_size}) is not divisible by num_attention_heads ({num_attention_heads})"
                    )));
                }
                (hidden_size / num_attention_heads, false)
            }
        };
        if head_dim % 2 != 0 {
            return Err(cfg_err(format!("head_dim ({head_dim}) must be even for RoPE")));
        }
        let max_position_embeddings = need_u32(m, "", "max_position_embeddings", "")?;
        let vocab_size = match get_u32(m, "", "vocab_size")? {
            Some(0) => return Err(cfg_err("vocab_size must be > 0")),
            v => v,
        };
        let rms_norm_eps = get_f32(m, "", "rms_norm_eps")?.unwrap_or(1e-6);
        if rms_norm_eps <= 0.0 {
            return Err(cfg_err(format!("rms_norm_eps must be > 0, found {rms_norm_eps}")));
        }
        let rope_theta = get_f32(m, "", "rope_theta")?.unwrap_or(10000.0);
        if rope_theta <= 1.0 {
            return Err(cfg_err(format!("rope_theta must be > 1, found {rope_theta}")));
        }
        let tie_word_embeddings = get_bool(m, "", "tie_word_embeddings")?.unwrap_or(false);
        let rope_scaling = parse_rope_scaling(m, max_position_embeddings, head_dim)?;
        if get_bool(m, "", "log_scale")? == Some(true) && !matches!(rope_scaling, RopeScaling::Clex(_)) {
            return Err(cfg_err(
                "log_scale is true but rope_scaling.type is not \"clex\" (log_scale is a CLEX setting)",
            ));
        }
        Ok(HfConfig {
            arch,
            hf_arch,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            head_dim_explicit,
            max_position_embeddings,
            rms_norm_eps,
            rope_theta,
            tie_word_embeddings,
            rope_scaling,
            raw,
        })
    }

    /// The CLEX settings, if this is a CLEX model.
    pub fn clex(&self) -> Option<&ClexConfig> {
        match &self.rope_scaling {
            RopeScaling::Clex(c) => Some(c),
            _ => None,
        }
    }

    /// The CLEX parameters as the runtime takes them (for checks and tables).
    pub fn clex_params(&self) -> Option<ClexParams> {
        self.clex().map(|c| ClexParams {
            head_dim: self.head_dim as usize,
            max_factor: c.max_factor,
            param_factor: c.param_factor,
            act: c.act,
            time_dt: c.time_dt,
            ntk_base: CLEX_NTK_BASE,
            orig_ctx: self.max_position_embeddings,
            log_scale: c.log_scale,
        })
    }

    /// An integer token id field of the config (`bos_token_id`, …); lists take the first.
    pub fn token_id(&self, key: &str) -> Option<u32> {
        match self.raw.get(key)? {
            Json::Array(a) => a.first()?.as_u64(),
            v => v.as_u64(),
        }
        .and_then(|n| u32::try_from(n).ok())
    }
}

fn parse_rope_scaling(m: &Map<String, Json>, max_pos: u32, head_dim: u32) -> Result<RopeScaling> {
    let rs = match m.get("rope_scaling") {
        None | Some(Json::Null) => return Ok(RopeScaling::None),
        Some(Json::Object(rs)) => rs,
        Some(v) => return Err(cfg_err(format!("rope_scaling must be an object or null, found {v}"))),
    };
    let p = "rope_scaling.";
    let ty = match (get_str(rs, p, "type")?, get_str(rs, p, "rope_type")?) {
        (Some(a), Some(b)) if a != b => {
            return Err(cfg_err(format!("rope_scaling.type ({a:?}) contradicts rope_scaling.rope_type ({b:?})")))
        }
        (Some(a), _) | (None, Some(a)) => a.to_ascii_lowercase(),
        (None, None) => return Err(cfg_err("rope_scaling.type is missing")),
    };
    let factor = || -> Result<f32> {
        let f = get_f32(rs, p, "factor")?
            .ok_or_else(|| cfg_err(format!("rope_scaling.factor is missing (required for type {ty:?})")))?;
        if f <= 0.0 {
            return Err(cfg_err(format!("rope_scaling.factor must be > 0, found {f}")));
        }
        Ok(f)
    };
    Ok(match ty.as_str() {
        "default" | "none" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "yarn" => RopeScaling::Yarn {
            factor: factor()?,
            original_context: get_u32(rs, p, "original_max_position_embeddings")?.unwrap_or(max_pos),
            ext_factor: get_f32(rs, p, "extrapolation_factor")?,
            attn_factor: match get_f32(rs, p, "attention_factor")? {
                Some(a) => Some(a),
                None => get_f32(rs, p, "attn_factor")?,
            },
            beta_fast: get_f32(rs, p, "beta_fast")?,
            beta_slow: get_f32(rs, p, "beta_slow")?,
        },
        "llama3" => {
            let (factor, low, high) = (
                get_f32(rs, p, "factor")?.unwrap_or(8.0),
                get_f32(rs, p, "low_freq_factor")?.unwrap_or(1.0),
                get_f32(rs, p, "high_freq_factor")?.unwrap_or(4.0),
            );
            let original_context = get_u32(rs, p, "original_max_position_embeddings")?.unwrap_or(8192);
            // As transformers' `_validate_llama3_parameters`: the frequency bands must be ordered.
            if factor <= 0.0 || low <= 0.0 || high <= low || original_context == 0 {
                return Err(cfg_err(format!(
                    "rope_scaling (llama3) needs factor > 0, 0 < low_freq_factor < high_freq_factor and \
                     original_max_position_embeddings > 0; found factor {factor}, low_freq_factor {low}, \
                     high_freq_factor {high}, original_max_position_embeddings {original_context}"
                )));
            }
            RopeScaling::Llama3 { factor, low_freq_factor: low, high_freq_factor: high, original_context }
        }
        "clex" => {
            let why = " (required for CLEX)";
            let max_factor = need_u32(rs, p, "max_factor", why)?;
            let param_factor = need_u32(rs, p, "param_factor", why)?;
            let act = match get_str(rs, p, "act")? {
                None => ClexAct::Silu,
                Some(s) => ClexAct::parse(s).map_err(|e| cfg_err(format!("rope_scaling.act: {e}")))?,
            };
            let time_dt = get_f32(rs, p, "time_dt")?.unwrap_or(0.01);
            // The GGUF loader's bounds (src/clex.rs, src/model/clex_gguf.rs): the ODE solve
            // costs (T − 1) / time_dt RK4 steps and T·d/2 table entries.
            if !(1e-4..=1.0).contains(&time_dt) {
                return Err(cfg_err(format!("rope_scaling.time_dt must be in [1e-4, 1], found {time_dt}")));
            }
            if max_factor > 4096 || param_factor > 64 {
                return Err(cfg_err(format!(
                    "implausible CLEX sizes: rope_scaling.max_factor {max_factor} (at most 4096), \
                     rope_scaling.param_factor {param_factor} (at most 64)"
                )));
            }
            if head_dim < 4 {
                return Err(cfg_err(format!("head_dim ({head_dim}) must be >= 4 for CLEX")));
            }
            if (max_pos as u64) * (max_factor as u64) > u32::MAX as u64 {
                return Err(cfg_err(format!(
                    "max_position_embeddings ({max_pos}) × rope_scaling.max_factor ({max_factor}) overflows the context length"
                )));
            }
            let log_scale = get_bool(m, "", "log_scale")?.unwrap_or(false);
            RopeScaling::Clex(ClexConfig { max_factor, param_factor, act, time_dt, log_scale })
        }
        other => {
            return Err(cfg_err(format!(
                "rope_scaling.type = {other:?} is not supported (none, linear, yarn, llama3, clex)"
            )))
        }
    })
}

/// What [`super::convert`] checks before it writes anything: the config against the
/// checkpoint's tensors (names, dtypes, shapes, leftovers) and, for CLEX, that the ODE
/// solves on the checkpoint's weights. Returns the vocabulary size. Needs no files (with
/// [`HfConfig::from_json_text`] and [`Checkpoint::from_bytes`]): for tools and fuzzing.
pub fn check_checkpoint(cfg: &HfConfig, ck: &Checkpoint) -> Result<usize> {
    let (plan, n_vocab, _tied) = super::plan_tensors(cfg, ck)?;
    if let Some(params) = cfg.clex_params() {
        let get = |n: &str| -> Result<Vec<f32>> {
            let p = plan.iter().find(|p| p.name == n).ok_or_else(|| Error::Model(format!("missing {n}")))?;
            match &p.source {
                super::Source::Hf { t, .. } => ck.to_f32(t),
                super::Source::Data(v) => Ok(v.clone()),
            }
        };
        crate::clex::ClexTable::solve(&params, &get("clex.inv_freq")?, &get("clex.ode_up_proj")?, &get("clex.ode_down_proj")?)
            .map_err(|e| Error::Clex(format!("the checkpoint's CLEX ODE does not solve: {e}")))?;
    }
    Ok(n_vocab)
}

/// One source tensor: where its bytes are and what they are.
#[derive(Debug, Clone)]
pub struct SourceTensor {
    pub name: String,
    /// Index into [`Checkpoint`]'s files.
    pub file: usize,
    pub dtype: Dtype,
    /// PyTorch order (row-major, last dimension fastest).
    pub shape: Vec<usize>,
    /// Byte range in the file.
    pub start: usize,
    pub end: usize,
}

impl SourceTensor {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The bytes of one safetensors file: mapped, or in memory ([`Checkpoint::from_bytes`]).
#[derive(Debug)]
enum FileBytes {
    Mapped(MappedFile),
    Owned(Vec<u8>),
}

impl FileBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m.bytes(),
            FileBytes::Owned(v) => v,
        }
    }
}

/// The safetensors files of a checkpoint, memory-mapped, and an index of their tensors.
#[derive(Debug)]
pub struct Checkpoint {
    files: Vec<(PathBuf, FileBytes)>,
    tensors: BTreeMap<String, SourceTensor>,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let paths: Vec<PathBuf> = if index.is_file() {
            let m = read_json(&index)?;
            let wm = match m.get("weight_map") {
                Some(Json::Object(wm)) => wm,
                _ => return Err(Error::Model(format!("{}: weight_map is missing or not an object", index.display()))),
            };
            let mut names: Vec<String> = Vec::new();
            for (t, f) in wm {
                let f = f.as_str().ok_or_else(|| {
                    Error::Model(format!("{}: weight_map[{t:?}] is not a file name", index.display()))
                })?;
                if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                    return Err(Error::Model(format!(
                        "{}: weight_map[{t:?}] = {f:?} is not a plain file name",
                        index.display()
                    )));
                }
                if !names.iter().any(|n| n == f) {
                    names.push(f.to_string());
                }
            }
            names.sort();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else if single.is_file() {
            vec![single]
        } else {
            let bin = dir.join("pytorch_model.bin").is_file() || dir.join("pytorch_model.bin.index.json").is_file();
            return Err(Error::Model(format!(
                "{}: no model.safetensors or model.safetensors.index.json{}",
                dir.display(),
                if bin { " (PyTorch .bin checkpoints are not supported; save the model with safetensors)" } else { "" }
            )));
        };
        let mut ck = Checkpoint { files: Vec::new(), tensors: BTreeMap::new() };
        for path in paths {
            let map = MappedFile::open(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
            ck.add_file(path, FileBytes::Mapped(map))?;
        }
        Ok(ck)
    }

    /// A checkpoint of one safetensors file held in memory (`name` stands for its path in
    /// messages): the same validation as [`Checkpoint::open`], without files.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Checkpoint> {
        let mut ck = Checkpoint { files: Vec::new(), tensors: BTreeMap::new() };
        ck.add_file(PathBuf::from(name), FileBytes::Owned(bytes))?;
        Ok(ck)
    }

    /// Indexes one file's tensors (the safetensors crate checks the header, the offsets and
    /// that the data fills the file exactly).
    fn add_file(&mut self, path: PathBuf, data: FileBytes) -> Result<()> {
        let fi = self.files.len();
        let (n, meta): (usize, Metadata) = SafeTensors::read_metadata(data.bytes())
            .map_err(|e| Error::Model(format!("{}: invalid safetensors: {e:?}", path.display())))?;
        let base = 8 + n;
        for (name, info) in meta.tensors() {
            let (s, e) = info.data_offsets;
            let st = SourceTensor {
                name: name.clone(),
                file: fi,
                dtype: info.dtype,
                shape: info.shape.clone(),
                start: base + s,
                end: base + e,
            };
            if let Some(prev) = self.tensors.insert(name.clone(), st) {
                let prev_path = if prev.file < fi { &self.files[prev.file].0 } else { &path };
                return Err(Error::Model(format!(
                    "tensor {name:?} is in both {} and {}",
                    prev_path.display(),
                    path.display()
                )));
            }
        }
        self.files.push((path, data));
        Ok(())
    }

    /// All tensors, by name.
    pub fn tensors(&self) -> &BTreeMap<String, SourceTensor> {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&SourceTensor> {
        self.tensors.get(name)
    }

    /// The raw bytes of a tensor (borrowed from the map).
    pub fn bytes(&self, t: &SourceTensor) -> &[u8] {
        &self.files[t.file].1.bytes()[t.start..t.end]
    }

    /// Checks that a tensor's dtype is one the converter reads (F32, F16, BF16).
    pub fn check_dtype(t: &SourceTensor) -> Result<()> {
        match t.dtype {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(()),
            d => {
                Err(Error::Model(format!("tensor {:?} has dtype {d:?}; only F32, F16 and BF16 are supported", t.name)))
            }
        }
    }

    /// Elements `[from, to)` (flat, row-major) of a tensor, as f32, appended to `out`.
    pub fn read_f32(&self, t: &SourceTensor, from: usize, to: usize, out: &mut Vec<f32>) -> Result<()> {
        Self::check_dtype(t)?;
        let b = self.bytes(t);
        match t.dtype {
            Dtype::F32 => {
                out.extend(b[from * 4..to * 4].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            }
            Dtype::F16 => out.extend(
                b[from * 2..to * 2]
                    .chunks_exact(2)
                    .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            ),
            Dtype::BF16 => out.extend(
                b[from * 2..to * 2]
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            ),
            _ => unreachable!("checked above"),
        }
        Ok(())
    }

    /// A whole tensor as f32.
    pub fn to_f32(&self, t: &SourceTensor) -> Result<Vec<f32>> {
        let mut v = Vec::with_capacity(t.n_elements());
        self.read_f32(t, 0, t.n_elements(), &mut v)?;
        Ok(v)
    }
}
