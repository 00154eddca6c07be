//! `clex-run bench`: llama.cpp's llama-bench tests on this runtime, with its flags and its
//! output (markdown, CSV, JSON, JSONL), so the two tools' results line up row by row.
//!
//! Tests, as llama-bench runs them:
//! - `ppN`: N prompt tokens evaluated in calls of `-b` tokens (forward passes of `-ub`),
//!   logits of the last token only; t/s = N / time.
//! - `tgN`: N tokens generated one at a time (a forward pass and its logits each; the
//!   next token is drawn at random, no sampling), t/s = N / time.
//! - `ppP+tgG` (`-pg P,G`): both in one timing, t/s = (P + G) / time.
//! - `… @ dD` (`-d D`): the cache holds D tokens before the test. They are evaluated once
//!   per test (not timed) and the cache saved; each repetition restores it.
//!
//! Tokens are random (a fixed-seed generator), with BOS first when the model adds one.
//! Each test runs once untimed first (the whole prompt, or one generated token) unless
//! `--no-warmup`, then `-r` timed repetitions; the context is `P + G + D` tokens.
//! Every list flag is a comma list and all combinations run (a cartesian product, in
//! llama-bench's order). `--rope-scaling` adds CLEX's RoPE scalings as one more axis.

use super::args::BenchArgs;
use super::common;
use clex::model::{Model, ModelOptions};
use clex::rope::RopeScaling;
use clex::session::{Logits, Session, SessionOptions};
use clex::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

mod report;
use report::*;

const DEFAULT_N_BATCH: usize = 2048;
const DEFAULT_N_UBATCH: usize = 512;

/// Flash attention as llama-bench writes it (`flash_attn` field: -1 auto, 0 off, 1 on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fa {
    Auto,
    Off,
    On,
}

impl Fa {
    fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "-1" => Ok(Fa::Auto),
            "on" | "1" | "true" | "yes" | "enabled" => Ok(Fa::On),
            "off" | "0" | "false" | "no" | "disabled" => Ok(Fa::Off),
            _ => Err(usage(format!("-fa {s:?}: expected on, off, auto, 1 or 0"))),
        }
    }
    fn code(self) -> i32 {
        match self {
            Fa::Auto => -1,
            Fa::Off => 0,
            Fa::On => 1,
        }
    }
    /// Auto means on, as everywhere in clex-run (and llama.cpp on the CPU).
    fn enabled(self) -> bool {
        self != Fa::Off
    }
}

fn usage(msg: String) -> Error {
    Error::Other(format!("bench: {msg}"))
}

/// llama-bench's integer lists: `a,b,c`, ranges `first-last`, `first-last+step`,
/// `first-last*mult`; each flag may also repeat.
fn int_list(flag: &str, vals: &[String], default: &[usize]) -> Result<Vec<usize>> {
    if vals.is_empty() {
        return Ok(default.to_vec());
    }
    let mut out = Vec::new();
    for v in vals {
        for item in v.split(',') {
            let item = item.trim();
            let bad = || usage(format!("{flag} {item:?}: expected N, FIRST-LAST, FIRST-LAST+STEP or FIRST-LAST*MULT"));
            let (range, op, step) = match item.find(['+', '*']) {
                Some(i) => (&item[..i], &item[i..i + 1], item[i + 1..].parse::<usize>().map_err(|_| bad())?),
                None => (item, "+", 1),
            };
            let (first, last) = match range.split_once('-') {
                Some((a, b)) => (a.parse::<usize>().map_err(|_| bad())?, b.parse::<usize>().map_err(|_| bad())?),
                None => {
                    let n = range.parse::<usize>().map_err(|_| bad())?;
                    (n, n)
                }
            };
            if (op == "+" && step == 0) || (op == "*" && (step < 2 || first == 0)) {
                return Err(bad());
            }
            let mut i = first;
            while i <= last {
                out.push(i);
                if out.len() > 100_000 {
                    return Err(usage(format!("{flag} {item:?}: too many values")));
                }
                i = if op == "+" { i + step } else { i * step };
            }
        }
    }
    Ok(out)
}

fn str_list(vals: &[String], default: &str) -> Vec<String> {
    if vals.is_empty() {
        return vec![default.to_string()];
    }
    vals.iter().flat_map(|v| v.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// One test: a point of the cartesian product and its kind.
#[derive(Debug, Clone)]
struct Instance {
    model: PathBuf,
    n_gpu_layers: usize,
    repack: bool,
    n_batch: usize,
    n_ubatch: usize,
    type_k: String,
    type_v: String,
    fa: Fa,
    n_threads: usize,
    rope: Option<RopeScaling>,
    n_depth: usize,
    n_prompt: usize,
    n_gen: usize,
}

impl Instance {
    fn test_name(&self) -> String {
        let mut s = match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, g) => format!("tg{g}"),
            (p, g) => format!("pp{p}+tg{g}"),
        };
        if self.n_depth > 0 {
            s += &format!(" @ d{}", self.n_depth);
        }
        s
    }
}

/// The parsed flags.
struct Params {
    models: Vec<PathBuf>,
    n_prompt: Vec<usize>,
    n_gen: Vec<usize>,
    pg: Vec<(usize, usize)>,
    n_depth: Vec<usize>,
    n_batch: Vec<usize>,
    n_ubatch: Vec<usize>,
    type_k: Vec<String>,
    type_v: Vec<String>,
    threads: Vec<usize>,
    fa: Vec<Fa>,
    repack: Vec<bool>,
    ngl: Vec<usize>,
    rope: Vec<Option<RopeScaling>>,
}

impl Params {
    fn from_args(a: &BenchArgs) -> Result<Self> {
        let mut models: Vec<PathBuf> = a.model_pos.iter().cloned().collect();
        models.extend(str_list(&a.model, "").into_iter().filter(|s| !s.is_empty()).map(PathBuf::from));
        if models.is_empty() {
            return Err(usage("no model given (clex-run bench MODEL.gguf … or -m MODEL.gguf)".into()));
        }
        let mut pg = Vec::new();
        for v in &a.pg {
            let parts: Vec<&str> = v.split(',').map(str::trim).collect();
            match parts.as_slice() {
                [p, g] => pg.push((
                    p.parse().map_err(|_| usage(format!("-pg {v:?}: expected PP,TG")))?,
                    g.parse().map_err(|_| usage(format!("-pg {v:?}: expected PP,TG")))?,
                )),
                _ => return Err(usage(format!("-pg {v:?}: expected PP,TG"))),
            }
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(4);
        let threads = int_list("-t", &a.threads, &[cores])?;
        if threads.contains(&0) {
            return Err(usage("-t must be at least 1".into()));
        }
        let n_ubatch = int_list("-ub", &a.n_ubatch, &[DEFAULT_N_UBATCH])?;
        let n_batch = int_list("-b", &a.n_batch, &[DEFAULT_N_BATCH])?;
        if n_ubatch.contains(&0) || n_batch.contains(&0) {
            return Err(usage("-b and -ub must be at least 1".into()));
        }
        let type_k = str_list(&a.type_k, "f16");
        let type_v = str_list(&a.type_v, "f16");
        for t in type_k.iter().chain(&type_v) {
            clex::kv::parse_cache_type(t).map_err(|e| usage(e.to_string()))?;
        }
        let fa = str_list(&a.flash_attn, "auto").iter().map(|s| Fa::parse(s)).collect::<Result<Vec<_>>>()?;
        let repack = str_list(&a.repack, "1")
            .iter()
            .map(|s| match s.as_str() {
                "1" | "on" | "true" => Ok(true),
                "0" | "off" | "false" => Ok(false),
                _ => Err(usage(format!("--repack {s:?}: expected 0 or 1"))),
            })
            .collect::<Result<Vec<_>>>()?;
        let rope = match &a.rope.rope_scaling {
            None => vec![None],
            Some(s) => s
                .split(',')
                .map(|k| k.parse::<RopeScaling>().map(Some).map_err(usage))
                .collect::<Result<Vec<_>>>()?,
        };
        if a.reps == 0 {
            return Err(usage("-r must be at least 1".into()));
        }
        Ok(Self {
            models,
            n_prompt: int_list("-p", &a.n_prompt, &[512])?,
            n_gen: int_list("-n", &a.n_gen, &[128])?,
            pg,
            n_depth: int_list("-d", &a.n_depth, &[0])?,
            n_batch,
            n_ubatch,
            type_k,
            type_v,
            threads,
            fa,
            repack,
            ngl: int_list("-ngl", &a.n_gpu_layers, &[0])?,
            rope,
        })
    }

    /// Every test, in llama-bench's nesting order (model outermost, then the model
    /// settings, then the context settings; the tests of one setting together).
    fn instances(&self) -> Vec<Instance> {
        let mut out = Vec::new();
        for m in &self.models {
            for &ngl in &self.ngl {
                for &repack in &self.repack {
                    for &nb in &self.n_batch {
                        for &nub in &self.n_ubatch {
                            for tk in &self.type_k {
                                for tv in &self.type_v {
                                    for &fa in &self.fa {
                                        for &nt in &self.threads {
                                            for &rope in &self.rope {
                                                for &nd in &self.n_depth {
                                                    let base = Instance {
                                                        model: m.clone(),
                                                        n_gpu_layers: ngl,
                                                        repack,
                                                        n_batch: nb,
                                                        n_ubatch: nub,
                                                        type_k: tk.clone(),
                                                        type_v: tv.clone(),
                                                        fa,
                                                        n_threads: nt,
                                                        rope,
                                                        n_depth: nd,
                                                        n_prompt: 0,
                                                        n_gen: 0,
                                                    };
                                                    let tests = self.n_prompt.iter().filter(|&&p| p > 0).map(|&p| (p, 0))
                                                        .chain(self.n_gen.iter().filter(|&&g| g > 0).map(|&g| (0, g)))
                                                        .chain(self.pg.iter().copied().filter(|&(p, g)| p + g > 0));
                                                    for (p, g) in tests {
                                                        out.push(Instance { n_prompt: p, n_gen: g, ..base.clone() });
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// A small deterministic generator for the random tokens (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % n as u32
    }
}

/// What llama-bench's `test_prompt` does: `n` tokens in calls of `n_batch`, BOS first
/// when the model adds one, logits of each call's last token.
fn run_prompt(s: &mut Session, n: usize, n_batch: usize, rng: &mut Rng, buf: &mut Vec<f32>) -> Result<()> {
    let tok = &s.model().tokenizer;
    let n_vocab = tok.n_vocab();
    let bos = tok.bos().filter(|_| tok.add_bos());
    let mut batch = Vec::with_capacity(n_batch.min(n));
    let mut done = 0;
    while done < n {
        let k = (n - done).min(n_batch);
        batch.clear();
        batch.push(match bos {
            Some(b) if done == 0 => b,
            _ => rng.below(n_vocab),
        });
        batch.extend((1..k).map(|_| rng.below(n_vocab)));
        s.eval_into(&batch, Logits::Last, buf)?;
        done += k;
    }
    Ok(())
}

/// What llama-bench's `test_gen` does: `n` single-token forward passes with logits.
fn run_gen(s: &mut Session, n: usize, rng: &mut Rng, buf: &mut Vec<f32>) -> Result<()> {
    let tok = &s.model().tokenizer;
    let n_vocab = tok.n_vocab();
    let mut t = tok.bos().filter(|_| tok.add_bos()).unwrap_or_else(|| rng.below(n_vocab));
    for _ in 0..n {
        s.eval_into(&[t], Logits::Last, buf)?;
        t = rng.below(n_vocab);
    }
    Ok(())
}

/// A finished test.

pub fn run(a: &BenchArgs) -> Result<()> {
    let params = Params::from_args(a)?;
    let instances = params.instances();
    if instances.is_empty() {
        return Err(usage("no tests: every -p, -n and -pg is 0".into()));
    }
    if a.verbose {
        let feats: Vec<String> = ggml_sys::safe::cpu_features().into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
        eprintln!("clex-run bench: system_info: CPU : {} |", feats.join(" | "));
    }
    let mut printer: Box<dyn Printer> = match a.output.as_str() {
        "json" => Box::new(Json { first: true, lines: false }),
        "jsonl" => Box::new(Json { first: true, lines: true }),
        "csv" => Box::new(Csv { header_done: false }),
        _ => Box::new(Markdown::new(&params)),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| Error::Other(format!("writing the results: {e}"));
    printer.header(&mut out).map_err(io)?;

    let mut model: Option<(PathBuf, bool, usize, Arc<Model>)> = None;
    let mut buf = Vec::new();
    let n = instances.len();
    for (k, inst) in instances.into_iter().enumerate() {
        let progress = |what: &str| {
            if a.progress {
                eprintln!("clex-run bench: benchmark {}/{n}: {what}", k + 1);
            }
        };
        progress("starting");
        // Keep the model between tests while its load settings stay the same.
        let m = match &model {
            Some((p, r, g, m)) if *p == inst.model && *r == inst.repack && *g == inst.n_gpu_layers => Arc::clone(m),
            _ => {
                // Free the previous model before loading the next.
                drop(model.take());
                let opts = ModelOptions { repack: inst.repack, n_gpu_layers: inst.n_gpu_layers, ..Default::default() };
                let m = Arc::new(Model::load_with(&inst.model, &opts).map_err(|e| match e {
                    Error::Gguf(g) => Error::Model(format!("{}: invalid GGUF: {g}", inst.model.display())),
                    other => other,
                })?);
                model = Some((inst.model.clone(), inst.repack, inst.n_gpu_layers, Arc::clone(&m)));
                m
            }
        };
        // `--rope-scaling` is a list here (one axis of the tests): each test sets its own.
        let mut rope_args = a.rope.clone();
        rope_args.rope_scaling = None;
        let mut rope = common::rope_settings(&rope_args)?;
        rope.scaling = inst.rope;
        let opts = SessionOptions {
            n_ctx: inst.n_prompt + inst.n_gen + inst.n_depth,
            n_ubatch: inst.n_ubatch,
            n_threads: inst.n_threads,
            flash_attn: inst.fa.enabled(),
            type_k: clex::kv::parse_cache_type(&inst.type_k)?,
            type_v: clex::kv::parse_cache_type(&inst.type_v)?,
            rope,
        };
        let mut s = Session::new(Arc::clone(&m), opts)?;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

        if !a.no_warmup {
            if inst.n_prompt > 0 {
                progress("warmup prompt run");
                run_prompt(&mut s, inst.n_prompt, inst.n_batch, &mut rng, &mut buf)?;
            }
            if inst.n_gen > 0 {
                progress("warmup generation run");
                run_gen(&mut s, 1, &mut rng, &mut buf)?;
            }
        }
        s.truncate(0);
        // The prefilled context of "@ dN", evaluated once and restored before each run.
        let depth = if inst.n_depth > 0 {
            progress("depth run");
            run_prompt(&mut s, inst.n_depth, inst.n_batch, &mut rng, &mut buf)?;
            Some(s.save_state())
        } else {
            None
        };
        let mut samples_ns = Vec::with_capacity(a.reps);
        for r in 0..a.reps {
            match &depth {
                Some(st) => s.restore_state(st)?,
                None => s.truncate(0),
            }
            let t0 = Instant::now();
            if inst.n_prompt > 0 {
                progress(&format!("prompt run {}/{}", r + 1, a.reps));
                run_prompt(&mut s, inst.n_prompt, inst.n_batch, &mut rng, &mut buf)?;
            }
            if inst.n_gen > 0 {
                progress(&format!("generation run {}/{}", r + 1, a.reps));
                run_gen(&mut s, inst.n_gen, &mut rng, &mut buf)?;
            }
            samples_ns.push(t0.elapsed().as_nanos() as u64);
        }
        let outcome = Outcome {
            model_type: model_type(&m),
            model_size: m.weights_bytes(),
            model_n_params: m.n_params(),
            test_time: now_rfc3339(),
            samples_ns,
            inst,
        };
        drop(s);
        printer.test(&mut out, &outcome).map_err(io)?;
    }
    printer.footer(&mut out).map_err(io)?;
    if a.verbose {
        if let Some(kb) = super::generate::peak_rss_kb() {
            eprintln!("clex-run bench: peak RSS {:.1} MiB", kb as f64 / 1024.0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn int_lists_and_ranges_as_llama_bench() {
        assert_eq!(int_list("-p", &[], &[512]).unwrap(), vec![512]);
        assert_eq!(int_list("-p", &s(&["1,2", "8"]), &[512]).unwrap(), vec![1, 2, 8]);
        assert_eq!(int_list("-d", &s(&["0-4096+2048"]), &[0]).unwrap(), vec![0, 2048, 4096]);
        assert_eq!(int_list("-p", &s(&["128-1024*2"]), &[0]).unwrap(), vec![128, 256, 512, 1024]);
        for bad in ["x", "1-", "4-8+0", "0-8*2", "1,,2", "-3"] {
            assert!(int_list("-p", &s(&[bad]), &[0]).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn cartesian_product_in_llama_bench_order() {
        let p = Params {
            models: vec!["m.gguf".into()],
            n_prompt: vec![512],
            n_gen: vec![128],
            pg: vec![(64, 16)],
            n_depth: vec![0, 4096],
            n_batch: vec![2048],
            n_ubatch: vec![512],
            type_k: vec!["f16".into()],
            type_v: vec!["f16".into()],
            threads: vec![1, 2],
            fa: vec![Fa::Auto],
            repack: vec![true],
            ngl: vec![0],
            rope: vec![None],
        };
        let names: Vec<String> = p.instances().iter().map(|i| format!("t{} {}", i.n_threads, i.test_name())).collect();
        assert_eq!(
            names,
            [
                "t1 pp512", "t1 tg128", "t1 pp64+tg16", "t1 pp512 @ d4096", "t1 tg128 @ d4096", "t1 pp64+tg16 @ d4096",
                "t2 pp512", "t2 tg128", "t2 pp64+tg16", "t2 pp512 @ d4096", "t2 tg128 @ d4096", "t2 pp64+tg16 @ d4096",
            ]
        );
    }

    #[test]
    fn flash_attention_spellings() {
        assert_eq!(Fa::parse("1").unwrap(), Fa::On);
        assert_eq!(Fa::parse("off").unwrap(), Fa::Off);
        assert_eq!(Fa::parse("auto").unwrap().code(), -1);
        assert!(Fa::parse("maybe").is_err());
    }

    /// The prefilled "@ dN" context comes back exactly: after a restore, generation
    /// continues with the logits it had right after the prefill, however far it went
    /// (here past a CLEX bucket boundary, which re-rotates the cached keys in place).
    #[test]
    fn restored_depth_state_gives_the_same_logits() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/clex-tiny-random.gguf");
        let model = Arc::new(Model::load(&path).unwrap());
        let opts = SessionOptions { n_ctx: 256, n_threads: 2, flash_attn: true, ..Default::default() };
        let mut s = Session::new(model, opts).unwrap();
        let (mut rng, mut buf) = (Rng(7), Vec::new());
        run_prompt(&mut s, 60, 32, &mut rng, &mut buf).unwrap();
        let st = s.save_state();
        let first = s.eval(&[5], Logits::Last).unwrap();
        run_gen(&mut s, 40, &mut rng, &mut buf).unwrap();
        assert!(s.bucket() > 1 && s.rerotations > 0, "the test should cross a bucket boundary");
        s.restore_state(&st).unwrap();
        assert_eq!(s.n_past(), 60);
        assert_eq!(s.eval(&[5], Logits::Last).unwrap(), first);
    }

    #[test]
    fn sample_stdev_and_rfc3339() {
        assert_eq!(stdev(&[1.0]), 0.0);
        assert!((stdev(&[1.0, 2.0, 3.0, 4.0]) - 1.2909944).abs() < 1e-6);
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }
}
