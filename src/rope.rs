//! RoPE scaling as ggml rope parameters.
//!
//! Every scaling kind ends up as the scalar arguments of `ggml_rope_ext` ([`RopeParams`])
//! plus an optional per-pair frequency-factor vector (ggml's `c` argument: pair j rotates at
//! `θ_j / ff_j`, θ_j = `freq_base^(−2j/n_dims)`). [`rope_for_bucket`] computes both:
//!
//! | kind | parameters | freq factors for bucket t |
//! |---|---|---|
//! | `none` | freq_scale 1 | none |
//! | `linear` | freq_scale = 1/factor (llama.cpp) | none |
//! | `yarn` | freq_scale = 1/factor, ext_factor 1, attn_factor as llama.cpp | none |
//! | `dynamic-ntk` | plain | NTK with α = t: `α^(2j/(d−2))` |
//! | `clex-ntk` | plain | NTK with α = 2t − 1 (CLEX with D = 0) |
//! | `clex` | plain | `θ_j / z_j(t)` from the [`ClexTable`] |
//!
//! The last three are *bucketed*: t = ceil(n / L) for n keys in total ([`bucket_for`]), with
//! t = 1 being plain RoPE. The runtime calls [`rope_for_bucket`] whenever t changes and
//! re-rotates the whole key cache with the new factors.
//!
//! A model's own `rope_freqs` tensor (Llama 3.1, [`ModelRope::freq_factors`]) stays in force
//! for every kind: the vector passed to ggml is the elementwise product of the model's factors
//! and the bucket's, so pair j rotates at `θ_j / (model_j · bucket_j)`.

use std::fmt;
use std::str::FromStr;

use crate::clex::{self, ClexTable};

/// The RoPE scaling schemes this runtime supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeScaling {
    /// Plain RoPE; any frequency scale is ignored (as llama.cpp's `none`).
    None,
    /// Position interpolation: freq_scale = 1/factor.
    Linear,
    /// YaRN (llama.cpp's implementation in ggml).
    Yarn,
    /// NTK-aware scaling with α = t = ceil(n/L), changing per bucket.
    DynamicNtk,
    /// NTK-aware scaling with α = 2t − 1: CLEX without its learned correction.
    ClexNtk,
    /// CLEX: the solved ODE table.
    Clex,
}

impl RopeScaling {
    /// All kinds, in CLI order.
    pub const ALL: [RopeScaling; 6] = [
        RopeScaling::None,
        RopeScaling::Linear,
        RopeScaling::Yarn,
        RopeScaling::DynamicNtk,
        RopeScaling::ClexNtk,
        RopeScaling::Clex,
    ];

    /// The CLI / GGUF spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RopeScaling::None => "none",
            RopeScaling::Linear => "linear",
            RopeScaling::Yarn => "yarn",
            RopeScaling::DynamicNtk => "dynamic-ntk",
            RopeScaling::ClexNtk => "clex-ntk",
            RopeScaling::Clex => "clex",
        }
    }

    /// Whether the frequencies depend on the bucket t (and the key cache must be re-rotated
    /// when t changes).
    pub fn is_bucketed(self) -> bool {
        matches!(
            self,
            RopeScaling::DynamicNtk | RopeScaling::ClexNtk | RopeScaling::Clex
        )
    }

    /// The model's own kind from GGUF `{arch}.rope.scaling.type`. As llama.cpp, a missing key
    /// means `linear` (which with no `rope.scaling.factor` is plain RoPE).
    pub fn from_gguf(value: Option<&str>) -> Result<RopeScaling, String> {
        value.map_or(Ok(RopeScaling::Linear), str::parse)
    }
}

impl fmt::Display for RopeScaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RopeScaling {
    type Err = String;

    /// Parses `none|linear|yarn|dynamic-ntk|clex-ntk|clex` (ASCII case-insensitive; `_` is
    /// accepted for `-`).
    fn from_str(s: &str) -> Result<RopeScaling, String> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        RopeScaling::ALL
            .into_iter()
            .find(|k| k.as_str() == norm)
            .ok_or_else(|| {
                format!("unknown RoPE scaling {s:?} (none|linear|yarn|dynamic-ntk|clex-ntk|clex)")
            })
    }
}

/// Exactly the scalar arguments of `ggml_rope_ext` (the wrapper's own type).
pub use ggml_sys::safe::RopeArgs as RopeParams;

/// A model's RoPE settings, as read from GGUF (llama.cpp key names in the field docs).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRope {
    /// `{arch}.rope.dimension_count` (defaults to head_dim).
    pub n_dims: i32,
    /// 0 normal (LLaMA), 2 NeoX.
    pub mode: i32,
    /// `{arch}.rope.freq_base` (llama.cpp default 10000).
    pub freq_base: f32,
    /// `{arch}.context_length`.
    pub n_ctx_train: u32,
    /// `{arch}.rope.scaling.original_context_length`.
    pub orig_ctx: Option<u32>,
    /// `{arch}.rope.scaling.factor` (or the older `rope.scale_linear`); 0 means none.
    pub scaling_factor: Option<f32>,
    /// `{arch}.rope.scaling.attn_factor`: multiplies the final attn_factor.
    pub attn_factor: Option<f32>,
    /// `{arch}.rope.scaling.yarn_log_multiplier` (mscale_all_dim).
    pub yarn_log_mul: Option<f32>,
    /// The `rope_freqs.weight` tensor (n_dims/2 values), if the model has one.
    pub freq_factors: Option<Vec<f32>>,
}

impl ModelRope {
    /// Settings with only the required values; every optional key absent.
    pub fn new(n_dims: i32, mode: i32, freq_base: f32, n_ctx_train: u32) -> ModelRope {
        ModelRope {
            n_dims,
            mode,
            freq_base,
            n_ctx_train,
            orig_ctx: None,
            scaling_factor: None,
            attn_factor: None,
            yarn_log_mul: None,
            freq_factors: None,
        }
    }

    /// L for bucketing and YaRN: `rope.scaling.original_context_length`, else the training
    /// context (llama.cpp's `n_ctx_orig_yarn` before user overrides).
    pub fn orig_ctx(&self) -> u32 {
        self.orig_ctx
            .filter(|&n| n != 0)
            .unwrap_or(self.n_ctx_train)
    }
}

/// User overrides with llama.cpp's CLI meaning. `None` (or llama.cpp's "unset" value: 0 for
/// base/scale/orig-ctx, negative for the YaRN floats) falls back to the model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RopeOverrides {
    /// `--rope-freq-base`.
    pub freq_base: Option<f32>,
    /// `--rope-freq-scale` (`--rope-scale N` is 1/N).
    pub freq_scale: Option<f32>,
    /// `--yarn-orig-ctx`.
    pub yarn_orig_ctx: Option<u32>,
    /// `--yarn-ext-factor`.
    pub yarn_ext_factor: Option<f32>,
    /// `--yarn-attn-factor` (overwritten whenever ext_factor ≠ 0, as in llama.cpp).
    pub yarn_attn_factor: Option<f32>,
    /// `--yarn-beta-fast` (default 32).
    pub yarn_beta_fast: Option<f32>,
    /// `--yarn-beta-slow` (default 1).
    pub yarn_beta_slow: Option<f32>,
}

/// What the graph needs for one bucket: the scalars and the optional `c` tensor contents.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeSetup {
    /// The scalar `ggml_rope_ext` arguments.
    pub params: RopeParams,
    /// Per-pair freq factors (len n_dims/2), or `None` for plain frequencies.
    pub freq_factors: Option<Vec<f32>>,
}

/// The bucket t for a forward over `n_tokens` keys in total: `ceil(n/L)` (min 1) for bucketed
/// kinds, 1 otherwise. L is the model's original window ([`ModelRope::orig_ctx`]; for CLEX
/// models `max_position_embeddings`). Not clamped: for `clex` use [`ClexTable::bucket_for`],
/// which applies the L·T limit.
pub fn bucket_for(scaling: RopeScaling, n_tokens: usize, orig_ctx: u32) -> u32 {
    if scaling.is_bucketed() {
        clex::bucket(n_tokens, orig_ctx)
    } else {
        1
    }
}

/// NTK-aware freq factors for α: `ff_j = α^(2j/(n_dims−2))`, i.e. base·α^(d/(d−2)).
/// `None` for α = 1.
pub fn ntk_freq_factors(n_dims: usize, alpha: f64) -> Option<Vec<f32>> {
    if alpha == 1.0 || n_dims < 4 {
        return None;
    }
    let e = 2.0 / (n_dims as f64 - 2.0);
    Some(
        (0..n_dims / 2)
            .map(|j| alpha.powf(e * j as f64) as f32)
            .collect(),
    )
}

/// llama.cpp's YaRN magnitude: `1 + 0.1·mscale·ln(s)` for s > 1, else 1.
fn yarn_mscale(scale: f32, mscale: f32) -> f32 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// The ggml rope arguments and freq factors for `scaling` at bucket `t` (≥ 1; use 1 for the
/// non-bucketed kinds). `clex` must be given for [`RopeScaling::Clex`] and have
/// head_dim = n_dims; t must then be ≤ T.
///
/// Scalars follow llama.cpp (`llama_context` constructor): base and scale from the user if
/// set, else the model; `none` forces freq_scale 1; the model's `rope.scaling.factor` only
/// applies to `linear` and `yarn` (the bucketed kinds use freq_scale 1 unless the user sets
/// one); ext_factor defaults to 1 for `yarn` and 0 otherwise; when ext_factor ≠ 0 the
/// attn_factor becomes YaRN's mscale (with `yarn_log_mul`) divided by the
/// `1 + 0.1·ln(1/freq_scale)` that ggml multiplies in; the result is multiplied by the
/// model's `rope.scaling.attn_factor`. (CLEX's `log_scale` is a query scale, not a rope
/// argument: see [`clex::log_scale_factor`].)
pub fn rope_for_bucket(
    model: &ModelRope,
    user: &RopeOverrides,
    scaling: RopeScaling,
    t: u32,
    clex: Option<&ClexTable>,
) -> Result<RopeSetup, String> {
    if t == 0 {
        return Err("RoPE bucket t must be >= 1".into());
    }
    if model.n_dims < 2 || model.n_dims % 2 != 0 {
        return Err(format!(
            "RoPE n_dims must be even and >= 2, got {}",
            model.n_dims
        ));
    }
    let pos = |v: Option<f32>| v.filter(|x| *x != 0.0);
    let set = |v: Option<f32>| v.filter(|x| *x >= 0.0);
    let freq_base = pos(user.freq_base).unwrap_or(model.freq_base);
    let model_scale = match scaling {
        RopeScaling::Linear | RopeScaling::Yarn => {
            pos(model.scaling_factor).map_or(1.0, |f| 1.0 / f)
        }
        _ => 1.0,
    };
    let freq_scale = match scaling {
        RopeScaling::None => 1.0,
        _ => pos(user.freq_scale).unwrap_or(model_scale),
    };
    if !(freq_base.is_finite() && freq_base > 0.0 && freq_scale.is_finite() && freq_scale > 0.0) {
        return Err(format!(
            "RoPE freq_base {freq_base} and freq_scale {freq_scale} must be finite and > 0"
        ));
    }
    let n_ctx_orig = user
        .yarn_orig_ctx
        .filter(|&n| n != 0)
        .unwrap_or_else(|| model.orig_ctx());
    let default_ext = if scaling == RopeScaling::Yarn {
        1.0
    } else {
        0.0
    };
    let ext_factor = set(user.yarn_ext_factor).unwrap_or(default_ext);
    let mut attn_factor = set(user.yarn_attn_factor).unwrap_or(1.0);
    if ext_factor != 0.0 {
        let factor = 1.0 / freq_scale;
        attn_factor = match model.yarn_log_mul.filter(|m| *m != 0.0) {
            Some(all_dims) => yarn_mscale(factor, 1.0) / yarn_mscale(factor, all_dims),
            None => yarn_mscale(factor, 1.0),
        };
        attn_factor *= 1.0 / (1.0 + 0.1 * factor.ln());
    }
    attn_factor *= model.attn_factor.unwrap_or(1.0);
    let params = RopeParams {
        n_dims: model.n_dims,
        mode: model.mode,
        n_ctx_orig: n_ctx_orig.min(i32::MAX as u32) as i32,
        freq_base,
        freq_scale,
        ext_factor,
        attn_factor,
        beta_fast: set(user.yarn_beta_fast).unwrap_or(32.0),
        beta_slow: set(user.yarn_beta_slow).unwrap_or(1.0),
    };

    let n_dims = model.n_dims as usize;
    let bucket_ff = match scaling {
        RopeScaling::None | RopeScaling::Linear | RopeScaling::Yarn => None,
        RopeScaling::DynamicNtk | RopeScaling::ClexNtk if n_dims < 4 => {
            return Err(format!("{scaling} needs n_dims >= 4, got {n_dims}"));
        }
        RopeScaling::DynamicNtk => ntk_freq_factors(n_dims, t as f64),
        RopeScaling::ClexNtk => ntk_freq_factors(n_dims, 2.0 * t as f64 - 1.0),
        RopeScaling::Clex => {
            let table = clex.ok_or("clex RoPE scaling needs a CLEX table (the model has none)")?;
            if table.head_dim() != n_dims {
                return Err(format!(
                    "CLEX table has rotary dim {}, the model rotates {n_dims} dims",
                    table.head_dim()
                ));
            }
            if t > table.max_factor() {
                return Err(format!(
                    "CLEX bucket t = {t} exceeds max_factor T = {}",
                    table.max_factor()
                ));
            }
            table.freq_factors_for_base(t, freq_base)
        }
    };
    if let Some(m) = &model.freq_factors {
        if m.len() != n_dims / 2 {
            return Err(format!(
                "rope_freqs has {} values, expected n_dims/2 = {}",
                m.len(),
                n_dims / 2
            ));
        }
    }
    let freq_factors = match (model.freq_factors.as_ref(), bucket_ff) {
        (None, b) => b,
        (Some(m), None) => Some(m.clone()),
        (Some(m), Some(b)) => Some(m.iter().zip(&b).map(|(x, y)| x * y).collect()),
    };
    Ok(RopeSetup {
        params,
        freq_factors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama2() -> ModelRope {
        ModelRope::new(128, 0, 10000.0, 4096)
    }

    #[test]
    fn names_round_trip() {
        for k in RopeScaling::ALL {
            assert_eq!(k.to_string().parse::<RopeScaling>(), Ok(k));
        }
        assert_eq!("Dynamic_NTK".parse(), Ok(RopeScaling::DynamicNtk));
        assert!("longrope".parse::<RopeScaling>().is_err());
        assert_eq!(RopeScaling::from_gguf(None), Ok(RopeScaling::Linear));
    }

    #[test]
    fn llama_cpp_scalars() {
        let mut m = llama2();
        m.scaling_factor = Some(4.0);
        let none = RopeOverrides::default();
        let lin = rope_for_bucket(&m, &none, RopeScaling::Linear, 1, None).unwrap();
        assert_eq!((lin.params.freq_scale, lin.params.ext_factor), (0.25, 0.0));
        assert_eq!(lin.freq_factors, None);
        let plain = rope_for_bucket(&m, &none, RopeScaling::None, 1, None).unwrap();
        assert_eq!(plain.params.freq_scale, 1.0);
        let y = rope_for_bucket(&m, &none, RopeScaling::Yarn, 1, None)
            .unwrap()
            .params;
        assert_eq!(
            (y.ext_factor, y.beta_fast, y.beta_slow, y.n_ctx_orig),
            (1.0, 32.0, 1.0, 4096)
        );
        assert!((y.attn_factor - 1.0).abs() < 1e-6, "{}", y.attn_factor);
        let user = RopeOverrides {
            freq_base: Some(5e5),
            freq_scale: Some(0.5),
            yarn_orig_ctx: Some(8192),
            ..none
        };
        let y = rope_for_bucket(&m, &user, RopeScaling::Yarn, 1, None)
            .unwrap()
            .params;
        assert_eq!((y.freq_base, y.freq_scale, y.n_ctx_orig), (5e5, 0.5, 8192));
    }

    #[test]
    fn bucketed_factors() {
        let mut m = llama2();
        let none = RopeOverrides::default();
        for k in [RopeScaling::DynamicNtk, RopeScaling::ClexNtk] {
            let s = rope_for_bucket(&m, &none, k, 1, None).unwrap();
            assert_eq!(s.freq_factors, None, "{k} at t = 1");
        }
        let ff = rope_for_bucket(&m, &none, RopeScaling::ClexNtk, 3, None)
            .unwrap()
            .freq_factors
            .unwrap();
        assert_eq!((ff.len(), ff[0]), (64, 1.0));
        assert!((ff[63] / 5.0 - 1.0).abs() < 1e-6, "{}", ff[63]); // α = 5 at j = d/2 − 1
        let dy = rope_for_bucket(&m, &none, RopeScaling::DynamicNtk, 3, None)
            .unwrap()
            .freq_factors
            .unwrap();
        assert!((dy[63] / 3.0 - 1.0).abs() < 1e-6);
        m.freq_factors = Some(vec![2.0; 64]);
        let both = rope_for_bucket(&m, &none, RopeScaling::ClexNtk, 3, None)
            .unwrap()
            .freq_factors
            .unwrap();
        assert!(both.iter().zip(&ff).all(|(a, b)| *a == 2.0 * b));
        assert!(rope_for_bucket(&m, &none, RopeScaling::Clex, 2, None).is_err());
    }
}
