//! The RoPE plan of a session: which scaling is in force, the ggml rope arguments,
//! and, for bucketed scalings, the bucket of a length and its frequency factors.

use crate::model::Model;
use ggml_sys::safe::RopeArgs;

/// What the user asked for (CLI flags / API options).
#[derive(Debug, Clone, Default)]
pub struct RopeSettings {}

/// Resolved RoPE behaviour for one session.
#[derive(Debug, Clone)]
pub struct RopePlan {
    args: RopeArgs,
    /// The model's own `rope_freqs` factors, if any.
    base_factors: Option<Vec<f32>>,
}

impl RopePlan {
    /// Resolves `settings` against the model for a context of `n_ctx` tokens.
    pub fn new(model: &Model, _settings: &RopeSettings, _n_ctx: usize) -> Result<Self, String> {
        let hp = &model.hparams;
        let args = RopeArgs {
            n_dims: hp.n_rot as i32,
            mode: hp.arch.rope_mode(),
            n_ctx_orig: hp.n_ctx_train as i32,
            freq_base: hp.rope_freq_base,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
        };
        Ok(Self { args, base_factors: model.rope_freqs.clone() })
    }

    /// The rope arguments of every forward.
    pub fn args(&self) -> RopeArgs {
        self.args
    }

    /// The bucket for a sequence of `n_tokens` (1 when the scaling has none).
    pub fn bucket(&self, _n_tokens: usize) -> Result<u32, String> {
        Ok(1)
    }

    /// Frequency factors of bucket `t` (None: plain RoPE).
    pub fn freq_factors(&self, _t: u32) -> Option<Vec<f32>> {
        self.base_factors.clone()
    }

    /// Factor on attention scores for `n_kv` keys (CLEX log_scale), else 1.
    pub fn q_scale(&self, _n_kv: usize) -> f32 {
        1.0
    }

    /// Factors that rotate keys from bucket `from`'s basis to `to`'s: the rotation
    /// by the difference of the two frequency vectors. None when they are equal.
    pub fn delta_factors(&self, from: u32, to: u32) -> Option<Vec<f32>> {
        let n = self.args.n_dims as usize / 2;
        let ones = vec![1.0f32; n];
        let a = self.freq_factors(from).unwrap_or_else(|| ones.clone());
        let b = self.freq_factors(to).unwrap_or(ones);
        if a == b {
            return None;
        }
        // angle = pos·θ_j/ff_j; the delta rotation has 1/ff = 1/ff_to − 1/ff_from.
        Some(a.iter().zip(&b).map(|(&fa, &fb)| 1.0 / (1.0 / fb - 1.0 / fa)).collect())
    }

    /// Rope arguments for a delta rotation (no interpolation, no extra magnitude).
    pub fn delta_args(&self) -> RopeArgs {
        RopeArgs { freq_scale: 1.0, ext_factor: 0.0, attn_factor: 1.0, ..self.args }
    }
}
