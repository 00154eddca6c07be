//! Command-line flags, defined once. Names follow llama.cpp where the meaning is the same.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Run LLaMA-family GGUF models with CLEX long-context support.
#[derive(Parser, Debug)]
#[command(name = "clex-run", version, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub generate: GenerateArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a GGUF file's metadata, tensors and RoPE/CLEX settings.
    Inspect(InspectArgs),
    /// Perplexity over texts at several window lengths and RoPE scalings.
    Perplexity(PerplexityArgs),
    /// Convert a Hugging Face checkpoint (LLaMA/Mistral/Qwen2, CLEX included) to GGUF.
    Convert(ConvertArgs),
    /// Write a copy of a CLEX GGUF that stock llama.cpp runs with bucket N frozen.
    #[command(name = "export-llamacpp")]
    ExportLlamacpp(ExportArgs),
    /// List the compute devices (CPU, GPUs) this build of ggml sees.
    Devices,
    /// Prompt / generation speed, as llama.cpp's llama-bench (same tests, flags and output).
    Bench(BenchArgs),
    /// Interactive chat with the model's chat template (also `clex-run MODEL -i` / `-cnv`).
    Chat(GenerateArgs),
}

/// Model and runtime settings shared by every command that runs a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model file (GGUF).
    #[arg(value_name = "MODEL")]
    pub model_pos: Option<PathBuf>,
    /// Model file (GGUF), as llama.cpp's -m.
    #[arg(short = 'm', long = "model", value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Context size in tokens (0 = the model's training context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: usize,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Logical batch size for prompt processing (kept for llama.cpp compatibility).
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: usize,
    /// Physical batch size: tokens per forward pass.
    #[arg(long = "ubatch-size", visible_alias = "ub", default_value_t = 512)]
    pub ubatch_size: usize,
    /// Flash attention: on, off or auto (auto = on).
    #[arg(long = "flash-attn", visible_alias = "fa", default_value = "auto", value_parser = ["on", "off", "auto"])]
    pub flash_attn: String,
    /// K cache type: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl.
    #[arg(long = "cache-type-k", visible_alias = "ctk", default_value = "f16")]
    pub cache_type_k: String,
    /// V cache type (quantized types need flash attention).
    #[arg(long = "cache-type-v", visible_alias = "ctv", default_value = "f16")]
    pub cache_type_v: String,
    /// Do not repack weights for faster CPU kernels (keeps every weight zero-copy).
    #[arg(long = "no-repack", visible_alias = "nr")]
    pub no_repack: bool,
    /// Layers to offload to the GPU: the last N (more than the model has, e.g. 99: all,
    /// output layer included). Needs a build with `--features vulkan` or `cuda`.
    #[arg(long = "n-gpu-layers", visible_alias = "ngl", alias = "gpu-layers", default_value_t = 0)]
    pub n_gpu_layers: usize,
    /// GPU to offload to, by name as `clex-run devices` lists it (default: the first).
    #[arg(long = "device", visible_alias = "dev", value_name = "NAME")]
    pub device: Option<String>,
    #[command(flatten)]
    pub rope: RopeArgs,
}

/// RoPE scaling and CLEX policy.
#[derive(Args, Debug, Clone, Default)]
pub struct RopeArgs {
    /// RoPE scaling: none, linear, yarn, dynamic-ntk, clex-ntk, clex (default: the model's).
    #[arg(long = "rope-scaling", value_name = "KIND")]
    pub rope_scaling: Option<String>,
    /// RoPE base frequency (default: the model's).
    #[arg(long = "rope-freq-base")]
    pub rope_freq_base: Option<f32>,
    /// RoPE frequency scale (linear/yarn: 1/factor).
    #[arg(long = "rope-freq-scale")]
    pub rope_freq_scale: Option<f32>,
    /// Original context of the model for YaRN and the bucketed scalings (default: the model's).
    #[arg(long = "yarn-orig-ctx")]
    pub yarn_orig_ctx: Option<u32>,
    /// YaRN extrapolation mix factor (-1 = default).
    #[arg(long = "yarn-ext-factor", allow_negative_numbers = true)]
    pub yarn_ext_factor: Option<f32>,
    /// YaRN magnitude scale (-1 = default).
    #[arg(long = "yarn-attn-factor", allow_negative_numbers = true)]
    pub yarn_attn_factor: Option<f32>,
    /// YaRN low correction dim.
    #[arg(long = "yarn-beta-slow", allow_negative_numbers = true)]
    pub yarn_beta_slow: Option<f32>,
    /// YaRN high correction dim.
    #[arg(long = "yarn-beta-fast", allow_negative_numbers = true)]
    pub yarn_beta_fast: Option<f32>,
    /// Beyond CLEX's hard limit L·T: refuse (default) or clamp the bucket to T.
    #[arg(long = "clex-overflow", default_value = "refuse", value_parser = ["refuse", "clamp"])]
    pub clex_overflow: String,
    /// Fix the CLEX bucket t for the whole session.
    #[arg(long = "clex-t")]
    pub clex_t: Option<u32>,
    /// Take the bucket from -c for the whole session (no re-rotation).
    #[arg(long = "clex-from-ctx")]
    pub clex_from_ctx: bool,
}

/// Sampling settings.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// Temperature (0 = greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: i32,
    /// Top-p (1 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Repeat penalty (1 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repeat penalty looks back over.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// RNG seed (default: random).
    #[arg(short = 's', long = "seed")]
    pub seed: Option<u64>,
}

/// One-shot generation (the default command).
#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Prompt text.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Tokens to generate (-1 = until end of generation or the context is full).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// Do not echo the prompt before the generated text.
    #[arg(long = "no-display-prompt")]
    pub no_display_prompt: bool,
    /// Ignore end-of-generation tokens and keep going until -n.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// More logging on stderr (and peak RSS at the end).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    #[command(flatten)]
    pub chat: ChatFlags,
}

/// Chat settings (`clex-run chat`, or `-i` / `-cnv` on the default command). In a chat,
/// `-p`/`-f` is the first user message and `-n` the most tokens of each reply.
#[derive(Args, Debug, Clone)]
pub struct ChatFlags {
    /// Interactive chat (conversation mode), as llama-cli's -i / -cnv.
    #[arg(short = 'i', long = "interactive", visible_aliases = ["cnv", "conversation"])]
    pub interactive: bool,
    /// System prompt of the chat.
    #[arg(long = "system", visible_alias = "sys", alias = "system-prompt", value_name = "TEXT")]
    pub system: Option<String>,
    /// Chat template: a built-in name (chatml, llama2, llama3, mistral-v7, …) or a Jinja
    /// file (default: the model's tokenizer.chat_template).
    #[arg(long = "chat-template", value_name = "NAME|FILE")]
    pub chat_template: Option<String>,
    /// When the context is full: stop (say so, keep the conversation) or shift (drop the
    /// oldest turns, keep the system prompt, move the cache down).
    #[arg(long = "ctx-full", default_value = "stop", value_parser = ["stop", "shift"])]
    pub ctx_full: String,
}

/// `inspect` arguments.
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// Model file (GGUF).
    pub model: PathBuf,
    /// List every tensor (default: a summary).
    #[arg(long)]
    pub tensors: bool,
    /// Print array values in full.
    #[arg(long)]
    pub full: bool,
}

/// `perplexity` arguments. `-c` takes a list of window lengths and `--rope-scaling` a list
/// of scalings; the other model flags mean what they mean everywhere.
#[derive(Args, Debug, Clone)]
#[command(mut_arg("ctx_size", |a| a.short(None).long("session-ctx-size").hide(true)))]
#[command(mut_arg("rope_scaling", |a| a.help("RoPE scalings to compare, comma-separated: none, linear, yarn, dynamic-ntk, clex-ntk, clex (default: the model's)").value_name("KIND[,KIND…]")))]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file(s) to score; windows never cross files (repeat -f for more).
    #[arg(short = 'f', long = "file", value_name = "FILE", required_unless_present = "from_json")]
    pub files: Vec<PathBuf>,
    /// Evaluate nothing: read the results of earlier `--json` runs (repeat for more; a later
    /// file's (length, scaling) pair replaces an earlier one's) and write their table, JSON,
    /// CSV and plot, e.g. to merge a long 16k run with a sweep done separately.
    #[arg(long = "from-json", value_name = "FILE", conflicts_with_all = ["files", "llama_compat", "chunks"])]
    pub from_json: Vec<PathBuf>,
    /// Window lengths in tokens, comma-separated (each is a context size).
    #[arg(short = 'c', long = "ctx-size", value_name = "N[,N…]", value_delimiter = ',', default_value = "512")]
    pub lengths: Vec<usize>,
    /// At most this many windows per length (over all files), like llama-perplexity's --chunks.
    #[arg(long = "chunks", value_name = "N")]
    pub chunks: Option<usize>,
    /// Score only the second half of each window, as llama-perplexity does.
    #[arg(long = "llama-compat")]
    pub llama_compat: bool,
    /// Write the results as JSON to FILE (or to stdout instead of the table: --json or --json=-).
    #[arg(long = "json", value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    pub json: Option<PathBuf>,
    /// Write the results as CSV to FILE (or to stdout instead of the table: --csv or --csv=-).
    #[arg(long = "csv", value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "-")]
    pub csv: Option<PathBuf>,
    /// Plot PPL against window length, one line per scaling (.png or .svg).
    #[arg(long = "plot", value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Plot size in pixels, WIDTHxHEIGHT.
    #[arg(long = "plot-size", value_name = "WxH", default_value = "1200x750")]
    pub plot_size: String,
    /// No progress bar.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

/// `convert` arguments.
#[derive(Args, Debug, Clone)]
pub struct ConvertArgs {
    /// Folder with config.json, *.safetensors and tokenizer.model or tokenizer.json.
    pub hf_dir: PathBuf,
    /// Output GGUF file.
    #[arg(short = 'o', long = "outfile")]
    pub out: PathBuf,
    /// f32, f16, bf16, q8_0, q4_0, q4_k_m.
    #[arg(long = "outtype", default_value = "f16")]
    pub outtype: String,
    /// Threads for quantization (0 = all).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
}

/// `export-llamacpp` arguments.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A CLEX GGUF.
    pub input: PathBuf,
    /// The bucket to freeze.
    #[arg(long = "clex-t")]
    pub clex_t: u32,
    /// Output GGUF file.
    #[arg(short = 'o', long = "outfile")]
    pub out: PathBuf,
}

/// `bench` arguments: llama-bench's flags. List flags take comma-separated values (and
/// integer ranges `first-last`, `first-last+step`, `first-last*mult`) or repeat; every
/// combination is one test, as in llama-bench.
#[derive(Args, Debug, Clone)]
#[command(mut_arg("rope_scaling", |a| a.help("RoPE scalings to compare, comma-separated: none, linear, yarn, dynamic-ntk, clex-ntk, clex (default: the model's)").value_name("KIND[,KIND…]")))]
pub struct BenchArgs {
    /// Model file(s) (GGUF).
    #[arg(value_name = "MODEL")]
    pub model_pos: Option<PathBuf>,
    /// Model file(s), comma-separated, as llama-bench's -m.
    #[arg(short = 'm', long = "model", value_name = "FILE[,FILE…]")]
    pub model: Vec<String>,
    /// Prompt lengths (pp tests; 0: none).
    #[arg(short = 'p', long = "n-prompt", value_name = "N[,N…]")]
    pub n_prompt: Vec<String>,
    /// Generation lengths (tg tests; 0: none).
    #[arg(short = 'n', long = "n-gen", value_name = "N[,N…]")]
    pub n_gen: Vec<String>,
    /// Prompt then generation in one test (pp+tg), as PP,TG; repeat for more.
    #[arg(long = "pg", value_name = "PP,TG")]
    pub pg: Vec<String>,
    /// Tokens already in the cache before each test (prefilled, not timed): "@ dN".
    #[arg(short = 'd', long = "n-depth", value_name = "N[,N…]")]
    pub n_depth: Vec<String>,
    /// Logical batch: tokens per evaluation call.
    #[arg(short = 'b', long = "batch-size", value_name = "N[,N…]")]
    pub n_batch: Vec<String>,
    /// Physical batch: tokens per forward pass.
    #[arg(long = "ubatch-size", visible_alias = "ub", value_name = "N[,N…]")]
    pub n_ubatch: Vec<String>,
    /// K cache types.
    #[arg(long = "cache-type-k", visible_alias = "ctk", value_name = "T[,T…]")]
    pub type_k: Vec<String>,
    /// V cache types (quantized ones need flash attention).
    #[arg(long = "cache-type-v", visible_alias = "ctv", value_name = "T[,T…]")]
    pub type_v: Vec<String>,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads", value_name = "N[,N…]")]
    pub threads: Vec<String>,
    /// Flash attention: on|off|auto or 1|0 (auto = on).
    #[arg(long = "flash-attn", visible_alias = "fa", value_name = "on|off|auto[,…]")]
    pub flash_attn: Vec<String>,
    /// CPU weight repacking (llama.cpp's extra buffer types): 1 (default) or 0.
    #[arg(long = "repack", value_name = "0|1[,…]")]
    pub repack: Vec<String>,
    /// Layers to offload to a GPU (builds with a GPU backend).
    #[arg(long = "n-gpu-layers", visible_alias = "ngl", value_name = "N[,N…]")]
    pub n_gpu_layers: Vec<String>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Output format on stdout: md, csv, json, jsonl.
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "csv", "json", "jsonl"])]
    pub output: String,
    /// No warm-up run before each test.
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// Progress on stderr.
    #[arg(long = "progress")]
    pub progress: bool,
    /// More logging on stderr (ggml's CPU features, peak RSS).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    #[command(flatten)]
    pub rope: RopeArgs,
}

/// llama.cpp spells some long flags with one dash (`-ngl 99`, `-fa on`, `-ctk q8_0`);
/// clap reads `-fa` as `-f a`. These are rewritten to their `--` form before parsing,
/// so llama.cpp command lines work unchanged.
const SINGLE_DASH_LONG: &[&str] = &["ngl", "fa", "ctk", "ctv", "ub", "nr", "cnv", "sys", "dev"];

/// Rewrites llama.cpp's single-dash long flags (see [`SINGLE_DASH_LONG`]) to `--flag`.
pub fn normalize_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut after_dashdash = false;
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    // llama-bench's `-pg PP,TG` (elsewhere `-pg` stays `-p g`).
    let bench = args.get(1).is_some_and(|a| a == "bench");
    args.into_iter()
        .map(|a| {
            if after_dashdash {
                return a;
            }
            let Some(s) = a.to_str() else { return a };
            if s == "--" {
                after_dashdash = true;
                return a;
            }
            match s.strip_prefix('-') {
                Some(rest) if !rest.starts_with('-') && SINGLE_DASH_LONG.contains(&rest.split('=').next().unwrap_or("")) => {
                    format!("-{s}").into()
                }
                Some("pg") if bench => "--pg".into(),
                _ => a,
            }
        })
        .collect()
}
