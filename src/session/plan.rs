//! The RoPE plan of a session: which scaling is in force, the ggml rope arguments,
//! and, for bucketed scalings (CLEX and its kin), the bucket of a length and its
//! frequency factors.

use crate::clex::{self, Overflow};
use crate::model::Model;
use crate::rope::{self, ModelRope, RopeOverrides, RopeScaling};
use ggml_sys::safe::RopeArgs;
use std::collections::HashMap;
use std::sync::Mutex;

/// How the CLEX bucket is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BucketPolicy {
    /// The reference's: t = ceil(n / L) of the sequence after each batch.
    #[default]
    PerLength,
    /// A fixed bucket for the whole session (`--clex-t`).
    Fixed(u32),
    /// The bucket of the context size, for the whole session (`--clex-from-ctx`).
    FromContext,
}

/// What the user asked for (CLI flags / API options).
#[derive(Debug, Clone, Default)]
pub struct RopeSettings {
    /// The scaling kind; `None` = the model's own.
    pub scaling: Option<RopeScaling>,
    /// llama.cpp-style overrides.
    pub overrides: RopeOverrides,
    /// Beyond L·T: refuse or clamp.
    pub overflow: Option<Overflow>,
    /// How buckets are chosen.
    pub bucket: BucketPolicy,
}

/// Resolved RoPE behaviour for one session.
#[derive(Debug)]
pub struct RopePlan {
    scaling: RopeScaling,
    model_rope: ModelRope,
    overrides: RopeOverrides,
    args: RopeArgs,
    /// L: the width of a bucket.
    orig_ctx: u32,
    overflow: Overflow,
    policy: BucketPolicy,
    n_ctx: usize,
    log_scale: bool,
    table: Option<clex::ClexTable>,
    cache: Mutex<HashMap<u32, Option<Vec<f32>>>>,
}

impl RopePlan {
    /// Resolves `settings` against the model for a context of `n_ctx` tokens.
    pub fn new(model: &Model, settings: &RopeSettings, n_ctx: usize) -> Result<Self, String> {
        let hp = &model.hparams;
        let scaling = match settings.scaling {
            Some(s) => s,
            None => RopeScaling::from_gguf(Some(&hp.rope_scaling_type))?,
        };
        let mut mr = ModelRope::new(hp.n_rot as i32, hp.arch.rope_mode(), hp.rope_freq_base, hp.n_ctx_train as u32);
        mr.orig_ctx = (hp.rope_orig_ctx > 0).then_some(hp.rope_orig_ctx as u32);
        mr.scaling_factor = (hp.rope_scaling_factor > 0.0).then_some(hp.rope_scaling_factor);
        mr.attn_factor = (hp.rope_attn_factor > 0.0).then_some(hp.rope_attn_factor);
        mr.freq_factors = model.rope_freqs.clone();
        let table = match scaling {
            RopeScaling::Clex => Some(
                model.clex.clone().ok_or("--rope-scaling clex needs a CLEX model (this GGUF has no CLEX tensors); try clex-ntk")?,
            ),
            _ => None,
        };
        let orig_ctx = match &table {
            Some(t) => t.orig_ctx(),
            None => settings.overrides.yarn_orig_ctx.filter(|&n| n > 0).unwrap_or_else(|| mr.orig_ctx()),
        };
        let max_bucket = table.as_ref().map(|t| t.max_factor());
        let overflow = settings.overflow.unwrap_or(Overflow::Refuse);
        let log_scale = table.as_ref().is_some_and(|t| t.log_scale());
        let setup = rope::rope_for_bucket(&mr, &settings.overrides, scaling, 1, table.as_ref())?;
        let args = setup.params;
        let plan = Self {
            scaling,
            model_rope: mr,
            overrides: settings.overrides,
            args,
            orig_ctx,
            overflow,
            policy: settings.bucket,
            n_ctx,
            log_scale,
            table,
            cache: Mutex::new(HashMap::new()),
        };
        // Loud limits up front: a context the scaling cannot cover is refused now.
        if let (Some(t_max), Overflow::Refuse) = (max_bucket, overflow) {
            let limit = orig_ctx as usize * t_max as usize;
            if n_ctx > limit {
                return Err(format!(
                    "-c {n_ctx} exceeds this CLEX model's hard limit L·T = {orig_ctx}·{t_max} = {limit} tokens \
                     (use -c {limit} or less, or --clex-overflow clamp to keep t = {t_max} beyond it)"
                ));
            }
        }
        if let BucketPolicy::Fixed(t) = plan.policy {
            if t == 0 || max_bucket.is_some_and(|m| t > m) {
                return Err(format!("--clex-t {t} is outside 1..={}", max_bucket.unwrap_or(u32::MAX)));
            }
        }
        Ok(plan)
    }

    /// The scaling in force.
    pub fn scaling(&self) -> RopeScaling {
        self.scaling
    }
    /// L, the bucket width.
    pub fn orig_ctx(&self) -> u32 {
        self.orig_ctx
    }
    /// The CLEX table, when CLEX is in force.
    pub fn table(&self) -> Option<&clex::ClexTable> {
        self.table.as_ref()
    }

    /// The rope arguments of every forward.
    pub fn args(&self) -> RopeArgs {
        self.args
    }

    /// The bucket for a sequence of `n_tokens` (1 when the scaling has none).
    pub fn bucket(&self, n_tokens: usize) -> Result<u32, String> {
        if !self.scaling.is_bucketed() {
            return Ok(1);
        }
        let n = match self.policy {
            BucketPolicy::Fixed(t) => return Ok(t),
            BucketPolicy::FromContext => self.n_ctx,
            BucketPolicy::PerLength => n_tokens,
        };
        match &self.table {
            Some(t) => t.bucket_for(n, self.overflow),
            None => Ok(clex::bucket(n, self.orig_ctx)),
        }
    }

    /// Frequency factors of bucket `t` (None: plain RoPE).
    pub fn freq_factors(&self, t: u32) -> Option<Vec<f32>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(t)
            .or_insert_with(|| {
                rope::rope_for_bucket(&self.model_rope, &self.overrides, self.scaling, t, self.table.as_ref())
                    .ok()
                    .and_then(|s| s.freq_factors)
            })
            .clone()
    }

    /// Factor on attention scores for `n_kv` keys (CLEX log_scale), else 1.
    pub fn q_scale(&self, n_kv: usize) -> f32 {
        if self.log_scale {
            clex::log_scale_factor(n_kv, self.orig_ctx)
        } else {
            1.0
        }
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
        // angle = pos·θ_j/ff_j; the delta rotation has 1/ff = 1/ff_to − 1/ff_from
        // (an infinite factor is a zero angle, which ggml computes exactly).
        Some(a.iter().zip(&b).map(|(&fa, &fb)| 1.0 / (1.0 / fb - 1.0 / fa)).collect())
    }

    /// Rope arguments for a delta rotation (no interpolation, no extra magnitude).
    pub fn delta_args(&self) -> RopeArgs {
        RopeArgs { freq_scale: 1.0, ext_factor: 0.0, attn_factor: 1.0, ..self.args }
    }
}
