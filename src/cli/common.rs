//! Turning flags into validated options, shared by the commands.

use super::args::{ModelArgs, RopeArgs, SampleArgs};
use clex::clex::Overflow;
use clex::gguf::GgufFile;
use clex::model::{load_clex, HParams, Model, ModelOptions};
use clex::rope::{RopeOverrides, RopeScaling};
use clex::sample::SamplerConfig;
use clex::session::{BucketPolicy, RopeSettings, SessionOptions};
use clex::{Error, Result};
use std::fmt::Write as _;
use std::path::PathBuf;

/// The model path from `MODEL` or `-m`.
pub fn model_path(a: &ModelArgs) -> Result<PathBuf> {
    match (&a.model_pos, &a.model) {
        (Some(p), None) | (None, Some(p)) => Ok(p.clone()),
        (Some(_), Some(_)) => Err(Error::Other("give the model once: as MODEL or with -m, not both".into())),
        (None, None) => Err(Error::Other("no model given (clex-run MODEL.gguf … or -m MODEL.gguf)".into())),
    }
}

/// RoPE settings from flags.
pub fn rope_settings(r: &RopeArgs) -> Result<RopeSettings> {
    let scaling = r.rope_scaling.as_deref().map(str::parse::<RopeScaling>).transpose().map_err(Error::Other)?;
    if r.clex_t.is_some() && r.clex_from_ctx {
        return Err(Error::Other("--clex-t and --clex-from-ctx are exclusive".into()));
    }
    let bucket = match (r.clex_t, r.clex_from_ctx) {
        (Some(t), _) => BucketPolicy::Fixed(t),
        (None, true) => BucketPolicy::FromContext,
        _ => BucketPolicy::PerLength,
    };
    Ok(RopeSettings {
        scaling,
        overrides: RopeOverrides {
            freq_base: r.rope_freq_base,
            freq_scale: r.rope_freq_scale,
            yarn_orig_ctx: r.yarn_orig_ctx,
            yarn_ext_factor: r.yarn_ext_factor,
            yarn_attn_factor: r.yarn_attn_factor,
            yarn_beta_fast: r.yarn_beta_fast,
            yarn_beta_slow: r.yarn_beta_slow,
        },
        overflow: Some(if r.clex_overflow == "clamp" { Overflow::Clamp } else { Overflow::Refuse }),
        bucket,
    })
}

/// Session options from flags.
pub fn session_options(a: &ModelArgs) -> Result<SessionOptions> {
    let mut o = SessionOptions {
        n_ctx: a.ctx_size,
        n_ubatch: a.ubatch_size.max(1),
        flash_attn: a.flash_attn != "off",
        type_k: clex::kv::parse_cache_type(&a.cache_type_k)?,
        type_v: clex::kv::parse_cache_type(&a.cache_type_v)?,
        rope: rope_settings(&a.rope)?,
        ..Default::default()
    };
    if let Some(t) = a.threads {
        if t == 0 {
            return Err(Error::Other("-t must be at least 1".into()));
        }
        o.n_threads = t;
    }
    Ok(o)
}

/// Sampler settings from flags (a random seed unless one is given).
pub fn sampler_config(s: &SampleArgs) -> SamplerConfig {
    let seed = s.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(42)
    });
    SamplerConfig {
        temp: s.temp,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n,
        seed,
    }
}

/// Loads the model named by the flags.
pub fn load_model(a: &ModelArgs) -> Result<Model> {
    let path = model_path(a)?;
    let opts = ModelOptions { repack: !a.no_repack, n_gpu_layers: a.n_gpu_layers, device: a.device.clone(), ..Default::default() };
    Model::load_with(&path, &opts).map_err(|e| match e {
        Error::Gguf(g) => Error::Model(format!("{}: invalid GGUF: {g}", path.display())),
        other => other,
    })
}

/// The RoPE/CLEX section of `inspect`.
pub fn rope_report(f: &GgufFile) -> Result<String> {
    let mut s = String::new();
    let hp = match HParams::from_gguf(f) {
        Ok(hp) => hp,
        Err(e) => {
            let _ = writeln!(s, "(not a runnable model: {e})");
            return Ok(s);
        }
    };
    let _ = writeln!(s, "architecture {} · {} layers · {} heads ({} KV) · head_dim {} · rotary dims {} · mode {}",
        hp.arch.name(), hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_rot,
        if hp.arch.rope_mode() == 0 { "normal" } else { "neox" });
    let _ = writeln!(s, "rope base {} · scaling {:?} · training context {}", hp.rope_freq_base, hp.rope_scaling_type, hp.n_ctx_train);
    match load_clex(f, &hp)? {
        None => {
            let _ = writeln!(s, "CLEX: no (plain model; --rope-scaling clex-ntk gives CLEX's dynamics with D = 0)");
        }
        Some(t) => {
            let _ = writeln!(s, "CLEX: L = {} · T = {} · hard limit L·T = {} tokens · log_scale {}",
                t.orig_ctx(), t.max_factor(), t.max_tokens(), t.log_scale());
            let _ = writeln!(s, "table z_j(t) (first and last pairs):");
            for tt in 1..=t.max_factor() {
                let z = t.z(tt);
                let _ = writeln!(s, "  t={tt:<3} tokens ≤ {:<8} z0={:.6e} z1={:.6e} … z{}={:.6e} z{}={:.6e}",
                    t.orig_ctx() as u64 * tt as u64, z[0], z[1], z.len() - 2, z[z.len() - 2], z.len() - 1, z[z.len() - 1]);
            }
        }
    }
    Ok(s)
}
