//! `clex-run bench`: llama-bench's tests and output schema. The model description is
//! checked against llama.cpp's own (parameter count, size, type string) on the same file;
//! the figures' arithmetic (mean, standard deviation, t/s from ns) against the samples.
//! Speed itself is measured, never asserted (docs/PERFORMANCE.md).
mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn clex_run() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clex-run"));
    c.env("CLEX_LOG", "warn");
    c
}

fn llama_fixture() -> PathBuf {
    common::fixtures().join("llama-2-tiny-random.gguf")
}

fn bench_json(args: &[&str]) -> Vec<Value> {
    let out = clex_run().arg("bench").args(args).args(["-o", "json"]).output().unwrap();
    assert!(out.status.success(), "clex-run bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).expect("JSON on stdout").as_array().expect("a list of tests").clone()
}

#[test]
fn tests_and_schema_as_llama_bench() {
    let model = llama_fixture();
    let rows = bench_json(&[model.to_str().unwrap(), "-p", "16", "-n", "4", "--pg", "8,2", "-d", "0,32", "-r", "3", "-t", "1,2"]);
    // Each (threads, depth) runs pp16, tg4 and pg8+2, in llama-bench's order.
    assert_eq!(rows.len(), 2 * 2 * 3);
    let lm = common::oracle::load(&model);
    for r in &rows {
        for key in [
            "build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type", "model_size",
            "model_n_params", "n_batch", "n_ubatch", "n_threads", "type_k", "type_v", "n_gpu_layers", "flash_attn", "n_prompt",
            "n_gen", "n_depth", "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns", "samples_ts",
        ] {
            assert!(r.get(key).is_some(), "llama-bench's field {key} is missing: {r}");
        }
        // The model as llama.cpp describes it.
        assert_eq!(r["model_n_params"].as_u64(), Some(lm.n_params()), "parameters");
        assert_eq!(r["model_size"].as_u64(), Some(lm.size()), "size in bytes");
        let ns: Vec<f64> = r["samples_ns"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let ts: Vec<f64> = r["samples_ts"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ns.len(), 3, "-r 3 samples");
        let tokens = (r["n_prompt"].as_u64().unwrap() + r["n_gen"].as_u64().unwrap()) as f64;
        for (n, t) in ns.iter().zip(&ts) {
            assert!((t - tokens * 1e9 / n).abs() <= 1e-6 * t, "t/s = tokens / time: {t} vs {n} ns");
        }
        let mean = ns.iter().sum::<f64>() / 3.0;
        assert!((r["avg_ns"].as_f64().unwrap() - mean).abs() <= 1.0, "avg_ns is the mean");
        let mean_ts = ts.iter().sum::<f64>() / 3.0;
        let sd_ts = (ts.iter().map(|t| (t - mean_ts).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((r["avg_ts"].as_f64().unwrap() - mean_ts).abs() <= 1e-6 * mean_ts);
        assert!((r["stddev_ts"].as_f64().unwrap() - sd_ts).abs() <= 1e-6 * mean_ts.max(1.0), "sample standard deviation");
    }
    let tests: Vec<(u64, u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            let g = |k: &str| r[k].as_u64().unwrap();
            (g("n_threads"), g("n_depth"), g("n_prompt"), g("n_gen"))
        })
        .collect();
    assert_eq!(
        tests,
        vec![
            (1, 0, 16, 0),
            (1, 0, 0, 4),
            (1, 0, 8, 2),
            (1, 32, 16, 0),
            (1, 32, 0, 4),
            (1, 32, 8, 2),
            (2, 0, 16, 0),
            (2, 0, 0, 4),
            (2, 0, 8, 2),
            (2, 32, 16, 0),
            (2, 32, 0, 4),
            (2, 32, 8, 2)
        ]
    );
}

#[test]
fn markdown_table_and_clex_at_depth() {
    // A CLEX model at a depth beyond L (64): the bucket changes during the prefill.
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/clex-tiny-random.gguf");
    let out = clex_run()
        .args(["bench", model.to_str().unwrap(), "-p", "8", "-n", "4", "-d", "100", "-r", "2", "-t", "1", "--rope-scaling", "clex,none"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    assert!(lines[0].starts_with("| model ") && lines[0].contains(" test |") && lines[0].contains(" t/s |"), "{text}");
    for test in ["pp8 @ d100", "tg4 @ d100"] {
        assert_eq!(lines.iter().filter(|l| l.contains(test)).count(), 2, "{test} for clex and none:\n{text}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let out = clex_run().args(["bench", "/nonexistent/model.gguf", "-p", "8", "-n", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "a missing file: {}", String::from_utf8_lossy(&out.stderr));
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/clex-tiny-random.gguf");
    // -d beyond the CLEX model's hard limit L·T = 512.
    let out = clex_run().args(["bench", model.to_str().unwrap(), "-p", "8", "-n", "0", "-d", "600", "-r", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "beyond L·T: {}", String::from_utf8_lossy(&out.stderr));
}
