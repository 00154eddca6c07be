//! CLEX frequency tables and bucket rule against the reference fixtures.
//!
//! Fixtures: `$CLEX_FIXTURES`, else `../shared/fixtures` from the crate root:
//! `clex-vectors/*.json` (six tables from the reference layer) and `clex-tiny/` (a tiny
//! CLEX-LLaMA checkpoint with its `reference.json`).

use std::path::PathBuf;

use clex::clex::{
    bucket, ggml_inv_freq, log_scale_factor, ntk_closed_form, ClexAct, ClexParams, ClexTable,
    Overflow,
};
use clex::rope::{rope_for_bucket, ModelRope, RopeOverrides, RopeScaling};
use serde_json::Value;

/// Per-entry relative tolerance for tables (the fixtures' float32 reference is within ~3e-5
/// of an exact solution).
const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    match std::env::var_os("CLEX_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// All numbers of a (nested) JSON array, flattened, as f32 (the fixtures store f32 values).
fn f32s(v: &Value) -> Vec<f32> {
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_f64().expect("number") as f32),
            other => panic!("expected numbers, found {other}"),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn uint(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("missing integer {key} in {v}"))
}

fn float(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("missing number {key} in {v}"))
}

/// Max relative difference of `table` rows t = 1..=T against `want` (row-major [T][d/2]).
fn max_rel_err(table: &ClexTable, want: &[f32]) -> f64 {
    let d2 = table.head_dim() / 2;
    assert_eq!(
        want.len(),
        table.max_factor() as usize * d2,
        "reference table shape"
    );
    let mut worst = 0.0f64;
    for t in 1..=table.max_factor() {
        let row = &want[(t as usize - 1) * d2..t as usize * d2];
        for (j, (&got, &exp)) in table.z(t).iter().zip(row).enumerate() {
            let err = (got as f64 - exp as f64).abs() / (exp as f64).abs();
            assert!(
                err <= TOL,
                "z({t})[{j}] = {got}, reference {exp} (rel err {err:e})"
            );
            worst = worst.max(err);
        }
    }
    worst
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs() / (*y as f64).abs())
        .fold(0.0, f64::max)
}

/// freq_factors(1) is None; for t ≥ 2, ggml's θ_j / ff_j gives back z_j(t).
fn check_freq_factors(table: &ClexTable, rope_theta: f32) {
    assert_eq!(
        table.rope_base(),
        rope_theta,
        "rope base fitted from inv_freq"
    );
    assert_eq!(table.freq_factors(1), None, "t = 1 must be plain RoPE");
    let theta = ggml_inv_freq(rope_theta, table.head_dim());
    for t in 2..=table.max_factor() {
        let ff = table.freq_factors(t).expect("factors for t >= 2");
        assert_eq!(ff.len(), table.head_dim() / 2);
        for (j, (f, z)) in ff.iter().zip(table.z(t)).enumerate() {
            let back = theta[j] / *f as f64;
            let err = (back / *z as f64 - 1.0).abs();
            assert!(err < 1e-6, "t={t} j={j}: θ/ff = {back}, z = {z}");
        }
    }
}

struct Vectors {
    name: String,
    json: Value,
    params: ClexParams,
    table: ClexTable,
}

fn load_vectors() -> Vec<Vectors> {
    let dir = fixtures().join("clex-vectors");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert_eq!(
        paths.len(),
        6,
        "expected six vector files in {}",
        dir.display()
    );
    paths
        .into_iter()
        .map(|path| {
            let json = read_json(&path);
            let c = &json["config"];
            let params = ClexParams {
                head_dim: uint(c, "head_dim") as usize,
                max_factor: uint(c, "max_factor") as u32,
                param_factor: uint(c, "param_factor") as u32,
                act: ClexAct::parse(c["act"].as_str().expect("act")).unwrap(),
                time_dt: float(c, "time_dt") as f32,
                ntk_base: float(c, "time_embedding_base") as f32,
                orig_ctx: uint(c, "max_position_embeddings") as u32,
                log_scale: false,
            };
            let (inv, up, down) = (
                &json["inv_freq"],
                &json["ode_up_proj"],
                &json["ode_down_proj"],
            );
            let table = ClexTable::solve(&params, &f32s(inv), &f32s(up), &f32s(down))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            Vectors {
                name,
                json,
                params,
                table,
            }
        })
        .collect()
}

#[test]
fn vector_tables_match_reference() {
    for v in load_vectors() {
        let err = max_rel_err(&v.table, &f32s(&v.json["freq_table"]));
        // The test can tell tables apart: the NTK closed form is far from these (except the
        // zero-D file, where it is the answer).
        let t_max = v.params.max_factor;
        let ntk = ntk_closed_form(&f32s(&v.json["inv_freq"]), t_max);
        let ntk_diff = rel_diff(v.table.z(t_max), &ntk);
        let ref_ntk = float(&v.json["checks"], "max_rel_diff_vs_NTK_alpha_2t_minus_1");
        println!(
            "{}: max rel err {err:.3e}; vs NTK at T {ntk_diff:.3e} (ref {ref_ntk:.3e})",
            v.name
        );
        if v.name.contains("zerodown") {
            assert!(ntk_diff < TOL);
        } else {
            assert!(ntk_diff > 0.1 && (ntk_diff - ref_ntk).abs() < 1e-3 * ref_ntk.max(1.0));
        }
        check_freq_factors(&v.table, float(&v.json["config"], "rope_theta") as f32);
    }
}

#[test]
fn zero_down_is_ntk_closed_form() {
    let v = load_vectors()
        .into_iter()
        .find(|v| v.name.contains("zerodown"))
        .expect("zerodown file");
    assert!(f32s(&v.json["ode_down_proj"]).iter().all(|x| *x == 0.0));
    let inv = f32s(&v.json["inv_freq"]);
    let stored = f32s(&v.json["freq_table"]);
    let d2 = inv.len();
    let mut worst = 0.0f64;
    for t in 1..=v.params.max_factor {
        let closed = ntk_closed_form(&inv, t);
        let solved = rel_diff(v.table.z(t), &closed);
        let reference = rel_diff(&stored[(t as usize - 1) * d2..t as usize * d2], &closed);
        assert!(
            solved < TOL && reference < TOL,
            "t={t}: ours {solved:e}, stored {reference:e}"
        );
        worst = worst.max(solved);
    }
    assert_eq!(ntk_closed_form(&inv, 1), inv);
    println!("zerodown: max rel diff solved vs closed form {worst:.3e}");
}

#[test]
fn bucket_rule_matches_every_stored_case() {
    let mut cases = 0;
    for v in load_vectors() {
        let (l, t_max) = (v.params.orig_ctx, v.params.max_factor);
        for case in v.json["t_selection"].as_array().expect("t_selection") {
            let (n, want) = (uint(case, "seq_len") as usize, uint(case, "t") as u32);
            assert_eq!(
                v.table.bucket_for(n, Overflow::Clamp),
                Ok(want),
                "{}: n = {n}",
                v.name
            );
            let limit = l as usize * t_max as usize;
            if n <= limit {
                assert_eq!(bucket(n, l), want, "n = {n}");
                assert_eq!(v.table.bucket_for(n, Overflow::Refuse), Ok(want));
            } else {
                let err = v.table.bucket_for(n, Overflow::Refuse).unwrap_err();
                for part in [
                    n.to_string(),
                    l.to_string(),
                    t_max.to_string(),
                    limit.to_string(),
                ] {
                    assert!(err.contains(&part), "{err:?} should mention {part}");
                }
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 54);
    assert_eq!(bucket(0, 4096), 1);
}

fn safetensor_f32(st: &safetensors::SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name} dtype");
    let data = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    (data.collect(), view.shape().to_vec())
}

#[test]
fn clex_tiny_table_from_checkpoint() {
    let dir = fixtures().join("clex-tiny");
    let config = read_json(&dir.join("hf/config.json"));
    let reference = read_json(&dir.join("reference.json"));
    let bytes = std::fs::read(dir.join("hf/model.safetensors")).expect("model.safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors header");
    let prefix = "model.clex_layer";
    let (inv, inv_shape) = safetensor_f32(&st, &format!("{prefix}.inv_freq"));
    let (up, up_shape) = safetensor_f32(&st, &format!("{prefix}.proj_func.ode_up_proj"));
    let (down, down_shape) = safetensor_f32(&st, &format!("{prefix}.proj_func.ode_down_proj"));

    let rs = &config["rope_scaling"];
    assert_eq!(rs["type"], "clex");
    let params = ClexParams {
        head_dim: uint(&config, "head_dim") as usize,
        max_factor: uint(rs, "max_factor") as u32,
        param_factor: uint(rs, "param_factor") as u32,
        act: ClexAct::parse(rs["act"].as_str().unwrap_or("silu")).unwrap(),
        time_dt: rs["time_dt"].as_f64().unwrap_or(0.01) as f32,
        ntk_base: 10000.0,
        orig_ctx: uint(&config, "max_position_embeddings") as u32,
        log_scale: config["log_scale"].as_bool().unwrap_or(false),
    };
    let (d2, m) = (
        params.head_dim / 2,
        params.param_factor as usize * params.head_dim,
    );
    assert_eq!(
        (inv_shape, up_shape, down_shape),
        (vec![d2], vec![d2, m], vec![m, d2])
    );
    let table = ClexTable::solve(&params, &inv, &up, &down).expect("solve");

    let z = &reference["table"]["z"];
    let err = max_rel_err(&table, &f32s(z));
    let t_max = params.max_factor;
    let ntk_diff = rel_diff(table.z(t_max), &ntk_closed_form(&inv, t_max));
    let ref_ntk = float(&reference["table"], "max_rel_diff_vs_ntk_closed_form_at_T");
    println!("clex-tiny: max rel err {err:.3e}; vs NTK at T {ntk_diff:.4} (ref {ref_ntk:.4})");
    assert!((ntk_diff - ref_ntk).abs() < 1e-3);
    assert_eq!(
        table.z(1),
        &inv[..],
        "z(1) = exp(ln θ) rounds back to inv_freq"
    );
    check_freq_factors(&table, float(&config, "rope_theta") as f32);
    assert!(!table.log_scale());

    // Buckets the reference used (L = 64, T = 8), and its hard limit L·T = 512.
    let mut seen = Vec::new();
    for case in reference["full_forward"].as_array().expect("full_forward") {
        seen.push((uint(case, "n") as usize, uint(case, "t") as u32));
    }
    for step in reference["greedy_cached"]["steps"]
        .as_array()
        .expect("steps")
    {
        seen.push((uint(step, "kv_len") as usize, uint(step, "t") as u32));
    }
    for (n, t) in seen {
        assert_eq!(table.bucket_for(n, Overflow::Refuse), Ok(t), "n = {n}");
    }
    assert!(table.bucket_for(513, Overflow::Refuse).is_err());
    assert_eq!(table.bucket_for(513, Overflow::Clamp), Ok(8));

    // The same table through the rope API: bucket 3 factors equal the table's; t = 1 plain.
    let model = ModelRope::new(params.head_dim as i32, 0, 10000.0, params.orig_ctx);
    let user = RopeOverrides::default();
    let at = |t| rope_for_bucket(&model, &user, RopeScaling::Clex, t, Some(&table)).unwrap();
    assert_eq!(at(1).freq_factors, None);
    assert_eq!(at(3).freq_factors, table.freq_factors(3));
    assert_eq!(at(3).params.freq_scale, 1.0);
    assert!(rope_for_bucket(&model, &user, RopeScaling::Clex, 9, Some(&table)).is_err());
}

#[test]
fn solve_rejects_bad_inputs() {
    let p = ClexParams {
        head_dim: 8,
        max_factor: 3,
        param_factor: 1,
        act: ClexAct::Tanh,
        time_dt: 0.01,
        ntk_base: 10000.0,
        orig_ctx: 16,
        log_scale: true,
    };
    let inv: Vec<f32> = (0..4)
        .map(|j| 10000f32.powf(-2.0 * j as f32 / 8.0))
        .collect();
    let (up, down) = (vec![0.1f32; 32], vec![0.01f32; 32]);
    let ok = ClexTable::solve(&p, &inv, &up, &down).expect("valid input");
    assert_eq!(
        (ok.max_factor(), ok.max_tokens(), ok.log_scale()),
        (3, 48, true)
    );
    let err = |p: &ClexParams, inv: &[f32], up: &[f32], down: &[f32]| {
        ClexTable::solve(p, inv, up, down).expect_err("should be rejected")
    };
    assert!(err(&p, &inv[..3], &up, &down).contains("inv_freq"));
    assert!(err(&p, &inv, &up[..31], &down).contains("ode_up_proj"));
    assert!(err(&p, &inv, &up, &down[..30]).contains("ode_down_proj"));
    let mut nan = up.clone();
    nan[9] = f32::NAN;
    assert!(err(&p, &inv, &nan, &down).contains("ode_up_proj[1][1]"));
    let mut inf = down.clone();
    inf[5] = f32::INFINITY;
    assert!(err(&p, &inv, &up, &inf).contains("ode_down_proj[1][1]"));
    assert!(err(&p, &[0.0; 4], &up, &down).contains("inv_freq[0]"));
    for bad in [
        ClexParams {
            max_factor: 0,
            ..p.clone()
        },
        ClexParams {
            time_dt: 0.0,
            ..p.clone()
        },
        ClexParams {
            time_dt: 1.5,
            ..p.clone()
        },
        ClexParams {
            time_dt: f32::NAN,
            ..p.clone()
        },
        ClexParams {
            head_dim: 7,
            ..p.clone()
        },
        ClexParams {
            head_dim: 2,
            ..p.clone()
        },
    ] {
        assert!(ClexTable::solve(&bad, &inv, &up, &down).is_err(), "{bad:?}");
    }
    assert_eq!(ClexAct::parse(" SiLU "), Ok(ClexAct::Silu));
    assert_eq!(ClexAct::parse("tanh"), Ok(ClexAct::Tanh));
    assert!(ClexAct::parse("relu").is_err());
    assert_eq!(log_scale_factor(1, 16), 0.0);
    assert_eq!(log_scale_factor(16, 16), 1.0);
    assert_eq!(
        log_scale_factor(256, 16),
        (256f64.ln() as f32) / (16f64.ln() as f32)
    );
}
