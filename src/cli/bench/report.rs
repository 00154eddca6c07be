//! What `clex-run bench` reports: a finished test ([`Outcome`]), the model and machine
//! description llama-bench prints beside it, and the printers for its output formats
//! (markdown, CSV, JSON, JSONL) with llama-bench's columns.

use super::*;

pub(super) struct Outcome {
    pub(super) inst: Instance,
    pub(super) model_type: String,
    pub(super) model_size: u64,
    pub(super) model_n_params: u64,
    pub(super) test_time: String,
    pub(super) samples_ns: Vec<u64>,
}

impl Outcome {
    fn samples_ts(&self) -> Vec<f64> {
        let n = (self.inst.n_prompt + self.inst.n_gen) as f64;
        self.samples_ns.iter().map(|&ns| 1e9 * n / ns.max(1) as f64).collect()
    }
}

pub(super) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation, as llama-bench's.
pub(super) fn stdev(v: &[f64]) -> f64 {
    if v.len() <= 1 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// llama.cpp's name of `general.file_type`.
pub(super) fn ftype_name(ft: Option<u32>) -> &'static str {
    match ft {
        Some(0) => "all F32",
        Some(1) => "F16",
        Some(2) => "Q4_0",
        Some(3) => "Q4_1",
        Some(7) => "Q8_0",
        Some(8) => "Q5_0",
        Some(9) => "Q5_1",
        Some(10) => "Q2_K - Medium",
        Some(11) => "Q3_K - Small",
        Some(12) => "Q3_K - Medium",
        Some(13) => "Q3_K - Large",
        Some(14) => "Q4_K - Small",
        Some(15) => "Q4_K - Medium",
        Some(16) => "Q5_K - Small",
        Some(17) => "Q5_K - Medium",
        Some(18) => "Q6_K",
        Some(25) => "IQ4_NL - 4.5 bpw",
        Some(30) => "IQ4_XS - 4.25 bpw",
        Some(32) => "BF16",
        _ => "?",
    }
}

/// `arch size ftype`, like llama.cpp's model description ("qwen2 0.5B Q4_K - Medium");
/// the size is rounded from the parameter count.
pub(super) fn model_type(m: &Model) -> String {
    let n = m.n_params() as f64;
    let size = if n >= 9.5e9 {
        format!("{:.0}B", n / 1e9)
    } else if n >= 0.05e9 {
        format!("{:.1}B", n / 1e9)
    } else {
        format!("{:.0}M", n / 1e6)
    };
    let ft = m.gguf().get_u32("general.file_type").ok().flatten();
    format!("{} {size} {}", m.hparams.arch.name(), ftype_name(ft))
}

/// As llama-bench: the GPU backends compiled in, else "CPU".
pub(super) fn backend_name() -> String {
    let gpus = clex::model::gpu_features();
    if gpus.is_empty() {
        return "CPU".into();
    }
    let names: Vec<&str> = gpus.iter().map(|g| if *g == "cuda" { "CUDA" } else { "Vulkan" }).collect();
    names.join(",")
}

pub(super) fn cpu_info() -> String {
    clex::model::list_devices()
        .into_iter()
        .filter(|d| d.kind == ggml_sys::safe::DeviceKind::Cpu || d.kind == ggml_sys::safe::DeviceKind::Accelerator)
        .map(|d| d.description)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn gpu_info() -> String {
    clex::model::list_devices()
        .into_iter()
        .filter(|d| matches!(d.kind, ggml_sys::safe::DeviceKind::Gpu | ggml_sys::safe::DeviceKind::IntegratedGpu))
        .map(|d| d.description)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The test time in llama-bench's RFC 3339 form (UTC).
pub(super) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The output, streamed test by test.
pub(super) trait Printer {
    fn header(&mut self, _out: &mut dyn Write) -> std::io::Result<()> {
        Ok(())
    }
    fn test(&mut self, out: &mut dyn Write, o: &Outcome) -> std::io::Result<()>;
    fn footer(&mut self, _out: &mut dyn Write) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON/CSV fields: llama-bench's names (those that apply to this runtime), plus
/// `rope_scaling`.
pub(super) fn fields(o: &Outcome) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    let i = &o.inst;
    let ts = o.samples_ts();
    let ns: Vec<f64> = o.samples_ns.iter().map(|&x| x as f64).collect();
    vec![
        ("build_commit", json!(format!("clex-{}", env!("CARGO_PKG_VERSION")))),
        ("build_number", json!(0)),
        ("cpu_info", json!(cpu_info())),
        ("gpu_info", json!(gpu_info())),
        ("backends", json!(backend_name())),
        ("model_filename", json!(i.model.display().to_string())),
        ("model_type", json!(o.model_type)),
        ("model_size", json!(o.model_size)),
        ("model_n_params", json!(o.model_n_params)),
        ("n_batch", json!(i.n_batch)),
        ("n_ubatch", json!(i.n_ubatch)),
        ("n_threads", json!(i.n_threads)),
        ("type_k", json!(i.type_k)),
        ("type_v", json!(i.type_v)),
        ("n_gpu_layers", json!(i.n_gpu_layers)),
        ("flash_attn", json!(i.fa.code())),
        ("repack", json!(i.repack)),
        ("rope_scaling", json!(i.rope.map(|r| r.as_str()).unwrap_or(""))),
        ("n_prompt", json!(i.n_prompt)),
        ("n_gen", json!(i.n_gen)),
        ("n_depth", json!(i.n_depth)),
        ("test_time", json!(o.test_time)),
        ("avg_ns", json!(mean(&ns).round() as u64)),
        ("stddev_ns", json!(stdev(&ns).round() as u64)),
        ("avg_ts", json!(mean(&ts))),
        ("stddev_ts", json!(stdev(&ts))),
    ]
}

pub(super) struct Json {
    pub(super) first: bool,
    pub(super) lines: bool,
}

impl Printer for Json {
    fn header(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if !self.lines {
            writeln!(out, "[")?;
        }
        Ok(())
    }
    fn test(&mut self, out: &mut dyn Write, o: &Outcome) -> std::io::Result<()> {
        let mut map = serde_json::Map::new();
        for (k, v) in fields(o) {
            map.insert(k.into(), v);
        }
        map.insert("samples_ns".into(), serde_json::json!(o.samples_ns));
        map.insert("samples_ts".into(), serde_json::json!(o.samples_ts()));
        let v = serde_json::Value::Object(map);
        if self.lines {
            writeln!(out, "{v}")?;
        } else {
            if !self.first {
                writeln!(out, ",")?;
            }
            let s = serde_json::to_string_pretty(&v).unwrap_or_default();
            let indented: Vec<String> = s.lines().map(|l| format!("  {l}")).collect();
            write!(out, "{}", indented.join("\n"))?;
        }
        self.first = false;
        out.flush()
    }
    fn footer(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if !self.lines {
            writeln!(out, "\n]")?;
        }
        Ok(())
    }
}

pub(super) struct Csv {
    pub(super) header_done: bool,
}

impl Printer for Csv {
    fn test(&mut self, out: &mut dyn Write, o: &Outcome) -> std::io::Result<()> {
        let f = fields(o);
        if !self.header_done {
            writeln!(out, "{}", f.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(","))?;
            self.header_done = true;
        }
        let vals: Vec<String> = f
            .iter()
            .map(|(_, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("\"{}\"", s.replace('"', "\"\""))
            })
            .collect();
        writeln!(out, "{}", vals.join(","))?;
        out.flush()
    }
}

/// llama-bench's markdown table: the fixed columns, the varied (or non-default) settings,
/// test and t/s ± sd.
pub(super) struct Markdown {
    cols: Vec<&'static str>,
}

impl Markdown {
    pub(super) fn new(p: &Params) -> Self {
        let mut cols = vec!["model", "size", "params", "backend"];
        if p.ngl.len() > 1 || p.ngl != [0] {
            cols.push("ngl");
        }
        cols.push("threads");
        if p.n_batch.len() > 1 || p.n_batch != [DEFAULT_N_BATCH] {
            cols.push("n_batch");
        }
        if p.n_ubatch.len() > 1 || p.n_ubatch != [DEFAULT_N_UBATCH] {
            cols.push("n_ubatch");
        }
        if p.type_k.len() > 1 || p.type_k != ["f16"] {
            cols.push("type_k");
        }
        if p.type_v.len() > 1 || p.type_v != ["f16"] {
            cols.push("type_v");
        }
        if p.fa.len() > 1 || p.fa != [Fa::Auto] {
            cols.push("fa");
        }
        if p.repack.len() > 1 || p.repack != [true] {
            cols.push("rpk");
        }
        if p.rope.iter().any(Option::is_some) {
            cols.push("rope");
        }
        cols.push("test");
        cols.push("t/s");
        Self { cols }
    }

    /// Column width; negative: left-aligned (llama-bench's widths).
    fn width(c: &str) -> i32 {
        match c {
            "model" => -30,
            "t/s" => 20,
            "size" | "params" => 10,
            "ngl" | "fa" | "rpk" => 3,
            "threads" | "n_batch" => 7,
            "n_ubatch" => 8,
            "type_k" | "type_v" => 6,
            "test" => 15,
            "backend" => -10,
            "rope" => -11,
            _ => 10,
        }
    }

    fn cell(out: &mut dyn Write, c: &str, v: &str) -> std::io::Result<()> {
        let w = Self::width(c);
        let n = w.unsigned_abs() as usize;
        let len = v.chars().count();
        let pad = " ".repeat(n.saturating_sub(len));
        if w < 0 {
            write!(out, " {v}{pad} |")
        } else {
            write!(out, " {pad}{v} |")
        }
    }
}

impl Printer for Markdown {
    fn header(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        write!(out, "|")?;
        for c in &self.cols {
            Self::cell(out, c, c)?;
        }
        write!(out, "\n|")?;
        for c in &self.cols {
            let w = Self::width(c);
            let dashes = "-".repeat(w.unsigned_abs() as usize - 1);
            write!(out, " {dashes}{} |", if w > 0 { ":" } else { "-" })?;
        }
        writeln!(out)?;
        out.flush()
    }
    fn test(&mut self, out: &mut dyn Write, o: &Outcome) -> std::io::Result<()> {
        let i = &o.inst;
        write!(out, "|")?;
        for c in &self.cols {
            let v = match *c {
                "model" => o.model_type.clone(),
                "size" => {
                    let s = o.model_size as f64;
                    if s < 1024.0 * 1024.0 * 1024.0 {
                        format!("{:.2} MiB", s / 1048576.0)
                    } else {
                        format!("{:.2} GiB", s / 1073741824.0)
                    }
                }
                "params" => {
                    let n = o.model_n_params as f64;
                    if n < 1e9 {
                        format!("{:.2} M", n / 1e6)
                    } else {
                        format!("{:.2} B", n / 1e9)
                    }
                }
                "backend" => backend_name(),
                "ngl" => i.n_gpu_layers.to_string(),
                "threads" => i.n_threads.to_string(),
                "n_batch" => i.n_batch.to_string(),
                "n_ubatch" => i.n_ubatch.to_string(),
                "type_k" => i.type_k.clone(),
                "type_v" => i.type_v.clone(),
                "fa" => i.fa.code().to_string(),
                "rpk" => u8::from(i.repack).to_string(),
                "rope" => i.rope.map(|r| r.as_str().to_string()).unwrap_or_else(|| "model".into()),
                "test" => i.test_name(),
                "t/s" => {
                    let ts = o.samples_ts();
                    format!("{:.2} ± {:.2}", mean(&ts), stdev(&ts))
                }
                _ => String::new(),
            };
            Self::cell(out, c, &v)?;
        }
        writeln!(out)?;
        out.flush()
    }
    fn footer(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "\nbuild: clex {} (ggml from llama-cpp-sys-2)", env!("CARGO_PKG_VERSION"))
    }
}
