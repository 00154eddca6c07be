//! CLEX (Continuous Length EXtrapolation) frequency table.
//!
//! CLEX replaces RoPE's fixed inverse frequencies θ_j by a table z(t) that depends on an
//! integer "scale factor" bucket t = ceil(n / L). The table is the solution of a small
//! neural ODE in log space, y = ln z:
//!
//! ```text
//! dy/dt = act((y + ln θᴺᵀᴷ(2t−1)) · U) · D + ξ(t),   y(1) = ln θ
//! θᴺᵀᴷ_j(α) = B^(−2j/d) · α^(−2j/(d−2)),          ξ_j(t) = −4j / ((d−2)(2t−1))
//! ```
//!
//! with U `[d/2][p·d]`, D `[p·d][d/2]` (row-vector × matrix products), `act` tanh or SiLU and
//! B = 10000 (the reference never passes its rope base to the time embedding). With D = 0
//! the ODE integrates to NTK scaling with α = 2t − 1 ([`ntk_closed_form`]).
//!
//! [`ClexTable::solve`] integrates it once with fixed-step RK4 (torchdiffeq's 3/8 rule, as
//! the reference) in f64, and keeps z(t) for t = 1..=T. The runtime then uses the table as
//! ggml `freq_factors` ([`ClexTable::freq_factors`]); bucket t = 1 is plain RoPE.
//!
//! Background and the reference's exact behaviour: `docs/clex-reference.md` in the shared
//! folder (section 1).

use wide::bytemuck::{cast, cast_slice, cast_slice_mut};
use wide::{f64x4, i64x4};

/// The ODE activation, `rope_scaling.act` in a CLEX config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClexAct {
    /// `tanh` (the 2024 reference default).
    Tanh,
    /// SiLU, `x·sigmoid(x)` (hard-coded by the October 2023 code; use it when `act` is absent).
    Silu,
}

impl ClexAct {
    /// Parses `"tanh"` or `"silu"` (ASCII case-insensitive, surrounding spaces ignored).
    pub fn parse(s: &str) -> Result<ClexAct, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tanh" => Ok(ClexAct::Tanh),
            "silu" => Ok(ClexAct::Silu),
            other => Err(format!("unknown CLEX activation {other:?} (tanh|silu)")),
        }
    }

    /// The config spelling: `"tanh"` or `"silu"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClexAct::Tanh => "tanh",
            ClexAct::Silu => "silu",
        }
    }
}

/// CLEX hyper-parameters, as found in a CLEX model's `config.json` (`rope_scaling` and
/// top-level keys) or the equivalent GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ClexParams {
    /// Rotary dimension d (head_dim for LLaMA); the table has d/2 frequencies. Even, ≥ 4.
    pub head_dim: usize,
    /// T = `max_factor`: the table covers buckets t = 1..=T; the context limit is L·T.
    pub max_factor: u32,
    /// p = `param_factor`: the ODE hidden width is p·d.
    pub param_factor: u32,
    /// The ODE activation.
    pub act: ClexAct,
    /// Solver step h (`time_dt`, 0.01 in every release): `round(1/h)` RK4 steps per unit of t.
    pub time_dt: f32,
    /// B, the base of the NTK time embedding inside the ODE: 10000 for every released model,
    /// whatever `rope_theta` is.
    pub ntk_base: f32,
    /// L = `max_position_embeddings` of the base model, the bucket width.
    pub orig_ctx: u32,
    /// Whether queries are scaled by [`log_scale_factor`] (config `log_scale`).
    pub log_scale: bool,
}

impl ClexParams {
    /// Checks the scalar parameters (the solver calls this too).
    pub fn validate(&self) -> Result<(), String> {
        let (d, h, b) = (self.head_dim, self.time_dt, self.ntk_base);
        let problem = if d < 4 || !d.is_multiple_of(2) {
            format!("head_dim (rotary d) must be even and >= 4, got {d}")
        } else if self.max_factor < 1 || self.param_factor < 1 || self.orig_ctx < 1 {
            let (t, p, l) = (self.max_factor, self.param_factor, self.orig_ctx);
            format!("max_factor T, param_factor p and orig_ctx L must be >= 1, got {t}, {p}, {l}")
        } else if !(h.is_finite() && h >= 1e-4 && h <= 1.0) {
            format!("time_dt must be in [1e-4, 1], got {h}")
        } else if !(b.is_finite() && b > 1.0) {
            format!("ntk_base must be finite and > 1, got {b}")
        } else {
            return Ok(());
        };
        Err(format!("CLEX {problem}"))
    }

    /// RK4 steps per unit of t: `round(1 / time_dt)` (at least 1).
    pub fn steps_per_unit(&self) -> u32 {
        ((1.0 / self.time_dt as f64).round() as u32).max(1)
    }
}

/// What [`ClexTable::bucket_for`] does with a sequence longer than L·T.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Return an error (the reference has no cos/sin rows beyond L·T).
    Refuse,
    /// Keep going with t = T (an extension; not reference behaviour).
    Clamp,
}

/// The bucket t for a forward over `n_tokens` keys in total (cached + new):
/// `ceil(n / L)`, and 1 for n ≤ L (including n = 0). Not clamped to T; see
/// [`ClexTable::bucket_for`]. `orig_ctx` = 0 is treated as 1.
pub fn bucket(n_tokens: usize, orig_ctx: u32) -> u32 {
    let l = orig_ctx.max(1) as u64;
    let t = (n_tokens as u64).div_ceil(l).max(1);
    t.min(u32::MAX as u64) as u32
}

/// The CLEX `log_scale` query multiplier for a forward with `n_kv` keys in total:
/// `f32(ln n) / f32(ln L)`, each natural log taken in f64 and rounded to f32, then divided in
/// f32 (as the reference fixture defines it). It is below 1 for n < L and 0 at n = 1;
/// n = 0 is treated as 1. For L < 2 (no meaningful ratio) it returns 1.
pub fn log_scale_factor(n_kv: usize, orig_ctx: u32) -> f32 {
    if orig_ctx < 2 {
        return 1.0;
    }
    let ln_n = (n_kv.max(1) as f64).ln() as f32;
    let ln_l = (orig_ctx as f64).ln() as f32;
    ln_n / ln_l
}

/// NTK-aware inverse frequencies with α = 2t − 1, i.e. the CLEX table for D = 0:
/// `θ_j · (2t−1)^(−2j/(d−2))` with d = 2·`inv_freq.len()`, computed in f64 and rounded.
/// t = 0 is treated as 1; d < 4 returns `inv_freq` unchanged.
pub fn ntk_closed_form(inv_freq: &[f32], t: u32) -> Vec<f32> {
    let d = 2 * inv_freq.len();
    let alpha = (2.0 * t.max(1) as f64 - 1.0).max(1.0);
    if d < 4 {
        return inv_freq.to_vec();
    }
    inv_freq
        .iter()
        .enumerate()
        .map(|(j, &th)| (th as f64 * alpha.powf(-2.0 * j as f64 / (d as f64 - 2.0))) as f32)
        .collect()
}

/// RoPE inverse frequencies as ggml uses them for `n_dims` rotary dims and base `freq_base`:
/// ggml multiplies by `theta_scale = powf(base, −2/n_dims)` (an f32) once per pair, so pair j
/// gets `theta_scale^j`. Returned in f64 (`theta_scale` rounded to f32, the power exact), so
/// callers can form freq factors without a second rounding.
pub fn ggml_inv_freq(freq_base: f32, n_dims: usize) -> Vec<f64> {
    let ts = (freq_base as f64).powf(-2.0 / n_dims as f64) as f32 as f64;
    (0..n_dims / 2).map(|j| ts.powi(j as i32)).collect()
}

/// The solved CLEX frequency table z(t) for t = 1..=T, plus what is needed to turn a row into
/// ggml freq factors and a sequence length into a bucket.
#[derive(Clone, Debug)]
pub struct ClexTable {
    head_dim: usize,
    max_factor: u32,
    orig_ctx: u32,
    log_scale: bool,
    /// The rope base that best fits the given inv_freq (least squares in log space), rounded
    /// to f32 as a GGUF stores it.
    rope_base: f32,
    /// Row t−1 is z(t), f64, len T·d/2.
    z64: Vec<f64>,
    /// The same in f32 for [`ClexTable::z`].
    z32: Vec<f32>,
}

impl ClexTable {
    /// Solves the CLEX ODE and keeps z(t) = exp y(t) for every integer t = 1..=T.
    ///
    /// * `inv_freq`: θ_j, len d/2 — the checkpoint's stored `inv_freq` when present
    ///   (y(1) = ln θ), else `rope_theta^(−2j/d)`.
    /// * `up`: U, row-major `[d/2][p·d]` (`ode_up_proj`); `down`: D, row-major `[p·d][d/2]`
    ///   (`ode_down_proj`). Upcast bf16/f16 checkpoints to f32 before calling.
    ///
    /// Fixed-step RK4 (3/8 rule) with `round(1/time_dt)` steps per unit of t, f64 state and
    /// arithmetic. Errors name the offending input: wrong lengths, non-finite or non-positive
    /// `inv_freq`, NaN/inf weights, or bad scalars (see [`ClexParams::validate`]).
    ///
    /// Cost: (T−1)·round(1/h) steps × 4 evaluations × 2·(d/2)·(p·d) multiply-adds: 4.1e8 for
    /// d = 128, T = 64, p = 1, h = 0.01, about 0.1 s on one core. Time is linear in 1/h: a
    /// caller may pass `time_dt` 0.1 (10× faster; tables still within 3.1e-5 of the reference).
    pub fn solve(
        params: &ClexParams,
        inv_freq: &[f32],
        up: &[f32],
        down: &[f32],
    ) -> Result<ClexTable, String> {
        params.validate()?;
        let d = params.head_dim;
        let d2 = d / 2;
        let m = params.param_factor as usize * d;
        let (up_shape, down_shape) = (format!("[{d2}][{m}]"), format!("[{m}][{d2}]"));
        check_len("inv_freq", inv_freq.len(), d2, "[d/2]")?;
        check_len("ode_up_proj", up.len(), d2 * m, &up_shape)?;
        check_len("ode_down_proj", down.len(), m * d2, &down_shape)?;
        if let Some(j) = inv_freq.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            let v = inv_freq[j];
            return Err(format!("CLEX inv_freq[{j}] = {v} is not finite and > 0"));
        }
        check_finite("ode_up_proj", up, m)?;
        check_finite("ode_down_proj", down, d2)?;

        let ode = Ode::new(params, up, down);
        let t_max = params.max_factor as usize;
        let mut z64 = Vec::with_capacity(t_max * d2);
        let ln_theta: Vec<f64> = inv_freq.iter().map(|&v| (v as f64).ln()).collect();
        let mut y = to_vecs(&ln_theta, padded_vecs(d2));
        z64.extend(inv_freq.iter().map(|&v| v as f64));
        let n = params.steps_per_unit() as usize;
        let h = 1.0 / n as f64;
        let mut ws = ode.work();
        for unit in 1..t_max {
            for s in 0..n {
                let t0 = unit as f64 + s as f64 * h;
                ode.rk4_38_step(&mut ws, &mut y, t0, h);
            }
            z64.extend(y.iter().flat_map(|v| v.to_array()).take(d2).map(f64::exp));
        }
        if let Some(i) = z64.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
            let (t, j, v) = (i / d2 + 1, i % d2, z64[i]);
            return Err(format!("CLEX ODE diverged: z({t})[{j}] = {v}"));
        }
        let z32 = z64.iter().map(|&v| v as f32).collect();
        Ok(ClexTable {
            head_dim: d,
            max_factor: params.max_factor,
            orig_ctx: params.orig_ctx,
            log_scale: params.log_scale,
            rope_base: fit_rope_base(inv_freq),
            z64,
            z32,
        })
    }

    /// Rotary dimension d.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// T, the largest bucket.
    pub fn max_factor(&self) -> u32 {
        self.max_factor
    }

    /// L, the bucket width.
    pub fn orig_ctx(&self) -> u32 {
        self.orig_ctx
    }

    /// Whether queries get [`log_scale_factor`] (the model's `log_scale` flag).
    pub fn log_scale(&self) -> bool {
        self.log_scale
    }

    /// L·T, the reference's hard context limit.
    pub fn max_tokens(&self) -> u64 {
        self.orig_ctx as u64 * self.max_factor as u64
    }

    /// The rope base fitted to the `inv_freq` given to [`ClexTable::solve`]; used by
    /// [`ClexTable::freq_factors`].
    pub fn rope_base(&self) -> f32 {
        self.rope_base
    }

    /// z(t), d/2 scaled inverse frequencies, for t in 1..=T. z(1) is the given `inv_freq`
    /// (inference uses plain RoPE at t = 1). Panics for t outside 1..=T.
    pub fn z(&self, t: u32) -> &[f32] {
        let d2 = self.head_dim / 2;
        let i = self.row(t);
        &self.z32[i * d2..(i + 1) * d2]
    }

    /// The ggml `ggml_rope_ext` `c` (freq_factors) argument for bucket t, for a graph that
    /// uses the base fitted to the table's `inv_freq` ([`ClexTable::rope_base`]):
    /// `ff_j = θ_j / z_j(t)` with θ_j as ggml computes it ([`ggml_inv_freq`]). `None` for
    /// t = 1 (plain RoPE). Panics for t outside 1..=T.
    pub fn freq_factors(&self, t: u32) -> Option<Vec<f32>> {
        self.freq_factors_for_base(t, self.rope_base)
    }

    /// As [`ClexTable::freq_factors`], for a graph whose `freq_base` is `freq_base` (e.g. a user
    /// override): ggml then rotates pair j at exactly z_j(t) whatever the base.
    pub fn freq_factors_for_base(&self, t: u32, freq_base: f32) -> Option<Vec<f32>> {
        let d2 = self.head_dim / 2;
        let i = self.row(t);
        if t == 1 {
            return None;
        }
        let theta = ggml_inv_freq(freq_base, self.head_dim);
        Some(
            self.z64[i * d2..(i + 1) * d2]
                .iter()
                .zip(&theta)
                .map(|(z, th)| (th / z) as f32)
                .collect(),
        )
    }

    /// The bucket for a forward over `n` keys in total: [`bucket`]`(n, L)`, and beyond L·T
    /// either an error naming n, L, T and L·T ([`Overflow::Refuse`]) or T ([`Overflow::Clamp`]).
    pub fn bucket_for(&self, n: usize, overflow: Overflow) -> Result<u32, String> {
        let t = bucket(n, self.orig_ctx);
        if t <= self.max_factor {
            return Ok(t);
        }
        match overflow {
            Overflow::Clamp => Ok(self.max_factor),
            Overflow::Refuse => {
                let (l, t, lt) = (self.orig_ctx, self.max_factor, self.max_tokens());
                Err(format!(
                    "{n} tokens exceed the CLEX limit L*T = {l}*{t} = {lt} tokens"
                ))
            }
        }
    }

    fn row(&self, t: u32) -> usize {
        let t_max = self.max_factor;
        assert!(
            t >= 1 && t <= t_max,
            "CLEX bucket t = {t} outside 1..={t_max}"
        );
        (t - 1) as usize
    }
}

/// Least-squares fit of ln θ_j = −(2j/d)·ln b over all j ≥ 1, rounded to f32.
fn fit_rope_base(inv_freq: &[f32]) -> f32 {
    let d = 2.0 * inv_freq.len() as f64;
    let (mut sxy, mut sxx) = (0.0f64, 0.0f64);
    for (j, &th) in inv_freq.iter().enumerate().skip(1) {
        let x = -2.0 * j as f64 / d;
        sxy += x * (th as f64).ln();
        sxx += x * x;
    }
    (sxy / sxx).exp() as f32
}

fn check_len(name: &str, got: usize, want: usize, shape: &str) -> Result<(), String> {
    match got == want {
        true => Ok(()),
        false => Err(format!(
            "CLEX {name} has {got} values, expected {shape} = {want}"
        )),
    }
}

fn check_finite(name: &str, w: &[f32], cols: usize) -> Result<(), String> {
    match w.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(format!(
            "CLEX {name}[{}][{}] = {} is not finite",
            i / cols,
            i % cols,
            w[i]
        )),
    }
}

/// Columns per weight tile: `TILE` vectors of 4, kept in registers while a tile's rows
/// stream through.
const TILE: usize = 4;
const TILE_LANES: usize = 4 * TILE;

/// The ODE right-hand side with weights packed for SIMD. Columns are padded with zeros to
/// a multiple of [`TILE_LANES`]: a padded hidden unit sees g = 0 and act(0) = 0 for both
/// activations; a padded frequency gets a zero derivative.
struct Ode {
    d2: usize,
    m: usize,
    act: ClexAct,
    /// U packed tile-major: tile, then d/2 rows of [`TILE`] vectors.
    up: Vec<f64x4>,
    /// D packed tile-major: tile, then p·d rows of [`TILE`] vectors.
    down: Vec<f64x4>,
    /// (−(2j/d)·ln B)·U: the α-independent part of ln θᴺᵀᴷ pushed through U.
    c0u: Vec<f64x4>,
    /// (−2j/(d−2))·U, multiplied by ln α.
    c1u: Vec<f64x4>,
    /// −2j/(d−2); ξ(t) = (2/α)·c1.
    c1: Vec<f64x4>,
}

/// Scratch buffers for one RK step.
struct Work {
    g: Vec<f64x4>,
    tmp: Vec<f64x4>,
    k: [Vec<f64x4>; 4],
}

/// Vectors needed for `n` lanes padded to whole tiles.
fn padded_vecs(n: usize) -> usize {
    n.div_ceil(TILE_LANES) * TILE
}

/// Packs a row-major `[rows][cols]` matrix tile-major (see [`Ode::up`]).
fn pack(src: &[f32], rows: usize, cols: usize) -> Vec<f64x4> {
    let q = padded_vecs(cols);
    let mut out = vec![f64x4::ZERO; rows * q];
    let lanes: &mut [f64] = cast_slice_mut(&mut out);
    for (r, row) in src.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let (tile, within) = (c / TILE_LANES, c % TILE_LANES);
            lanes[(tile * rows + r) * TILE_LANES + within] = v as f64;
        }
    }
    out
}

fn to_vecs(src: &[f64], q: usize) -> Vec<f64x4> {
    let mut out = vec![f64x4::ZERO; q];
    cast_slice_mut::<f64x4, f64>(&mut out)[..src.len()].copy_from_slice(src);
    out
}

/// `out += x · W` for W packed by [`pack`] with `x.len()` rows.
#[inline]
fn matvec_acc(x: &[f64], packed: &[f64x4], out: &mut [f64x4]) {
    let rows = x.len();
    for (tile, o) in packed
        .chunks_exact(rows * TILE)
        .zip(out.chunks_exact_mut(TILE))
    {
        let mut acc = [f64x4::ZERO; TILE];
        acc.copy_from_slice(o);
        for (w, &xr) in tile.chunks_exact(TILE).zip(x) {
            let xv = f64x4::splat(xr);
            for (a, wv) in acc.iter_mut().zip(w) {
                *a = xv.mul_add(*wv, *a);
            }
        }
        o.copy_from_slice(&acc);
    }
}

/// `e^u = s·(1 + q)` for `u ∈ [−708, 0]`, returning `(s, q)`: u = n·ln2 + r with
/// |r| ≤ ln2/2, `s = 2^n` built from its bits and `q = e^r − 1` from a degree-12 Taylor
/// polynomial (about 1 ulp). Keeping q separate lets callers form `e^u − 1` without
/// cancellation.
#[inline]
fn exp_split(u: f64x4) -> (f64x4, f64x4) {
    const MAGIC: f64 = 6755399441055744.0; // 1.5·2^52: adding it rounds to an integer
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let shifted = u.mul_add(f64x4::splat(std::f64::consts::LOG2_E), f64x4::splat(MAGIC));
    let n = shifted - f64x4::splat(MAGIC);
    let r = n.mul_neg_add(f64x4::splat(LN2_HI), u);
    let r = n.mul_neg_add(f64x4::splat(LN2_LO), r);
    // e^r − 1 = r·(1 + r/2! + r²/3! + … + r¹¹/12!), Horner (factorials are exact in f64).
    let mut fact = 479_001_600.0; // 12!
    let mut q = f64x4::splat(1.0 / fact);
    for k in (2..=12).rev() {
        fact /= k as f64;
        q = q.mul_add(r, f64x4::splat(1.0 / fact));
    }
    let q = q * r;
    // 2^n: n sits in the low mantissa bits of `shifted`.
    let n_int = cast::<f64x4, i64x4>(shifted) - cast::<f64x4, i64x4>(f64x4::splat(MAGIC));
    let scale = cast::<i64x4, f64x4>((n_int + i64x4::splat(1023)) << 52);
    (scale, q)
}

/// tanh, accurate to a few ulp: `−expm1(−2|x|) / (2 + expm1(−2|x|))` with the sign of x.
#[inline]
fn tanh4(x: f64x4) -> f64x4 {
    let (s, q) = exp_split(f64x4::splat(-2.0) * x.abs().fast_min(f64x4::splat(20.0)));
    let em1 = s.mul_add(q, s - f64x4::ONE);
    (-em1 / (f64x4::splat(2.0) + em1)).flip_signs(x)
}

/// SiLU `x·σ(x)` with e = exp(−|x|): σ(|x|) = 1/(1+e), σ(−|x|) = e/(1+e).
#[inline]
fn silu4(x: f64x4) -> f64x4 {
    let (s, q) = exp_split(-x.abs().fast_min(f64x4::splat(700.0)));
    let e = s.mul_add(q, s);
    let num = x.simd_lt(f64x4::ZERO).select(e, f64x4::ONE);
    x * num / (f64x4::ONE + e)
}

impl Ode {
    fn new(p: &ClexParams, up: &[f32], down: &[f32]) -> Ode {
        let d = p.head_dim;
        let d2 = d / 2;
        let m = p.param_factor as usize * d;
        let upv = pack(up, d2, m);
        let ln_b = (p.ntk_base as f64).ln();
        let c0: Vec<f64> = (0..d2).map(|j| -2.0 * j as f64 / d as f64 * ln_b).collect();
        let c1: Vec<f64> = (0..d2)
            .map(|j| -2.0 * j as f64 / (d as f64 - 2.0))
            .collect();
        let mut c0u = vec![f64x4::ZERO; padded_vecs(m)];
        let mut c1u = vec![f64x4::ZERO; padded_vecs(m)];
        matvec_acc(&c0, &upv, &mut c0u);
        matvec_acc(&c1, &upv, &mut c1u);
        Ode {
            d2,
            m,
            act: p.act,
            up: upv,
            down: pack(down, m, d2),
            c0u,
            c1u,
            c1: to_vecs(&c1, padded_vecs(d2)),
        }
    }

    fn work(&self) -> Work {
        let v = || vec![f64x4::ZERO; padded_vecs(self.d2)];
        Work {
            g: vec![f64x4::ZERO; padded_vecs(self.m)],
            tmp: v(),
            k: [v(), v(), v(), v()],
        }
    }

    /// `out = f(t, y)`; t ≥ 1 always (the reference's `t < 1` branch never runs).
    fn rhs(&self, t: f64, y: &[f64x4], g: &mut [f64x4], out: &mut [f64x4]) {
        let alpha = (2.0 * t - 1.0).max(1.0);
        let la = f64x4::splat(alpha.ln());
        for ((gv, a), b) in g.iter_mut().zip(&self.c0u).zip(&self.c1u) {
            *gv = la.mul_add(*b, *a);
        }
        matvec_acc(&cast_slice(y)[..self.d2], &self.up, g);
        for gv in g.iter_mut() {
            *gv = match self.act {
                ClexAct::Tanh => tanh4(*gv),
                ClexAct::Silu => silu4(*gv),
            };
        }
        let xi = f64x4::splat(2.0 / alpha);
        for (o, c) in out.iter_mut().zip(&self.c1) {
            *o = xi * *c;
        }
        matvec_acc(&cast_slice(g)[..self.m], &self.down, out);
    }

    /// One step of torchdiffeq's `rk4` (the 3/8 rule) from t0 with step h.
    fn rk4_38_step(&self, w: &mut Work, y: &mut [f64x4], t0: f64, h: f64) {
        let Work { g, tmp, k } = w;
        let [k1, k2, k3, k4] = k;
        let (h3, hv) = (f64x4::splat(h / 3.0), f64x4::splat(h));
        let n = y.len();
        self.rhs(t0, y, g, k1);
        for i in 0..n {
            tmp[i] = h3.mul_add(k1[i], y[i]);
        }
        self.rhs(t0 + h / 3.0, tmp, g, k2);
        for i in 0..n {
            tmp[i] = hv.mul_add(k2[i], h3.mul_neg_add(k1[i], y[i]));
        }
        self.rhs(t0 + 2.0 * h / 3.0, tmp, g, k3);
        for i in 0..n {
            tmp[i] = hv.mul_add(k1[i] - k2[i] + k3[i], y[i]);
        }
        self.rhs(t0 + h, tmp, g, k4);
        let (h8, three) = (f64x4::splat(h / 8.0), f64x4::splat(3.0));
        for i in 0..n {
            y[i] = h8.mul_add(three.mul_add(k2[i] + k3[i], k1[i] + k4[i]), y[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_activations_match_std() {
        let (mut et, mut es) = (0.0f64, 0.0f64);
        for i in -4000..=4000 {
            let x = i as f64 * 0.01 + 0.003;
            let v = f64x4::new([x, -x, x * 1e-6, x * 15.0]);
            let (ta, sa) = (tanh4(v).to_array(), silu4(v).to_array());
            for (k, x) in v.to_array().into_iter().enumerate() {
                let (a, b) = (ta[k], sa[k]);
                et = et.max((a - x.tanh()).abs() / x.tanh().abs().max(1e-300));
                let s = x / (1.0 + (-x).exp());
                es = es.max((b - s).abs() / s.abs().max(1e-300));
            }
        }
        assert!(et < 1e-14 && es < 1e-14, "tanh err {et:e}, silu err {es:e}");
    }
}
