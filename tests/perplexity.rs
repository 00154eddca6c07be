//! `clex::perplexity` and `clex-run perplexity`:
//! - the clex-tiny fixture scored window by window matches the reference NLLs (1e-3);
//! - the llama-compat protocol on a hand-made model: hand-computed figures, and
//!   micro-batched scoring equal to a plain port of llama-perplexity's loop;
//! - the command's table, JSON, CSV and plots on the fixture;
//! - `--llama-compat` on the Qwen GGUF against llama.cpp's own `llama-perplexity`
//!   (built by scripts/llama-perplexity.sh; set CLEX_LLAMA_PERPLEXITY to the binary),
//!   within 0.5 % at -c 512 and -c 2048.
mod common;
use clex::logprob::{token_nlls, PplStats};
use clex::model::Model;
use clex::perplexity::{self, CausalLm, PerplexityConfig, Protocol};
use clex::session::{Logits, RopeSettings, Session, SessionOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

// ---------------------------------------------------------------- the fixture

fn reference() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| {
        let p = common::fixtures().join("clex-tiny/reference.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    })
}

/// The fixture converted to an f32 GGUF (once per test process).
fn fixture_gguf() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let out = common::temp_path("clex-tiny-f32.gguf");
        common::convert_hf(&common::fixtures().join("clex-tiny/hf"), &out, "f32");
        out
    })
}

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(fixture_gguf()).unwrap())).clone()
}

fn base_options(n_ubatch: usize) -> SessionOptions {
    SessionOptions {
        n_ubatch,
        n_threads: 2,
        flash_attn: false,
        type_k: ggml_sys::GGML_TYPE_F32,
        type_v: ggml_sys::GGML_TYPE_F32,
        rope: RopeSettings::default(),
        ..Default::default()
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}
fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Scores `seq` as one window through the library with micro-batches of `ub` tokens.
fn score_fixture(seq: &[u32], ub: usize) -> (Vec<f64>, u32) {
    let m = model();
    let opts = perplexity::window_options(&m, &base_options(ub), seq.len()).unwrap();
    let mut s = Session::new(m, opts).unwrap();
    let mut fed = Vec::new();
    let nll = perplexity::score_window(&mut s, seq, Protocol::Full, |k| fed.push(k)).unwrap();
    assert!(fed.iter().all(|&k| k <= ub), "micro-batches {fed:?} exceed {ub}");
    assert_eq!(fed.iter().sum::<usize>(), seq.len());
    assert_eq!(s.rerotations, 0, "the window's bucket from the first micro-batch on: no re-rotation");
    (nll, s.bucket())
}

fn check_case(name: &str, case: &Value, seq: &[u32]) {
    let want = floats(&case["token_nll"]);
    let want_mean = case["mean_nll"].as_f64().unwrap();
    let want_t = case["t"].as_u64().unwrap() as u32;
    let mut first: Option<Vec<f64>> = None;
    // One micro-batch, micro-batches that split the window unevenly, and tiny ones.
    for ub in [512, 48, 7] {
        let (nll, t) = score_fixture(seq, ub);
        assert_eq!(t, want_t, "{name}: the window's bucket t = ceil(n/L)");
        assert_eq!(nll.len(), want.len(), "{name}: every token after the first is scored");
        let worst = nll.iter().zip(&want).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        let mut st = PplStats::new();
        st.extend(&nll);
        eprintln!(
            "{name} (n = {}, t = {t}, micro-batch {ub}): mean NLL {:.6} vs reference {want_mean:.6}, worst token {worst:.2e}, PPL {:.2} vs {:.2}",
            seq.len(),
            st.mean_nll(),
            st.ppl(),
            case["ppl"].as_f64().unwrap()
        );
        assert!(worst <= 1e-3, "{name}: a token's NLL is off by {worst}");
        assert!((st.mean_nll() - want_mean).abs() <= 1e-3);
        match &first {
            None => first = Some(nll),
            Some(f) => {
                let d = f.iter().zip(&nll).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(d <= 1e-4, "{name}: micro-batch {ub} changes NLLs by {d}");
            }
        }
    }
}

#[test]
fn fixture_perplexity_case_matches_the_reference() {
    let r = reference();
    let p = &r["perplexity"];
    let name = p["sequence"].as_str().unwrap().trim_start_matches("full_forward[name=").trim_end_matches(']');
    let case = r["full_forward"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    check_case("perplexity", p, &ids(&case["ids"]));
}

#[test]
fn fixture_text_case_matches_the_reference() {
    let tc = &reference()["text_case"];
    let want_ids = ids(&tc["ids"]);
    check_case("text_case", tc, &want_ids);
    // Through `evaluate`: one window of the whole text, BOS first.
    let m = model();
    let bos = 1u32; // <s>
    assert_eq!(want_ids[0], bos);
    let cfg = PerplexityConfig {
        lengths: vec![want_ids.len()],
        scalings: vec![None],
        protocol: Protocol::Full,
        max_windows: None,
        session: base_options(32),
    };
    let res = perplexity::evaluate(&m, &[want_ids.clone()], Some(bos), &cfg, &mut |_| {}).unwrap();
    assert_eq!(res.len(), 1);
    let r0 = &res[0];
    assert_eq!((r0.windows, r0.tokens, r0.bucket, r0.rope_scaling.as_str()), (1, 133, 3, "clex"));
    assert!((r0.mean_nll - tc["mean_nll"].as_f64().unwrap()).abs() <= 1e-3, "{}", r0.mean_nll);
    assert!((r0.ppl / tc["ppl"].as_f64().unwrap() - 1.0).abs() <= 1e-3);
}

// ------------------------------------------------------- a hand-made model

/// A deterministic "model" over a small vocabulary whose logits depend on the token and
/// its position (so a wrong position or row shows), with a KV "cache" that only counts.
struct Toy {
    n_vocab: usize,
    ub: usize,
    n_ctx: usize,
    past: usize,
    /// Largest logits buffer handed out (floats).
    peak: usize,
    resets: usize,
}

impl Toy {
    fn row(&self, tok: u32, pos: usize) -> Vec<f32> {
        (0..self.n_vocab).map(|j| ((tok as usize * 7 + pos * 3 + j * 5) % 11) as f32 * 0.37 - (j as f32) * 0.05).collect()
    }
}

impl CausalLm for Toy {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }
    fn max_batch(&self) -> usize {
        self.ub
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn reset(&mut self) {
        self.past = 0;
        self.resets += 1;
    }
    fn eval(&mut self, tokens: &[u32], want: Logits) -> clex::Result<Vec<f32>> {
        assert!(tokens.len() <= self.ub && self.past + tokens.len() <= self.n_ctx);
        let rows: Vec<f32> = match want {
            Logits::All => tokens.iter().enumerate().flat_map(|(i, &t)| self.row(t, self.past + i)).collect(),
            Logits::Last => self.row(*tokens.last().unwrap(), self.past + tokens.len() - 1),
        };
        self.past += tokens.len();
        self.peak = self.peak.max(rows.len());
        Ok(rows)
    }
}

/// llama-perplexity's loop (tools/perplexity/perplexity.cpp, `perplexity()`), ported
/// literally: windows of n_ctx, BOS in front, full logits, positions first..n_ctx−1.
fn llama_port(toy: &Toy, tokens: &[u32], n_ctx: usize, n_chunks: Option<usize>, bos: Option<u32>) -> PplStats {
    let n_chunk_max = tokens.len() / n_ctx;
    let n_chunk = n_chunks.map_or(n_chunk_max, |c| c.min(n_chunk_max));
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0u64);
    for i in 0..n_chunk {
        let start = i * n_ctx;
        let mut w = tokens[start..start + n_ctx].to_vec();
        if let Some(b) = bos {
            w[0] = b;
        }
        let logits: Vec<f32> = w.iter().enumerate().flat_map(|(p, &t)| toy.row(t, p)).collect();
        for j in first..n_ctx - 1 {
            let row = &logits[j * toy.n_vocab..(j + 1) * toy.n_vocab];
            let v = token_nlls(row, toy.n_vocab, &[w[j + 1]])[0];
            nll += v;
            nll2 += v * v;
            count += 1;
        }
    }
    PplStats { sum_nll: nll, sum_nll2: nll2, count }
}

fn toy(ub: usize, n_ctx: usize) -> Toy {
    Toy { n_vocab: 13, ub, n_ctx, past: 0, peak: 0, resets: 0 }
}

#[test]
fn llama_compat_hand_computed() {
    // A context-free model: p = (1/4, 1/4, 1/2) for every prediction.
    struct Flat;
    impl CausalLm for Flat {
        fn n_vocab(&self) -> usize {
            3
        }
        fn max_batch(&self) -> usize {
            3
        }
        fn n_ctx(&self) -> usize {
            4
        }
        fn reset(&mut self) {}
        fn eval(&mut self, tokens: &[u32], want: Logits) -> clex::Result<Vec<f32>> {
            let row = [0.0, 0.0, std::f32::consts::LN_2];
            let n = if want == Logits::All { tokens.len() } else { 1 };
            Ok(row.iter().copied().cycle().take(3 * n).collect())
        }
    }
    let text = [0u32, 1, 2, 2, 1, 2, 1, 1, 2];
    let starts = perplexity::window_starts(text.len(), 4, None);
    assert_eq!(starts, vec![0, 4], "two windows of 4; the tail of 1 is dropped");
    let windows: Vec<Vec<u32>> = starts.iter().map(|&s| perplexity::window(&text, s, 4, Some(0))).collect();
    assert_eq!(windows, vec![vec![0, 1, 2, 2], vec![0, 2, 1, 1]], "BOS replaces each window's first token");
    let ln2 = std::f64::consts::LN_2;
    let mut compat = PplStats::new();
    let mut full = PplStats::new();
    for w in &windows {
        compat.extend(&perplexity::score_window(&mut Flat, w, Protocol::LlamaCompat, |_| {}).unwrap());
        full.extend(&perplexity::score_window(&mut Flat, w, Protocol::Full, |_| {}).unwrap());
    }
    // llama-compat: first = 4/2 = 2, so only position 2 → token 3 counts: "2" (ln 2) in
    // the first window, "1" (ln 4) in the second. N = 2, mean = 1.5 ln 2, PPL = 2^1.5,
    // var = (ln²2 + 4 ln²2)/2 − 2.25 ln²2 = 0.25 ln²2, error = sqrt(var/(N−1))·PPL.
    // (The logits are f32: ln 2 is good to ~1e-8 there.)
    assert_eq!(compat.count, 2);
    let ppl = 2f64.powf(1.5);
    assert!((compat.ppl() - ppl).abs() < 1e-6, "{}", compat.ppl());
    assert!((compat.ppl_error().unwrap() - 0.5 * ln2 * ppl).abs() < 1e-6, "{:?}", compat.ppl_error());
    // Full: targets 1,2,2 and 2,1,1 → 3·ln 4 + 3·ln 2 over 6 = 1.5 ln 2 as well; var = 0.25 ln²2.
    assert_eq!(full.count, 6);
    assert!((full.ppl() - ppl).abs() < 1e-6);
    assert!((full.ppl_error().unwrap() - (0.25 * ln2 * ln2 / 5.0).sqrt() * ppl).abs() < 1e-6);
}

#[test]
fn llama_compat_equals_a_port_of_llama_perplexity() {
    let text: Vec<u32> = (0..203u32).map(|i| (i * i + 3 * i + 1) % 13).collect();
    for &(n_ctx, chunks) in &[(16usize, None), (17, Some(3)), (64, None), (2, None), (3, None)] {
        let want = llama_port(&toy(1, n_ctx), &text, n_ctx, chunks, Some(0));
        for ub in [1usize, 3, 8, 64] {
            let mut lm = toy(ub, n_ctx);
            let mut got = PplStats::new();
            let starts = perplexity::window_starts(text.len(), n_ctx, chunks);
            for &s in &starts {
                let w = perplexity::window(&text, s, n_ctx, Some(0));
                let v = perplexity::score_window(&mut lm, &w, Protocol::LlamaCompat, |_| {}).unwrap();
                assert_eq!(v.len(), Protocol::LlamaCompat.n_scored(n_ctx));
                got.extend(&v);
            }
            assert_eq!(got.count, want.count, "n_ctx {n_ctx} ub {ub}: count");
            assert!((got.sum_nll - want.sum_nll).abs() < 1e-9 && (got.sum_nll2 - want.sum_nll2).abs() < 1e-9, "n_ctx {n_ctx} ub {ub}");
            assert_eq!(lm.resets, starts.len(), "every window starts from an empty cache");
            assert!(lm.peak <= ub.min(n_ctx) * 13, "only one micro-batch of logits at a time");
        }
    }
}

// ------------------------------------------------------------- the command

fn clex_run() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clex-run"))
}

#[test]
fn command_table_json_csv_and_plots_on_the_fixture() {
    let tc = &reference()["text_case"];
    let text = common::temp_path("pangram.txt");
    std::fs::write(&text, tc["text"].as_str().unwrap()).unwrap();
    let (json, csv, png, svg) =
        (common::temp_path("ppl.json"), common::temp_path("ppl.csv"), common::temp_path("ppl.png"), common::temp_path("ppl.svg"));
    let mut args: Vec<String> = vec!["perplexity".into(), fixture_gguf().display().to_string()];
    for a in ["-f", text.to_str().unwrap(), "-c", "32,64,134,600", "--rope-scaling", "clex,clex-ntk,none", "-t", "2", "--fa", "off", "--ub", "48"] {
        args.push(a.into());
    }
    let run = |extra: &[String]| {
        let out = clex_run().args(&args).args(extra).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "clex-run perplexity failed: {err}");
        (String::from_utf8(out.stdout).unwrap(), err)
    };
    let (table, err) = run(&[
        format!("--json={}", json.display()),
        format!("--csv={}", csv.display()),
        "--plot".into(),
        png.display().to_string(),
    ]);
    eprintln!("{table}");
    assert!(err.contains("-c 600: no text has 600 tokens"), "{err}");
    assert!(table.starts_with("| n_ctx | rope |"), "{table}");
    assert!(table.contains("| n_ctx | clex | clex-ntk | none |"), "pivot table:\n{table}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let res = doc["results"].as_array().unwrap();
    assert_eq!(res.len(), 12);
    let at = |n: u64, k: &str| res.iter().find(|r| r["n_ctx"] == n && r["rope_scaling"] == k).unwrap();
    // The whole text as one window under CLEX is the reference's text case.
    let whole = at(134, "clex");
    assert_eq!((whole["windows"].as_u64(), whole["tokens"].as_u64(), whole["bucket"].as_u64()), (Some(1), Some(133), Some(3)));
    assert!((whole["mean_nll"].as_f64().unwrap() - tc["mean_nll"].as_f64().unwrap()).abs() <= 1e-3);
    // 134 tokens: 4 windows of 32 (t = 1) and 2 of 64 (t = 1); 600 is beyond the text.
    assert_eq!((at(32, "none")["windows"].as_u64(), at(32, "none")["tokens"].as_u64()), (Some(4), Some(124)));
    assert_eq!(at(64, "clex-ntk")["bucket"].as_u64(), Some(1));
    assert_eq!(at(134, "clex-ntk")["bucket"].as_u64(), Some(3));
    assert!(at(600, "none")["ppl"].is_null() && at(600, "none")["windows"] == 0);
    // clex at 600 > L·T = 512 is refused, and said so, without stopping the others.
    assert!(at(600, "clex")["skipped"].as_str().unwrap().contains("512"), "{}", at(600, "clex"));
    // Within L every scaling is plain RoPE.
    assert_eq!(at(64, "clex")["ppl"], at(64, "none")["ppl"]);
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.lines().count(), 13);
    assert!(csv_text.starts_with("n_ctx,rope_scaling,bucket,windows,tokens,ppl,ppl_error"));
    let png_bytes = std::fs::read(&png).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n") && png_bytes.len() > 10_000, "a PNG with something drawn");

    // --from-json: the saved results give the same table without evaluating anything; a
    // later file's (length, scaling) pair replaces an earlier one's, new pairs are added.
    let replay = clex_run().args(["perplexity", "--from-json", json.to_str().unwrap()]).output().unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert_eq!(String::from_utf8(replay.stdout).unwrap(), table, "the replayed table");
    let mut other = doc.clone();
    let mut extra = at(134, "none").clone();
    extra["n_ctx"] = 200.into();
    let mut changed = at(32, "none").clone();
    changed["ppl"] = 1.5.into();
    other["results"] = Value::Array(vec![changed, extra]);
    let json2 = common::temp_path("ppl2.json");
    std::fs::write(&json2, other.to_string()).unwrap();
    let merged = clex_run()
        .args(["perplexity", "--from-json", json.to_str().unwrap(), "--from-json", json2.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    let m: Value = serde_json::from_slice(&merged.stdout).unwrap();
    let m = m["results"].as_array().unwrap();
    assert_eq!(m.len(), 13);
    let find = |n: u64, k: &str| m.iter().find(|r| r["n_ctx"] == n && r["rope_scaling"] == k).unwrap();
    assert_eq!(find(32, "none")["ppl"].as_f64(), Some(1.5));
    assert_eq!(find(200, "none")["tokens"], at(134, "none")["tokens"]);
    assert!(find(600, "none")["ppl"].is_null(), "NaN (nothing scored) survives the round trip");
    assert!(m.windows(2).all(|w| w[0]["n_ctx"].as_u64() <= w[1]["n_ctx"].as_u64()), "sorted by length");
    let bad = clex_run().args(["perplexity", "--from-json", csv.to_str().unwrap()]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a `perplexity --json` file"));

    // JSON on stdout instead of the table, and an SVG plot.
    let (out, _) = run(&["--json".into(), "--plot".into(), svg.display().to_string(), "--llama-compat".into()]);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["protocol"], "llama-compat");
    let r32 = doc["results"].as_array().unwrap().iter().find(|r| r["n_ctx"] == 32).unwrap();
    assert_eq!(r32["tokens"].as_u64(), Some(4 * 15), "32 − 16 − 1 tokens per window");
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg") && svg_text.contains("clex-ntk") && svg_text.contains("window length"));
}

#[test]
fn command_refuses_bad_lists() {
    let out = clex_run().args(["perplexity", "x.gguf", "-f", "t.txt", "--rope-scaling", "none,longrope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown RoPE scaling"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = clex_run().args(["perplexity", "x.gguf", "-f", "t.txt", "-c", "512,x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

// ------------------------------------------- against llama.cpp's llama-perplexity

/// "Final estimate: PPL = 12.3456 +/- 0.12345" → (ppl, error).
fn final_estimate(log: &str) -> Option<(f64, f64)> {
    let line = log.lines().find(|l| l.contains("Final estimate: PPL = "))?;
    let rest = line.split("Final estimate: PPL = ").nth(1)?;
    let mut it = rest.split("+/-").map(|s| s.trim().parse::<f64>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

#[test]
fn final_estimate_parses() {
    let log = "0.38.964.057 I Final estimate: PPL = 28.9207 +/- 3.01444\n";
    assert_eq!(final_estimate(log), Some((28.9207, 3.01444)));
}

/// The text the comparison uses: a long State of the Union address.
const SOTU: &str = "texts/sotu/1981_jimmy_carter_d.txt";

fn compare_with_llama(tool: &Path, model: &Path, text: &Path, n_ctx: usize, chunks: usize) -> (f64, f64) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).to_string();
    let (n, c) = (n_ctx.to_string(), chunks.to_string());
    let t0 = std::time::Instant::now();
    let out = Command::new(tool)
        .args(["-m", model.to_str().unwrap(), "-f", text.to_str().unwrap(), "-c", &n, "--chunks", &c, "-t", &threads])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "llama-perplexity failed:\n{log}");
    let (want, want_err) = final_estimate(&log).unwrap_or_else(|| panic!("no final estimate in:\n{log}"));
    let t_llama = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let out = clex_run()
        .args(["perplexity", model.to_str().unwrap(), "-f", text.to_str().unwrap(), "-c", &n, "--chunks", &c, "-t", &threads])
        .args(["--llama-compat", "--json", "--no-progress"])
        .output()
        .unwrap();
    assert!(out.status.success(), "clex-run failed: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let r = &doc["results"][0];
    let (got, got_err) = (r["ppl"].as_f64().unwrap(), r["ppl_error"].as_f64().unwrap());
    assert_eq!(r["tokens"].as_u64(), Some((chunks * (n_ctx - n_ctx / 2 - 1)) as u64));
    let rel = (got / want - 1.0).abs();
    eprintln!(
        "-c {n_ctx} --chunks {chunks}: llama-perplexity {want:.4} ± {want_err:.4} ({t_llama:.0} s) · clex-run --llama-compat {got:.4} ± {got_err:.4} ({:.0} s) · |Δ| = {:.3} %",
        t1.elapsed().as_secs_f64(),
        rel * 100.0
    );
    (rel, (got_err / want_err - 1.0).abs())
}

#[test]
fn llama_compat_matches_llama_perplexity_on_qwen() {
    let Some(tool) = std::env::var_os("CLEX_LLAMA_PERPLEXITY").map(PathBuf::from) else {
        eprintln!(
            "SKIPPED: CLEX_LLAMA_PERPLEXITY is not set; build llama.cpp's tool with \
             `CLEX_LLAMA_PERPLEXITY=$(scripts/llama-perplexity.sh --build-only)` and export it"
        );
        return;
    };
    assert!(tool.is_file(), "CLEX_LLAMA_PERPLEXITY={} is not a file", tool.display());
    let (Some(model), Some(text)) = (common::qwen(), common::test_file(SOTU)) else { return };
    for (n_ctx, chunks) in [(512, 4), (2048, 2)] {
        let (rel, rel_err) = compare_with_llama(&tool, &model, &text, n_ctx, chunks);
        assert!(rel <= 0.005, "-c {n_ctx}: PPL differs from llama-perplexity's by {:.3} % (> 0.5 %)", rel * 100.0);
        assert!(rel_err <= 0.05, "-c {n_ctx}: the standard error differs by {:.1} %", rel_err * 100.0);
    }
}
