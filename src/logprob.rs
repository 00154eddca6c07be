//! Logit-row math: max, argmax, Σexp kernels, and the perplexity hot loop
//! ([`token_nlls`], [`PplStats`]). The sampler shares the row kernels.
//!
//! For each row of logits, `nll = log Σ_j exp(x_j − max) − (x_t − max)`. The max is taken
//! in f32 (exact); the differences are formed in f64 (exact for f32 inputs), exponentiated
//! four lanes at a time by a range-reduced polynomial good to ~1e-15 relative
//! (`exp_nonpos_f64x4`) and summed in f64: rows agree with a plain float64 reference to
//! ~1e-13, far inside the 1e-6 budget. The f32 path the sampler uses runs ~2.5× faster
//! but measured 2.5e-7 error on 151936-logit rows, and its bound (argument rounding grows
//! with |x − max|) leaves no margin; the `bench_token_nlls` test measures both. Rows run
//! in parallel with `rayon`.

use rayon::prelude::*;
use wide::bytemuck::cast;
use wide::{f32x8, f64x4, u32x8, u64x4};

/// Chunk length for splitting one very long row across threads.
const CHUNK: usize = 64 * 1024;
/// Rows shorter than this are processed on the calling thread as one chunk. A single row
/// is memory-bound: on the 2-core dev box a rayon split of a 151936-logit row was slower
/// than one thread (max 34 vs 26 µs, top-40 106 vs 33 µs), so only huge rows are split.
const PAR_MIN: usize = 512 * 1024;

/// Maps `f(chunk_start, chunk)` over a row — one chunk below [`PAR_MIN`], else fixed
/// [`CHUNK`]s in parallel — returning per-chunk results in order (deterministic).
pub(crate) fn map_chunks<T: Send>(xs: &[f32], f: impl Fn(usize, &[f32]) -> T + Sync) -> Vec<T> {
    if xs.len() < PAR_MIN {
        return vec![f(0, xs)];
    }
    xs.par_chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| f(i * CHUNK, c))
        .collect()
}

/// Eight floats as a vector (`c.len()` must be 8).
pub(crate) fn lanes(c: &[f32]) -> f32x8 {
    f32x8::from(<[f32; 8]>::try_from(c).expect("8 lanes"))
}

/// Largest value of a slice on the calling thread (−∞ for an empty slice). Four
/// accumulators hide the latency of `max`, so the loop runs at memory speed.
pub(crate) fn chunk_max(xs: &[f32]) -> f32 {
    let mut it = xs.chunks_exact(32);
    let mut acc = [f32x8::splat(f32::NEG_INFINITY); 4];
    for c in &mut it {
        for (a, part) in acc.iter_mut().zip(c.chunks_exact(8)) {
            *a = a.max(lanes(part));
        }
    }
    let acc = acc[0].max(acc[1]).max(acc[2].max(acc[3]));
    let tail = it.remainder().iter().copied();
    acc.to_array()
        .into_iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Largest logit of a row.
pub fn max_logit(logits: &[f32]) -> f32 {
    map_chunks(logits, |_, c| chunk_max(c))
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Index of the largest logit; ties go to the lowest index. Returns 0 for an empty or
/// all-NaN row. One pass over memory: a 1024-float block is re-scanned (from L1) only
/// when it holds a new maximum.
pub fn argmax(logits: &[f32]) -> u32 {
    let parts = map_chunks(logits, |start, c| {
        let mut best: Option<(f32, usize)> = None;
        for (b, block) in c.chunks(1024).enumerate() {
            let m = chunk_max(block);
            if best.is_none_or(|(bm, _)| m > bm) {
                if let Some(i) = block.iter().position(|&x| x == m) {
                    best = Some((m, start + b * 1024 + i));
                }
            }
        }
        best
    });
    let mut best: Option<(f32, usize)> = None;
    for (m, i) in parts.into_iter().flatten() {
        if best.is_none_or(|(bm, _)| m > bm) {
            best = Some((m, i));
        }
    }
    best.map_or(0, |(_, i)| i as u32)
}

/// 1/n! for n = 11 down to 0: Taylor coefficients of exp, for Horner's scheme.
#[rustfmt::skip]
const INV_FACT: [f64; 12] = [
    1.0 / 39_916_800.0, 1.0 / 3_628_800.0, 1.0 / 362_880.0, 1.0 / 40_320.0, 1.0 / 5040.0,
    1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0,
];

/// exp(d) for d ≤ 0 in f64, four lanes at a time, to ~1e-15 relative.
///
/// Range reduction d = r·ln2 + f with |f| ≤ ln2/2 (ln2 split hi/lo as in fdlibm, so r·ln2_hi
/// is exact), a degree-11 Taylor polynomial for exp(f) (truncation < 1e-14), and 2^r
/// written straight into the exponent bits. Inputs below −700 are clamped to −700
/// (exp(−700) ≈ 1e−304, negligible against a row's largest term, 1); NaN propagates.
/// Measured ~2× faster than `wide`'s `f64x4::exp`, which also handles overflow and
/// subnormals (1478 vs 570–742 rows/s of 151936 logits, one thread).
#[inline]
pub(crate) fn exp_nonpos_f64x4(d: f64x4) -> f64x4 {
    const MAGIC: f64 = 4_503_599_627_370_496.0 + 1023.0; // 2^52 + exponent bias
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let floor = f64x4::splat(-700.0);
    let d = d.simd_lt(floor).select(floor, d);
    // Adding MAGIC rounds d·log2(e) to an integer r and leaves r + 1023 in the low bits.
    let t = d.mul_add(f64x4::splat(std::f64::consts::LOG2_E), f64x4::splat(MAGIC));
    let r = t - f64x4::splat(MAGIC);
    let f = r.mul_neg_add(f64x4::splat(LN2_LO), r.mul_neg_add(f64x4::splat(LN2_HI), d));
    let p = INV_FACT[1..]
        .iter()
        .fold(f64x4::splat(INV_FACT[0]), |p, &c| {
            p.mul_add(f, f64x4::splat(c))
        });
    let scale: f64x4 = cast(cast::<f64x4, u64x4>(t) << 52);
    p * scale
}

/// Cephes `expf` polynomial: exp(f) ≈ 1 + f + f²·P(f) on |f| ≤ ln2/2, highest term first.
#[rustfmt::skip]
const EXPF_POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// exp(d) for d ≤ 0 in f32, eight lanes at a time (Cephes `expf` polynomial, ~2 ulp),
/// the same construction as [`exp_nonpos_f64x4`]; inputs below −87 are clamped to −87.
/// For sampling probabilities, where f32 accuracy is ample.
#[inline]
pub(crate) fn exp_nonpos_f32x8(d: f32x8) -> f32x8 {
    const MAGIC: f32 = 8_388_608.0 + 127.0; // 2^23 + exponent bias
    let floor = f32x8::splat(-87.0);
    let d = d.simd_lt(floor).select(floor, d);
    let t = d.mul_add(f32x8::splat(std::f32::consts::LOG2_E), f32x8::splat(MAGIC));
    let r = t - f32x8::splat(MAGIC);
    let f = r.mul_neg_add(
        f32x8::splat(-2.121_944_4e-4),
        r.mul_neg_add(f32x8::splat(0.693_359_4), d),
    );
    let p = EXPF_POLY[1..]
        .iter()
        .fold(f32x8::splat(EXPF_POLY[0]), |p, &k| {
            p.mul_add(f, f32x8::splat(k))
        });
    let p = p.mul_add(f * f, f + f32x8::splat(1.0));
    let scale: f32x8 = cast(cast::<f32x8, u32x8>(t) << 23);
    p * scale
}

/// Σ exp(x − max) over a row with f32 exponentials; lane sums are flushed to f64 every
/// 256 values, so the total is good to ~1e-7 relative for any vocabulary.
pub(crate) fn sum_exp_f32(xs: &[f32], max: f32) -> f64 {
    let m = f32x8::splat(max);
    let mut total = 0.0f64;
    for block in xs.chunks(256) {
        let mut it = block.chunks_exact(8);
        let mut acc = f32x8::ZERO;
        for c in &mut it {
            acc += exp_nonpos_f32x8(lanes(c) - m);
        }
        total += acc.to_array().iter().map(|&v| f64::from(v)).sum::<f64>();
        total += it
            .remainder()
            .iter()
            .map(|&x| f64::from((x - max).exp()))
            .sum::<f64>();
    }
    total
}

/// Σ exp(x − max) over a row, in f64 throughout.
fn sum_exp_f64(row: &[f32], max: f32) -> f64 {
    let m = f64::from(max);
    let mv = f64x4::splat(m);
    let (mut acc0, mut acc1) = (f64x4::ZERO, f64x4::ZERO);
    let mut it = row.chunks_exact(8);
    for c in &mut it {
        let x: [f64; 8] = std::array::from_fn(|j| f64::from(c[j]));
        acc0 += exp_nonpos_f64x4(f64x4::new([x[0], x[1], x[2], x[3]]) - mv);
        acc1 += exp_nonpos_f64x4(f64x4::new([x[4], x[5], x[6], x[7]]) - mv);
    }
    let tail: f64 = it
        .remainder()
        .iter()
        .map(|&x| (f64::from(x) - m).exp())
        .sum();
    (acc0 + acc1).reduce_add() + tail
}

/// Negative log-probability of `target` under softmax(`row`).
///
/// `+∞` when the target's logit is −∞ or every logit is −∞; NaN if the row holds NaN or +∞.
pub fn row_nll(row: &[f32], target: usize) -> f64 {
    let max = chunk_max(row);
    let xt = row[target];
    if max == f32::NEG_INFINITY || xt == f32::NEG_INFINITY {
        return f64::INFINITY;
    }
    sum_exp_f64(row, max).ln() - (f64::from(xt) - f64::from(max))
}

/// `−log softmax(row i)[targets[i]]` for each row of a row-major `[targets.len(), n_vocab]`
/// logits matrix (row i is the prediction for `targets[i]`). Parallel over rows.
///
/// # Panics
/// If `logits.len() != targets.len() * n_vocab` or a target is `>= n_vocab`.
pub fn token_nlls(logits: &[f32], n_vocab: usize, targets: &[u32]) -> Vec<f64> {
    assert_eq!(
        logits.len(),
        targets.len() * n_vocab,
        "logits must hold one n_vocab row per target"
    );
    assert!(
        targets.iter().all(|&t| (t as usize) < n_vocab),
        "target token id out of range"
    );
    if n_vocab == 0 {
        return Vec::new();
    }
    logits
        .par_chunks(n_vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| row_nll(row, t as usize))
        .collect()
}

/// Running perplexity statistics, accumulated as llama-perplexity does: Σnll, Σnll², N.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PplStats {
    /// Σ nll over scored tokens.
    pub sum_nll: f64,
    /// Σ nll² over scored tokens.
    pub sum_nll2: f64,
    /// Number of scored tokens.
    pub count: u64,
}

impl PplStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one token's negative log-likelihood.
    pub fn add(&mut self, nll: f64) {
        self.sum_nll += nll;
        self.sum_nll2 += nll * nll;
        self.count += 1;
    }

    /// Adds many negative log-likelihoods (e.g. the output of [`token_nlls`]).
    pub fn extend(&mut self, nlls: &[f64]) {
        for &v in nlls {
            self.add(v);
        }
    }

    /// Merges statistics gathered elsewhere.
    pub fn merge(&mut self, other: &PplStats) {
        self.sum_nll += other.sum_nll;
        self.sum_nll2 += other.sum_nll2;
        self.count += other.count;
    }

    /// Mean negative log-likelihood (NaN when empty).
    pub fn mean_nll(&self) -> f64 {
        self.sum_nll / self.count as f64
    }

    /// Perplexity, `exp(mean nll)` (NaN when empty).
    pub fn ppl(&self) -> f64 {
        self.mean_nll().exp()
    }

    /// Standard error of the perplexity exactly as llama-perplexity's "Final estimate:
    /// PPL = X +/- E": with m = Σnll/N and v = Σnll²/N − m², `E = sqrt(v/(N−1)) · ppl`.
    /// `None` when N < 2 or v ≤ 0 (where llama-perplexity prints an error instead).
    pub fn ppl_error(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let m = self.sum_nll / n;
        let v = self.sum_nll2 / n - m * m;
        (v > 0.0).then(|| (v / (n - 1.0)).sqrt() * m.exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The f32 variant (f32 differences and exponentials, f64 total), for the accuracy
    /// and speed comparison in the benchmark.
    fn row_nll_f32exp(row: &[f32], target: usize) -> f64 {
        let max = chunk_max(row);
        sum_exp_f32(row, max).ln() - (f64::from(row[target]) - f64::from(max))
    }

    /// Plain float64 reference: max, Σexp, log.
    fn naive(row: &[f32], t: usize) -> f64 {
        let max = row
            .iter()
            .map(|&x| x as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        sum.ln() - (row[t] as f64 - max)
    }

    /// Logits ~ scale · (uniform − 0.5) + a few spikes, like a real LM head's spread.
    fn rows(n_rows: usize, n_vocab: usize, scale: f32, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut u = move || (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        let mut l: Vec<f32> = (0..n_rows * n_vocab).map(|_| scale * (u() - 0.5)).collect();
        for r in 0..n_rows {
            for _ in 0..5 {
                let j = (u() * n_vocab as f32) as usize % n_vocab;
                l[r * n_vocab + j] += 15.0 * u();
            }
        }
        let t = (0..n_rows)
            .map(|_| (u() * n_vocab as f32) as u32 % n_vocab as u32)
            .collect();
        (l, t)
    }

    #[test]
    fn vector_exp_is_f64_accurate() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let d = -(i as f64) * 0.0035 - (i % 7) as f64 * 1e-9;
            let got = exp_nonpos_f64x4(f64x4::splat(d)).to_array()[0];
            worst = worst.max(((got - d.exp()) / d.exp()).abs());
        }
        assert!(worst < 1e-14, "max relative error {worst:e}");
        let v = exp_nonpos_f64x4(f64x4::new([f64::NEG_INFINITY, 0.0, f64::NAN, -1e6])).to_array();
        assert!(
            v[0] < 1e-300 && v[1] == 1.0 && v[2].is_nan() && v[3] < 1e-300,
            "{v:?}"
        );
    }

    #[test]
    fn vector_exp_f32_is_close() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let d = -(i as f32) * 0.000_43;
            let got = exp_nonpos_f32x8(f32x8::splat(d)).to_array()[0] as f64;
            let want = (d as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 5e-7, "max relative error {worst:e}");
    }

    #[test]
    fn max_and_argmax() {
        let (mut l, _) = rows(1, 151_936, 10.0, 5);
        l[100_000] = 50.0;
        l[120_000] = 50.0;
        assert_eq!((argmax(&l), max_logit(&l)), (100_000, 50.0));
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[]), 0);
        let big: Vec<f32> = (0..1_100_000).map(|i| (i % 1000) as f32).collect();
        assert_eq!(
            (argmax(&big), max_logit(&big)),
            (999, 999.0),
            "parallel path"
        );
        let s = sum_exp_f32(&l, 50.0);
        let want: f64 = l.iter().map(|&x| (x as f64 - 50.0).exp()).sum();
        assert!((s / want - 1.0).abs() < 1e-6, "{s} vs {want}");
    }

    #[test]
    fn matches_f64_reference_on_32000_vocab() {
        for (scale, seed) in [(4.0, 1), (20.0, 2), (60.0, 3)] {
            let (l, t) = rows(24, 32_000, scale, seed);
            let got = token_nlls(&l, 32_000, &t);
            for (i, (&g, &tt)) in got.iter().zip(&t).enumerate() {
                let want = naive(&l[i * 32_000..(i + 1) * 32_000], tt as usize);
                assert!((g - want).abs() < 1e-9, "row {i}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn odd_vocab_sizes_and_single_row() {
        for n in [1usize, 3, 7, 8, 9, 17, 151_936] {
            let (l, t) = rows(1, n, 10.0, n as u64);
            let got = token_nlls(&l, n, &t);
            assert_eq!(got.len(), 1);
            assert!((got[0] - naive(&l, t[0] as usize)).abs() < 1e-9, "n={n}");
        }
        // One-token vocabulary: probability 1.
        assert_eq!(token_nlls(&[3.5], 1, &[0]), vec![0.0]);
        assert!(token_nlls(&[], 5, &[]).is_empty());
    }

    #[test]
    fn negative_infinity_logits() {
        let ninf = f32::NEG_INFINITY;
        // Masked entries contribute nothing: two live logits equal → nll = ln 2.
        let row = [ninf, 1.0, ninf, 1.0, ninf, ninf, ninf, ninf, ninf, ninf];
        let got = token_nlls(&row, 10, &[1]);
        assert!((got[0] - std::f64::consts::LN_2).abs() < 1e-12);
        // Target masked → +inf; all masked → +inf.
        assert_eq!(token_nlls(&row, 10, &[0]), vec![f64::INFINITY]);
        assert_eq!(token_nlls(&[ninf; 9], 9, &[4]), vec![f64::INFINITY]);
    }

    #[test]
    fn ppl_stats_match_llama_perplexity_formula() {
        let nlls = [1.0, 2.0, 3.0, 2.5];
        let mut s = PplStats::new();
        s.extend(&nlls);
        let n = 4.0;
        let m: f64 = nlls.iter().sum::<f64>() / n;
        let v = nlls.iter().map(|x| x * x).sum::<f64>() / n - m * m;
        assert!((s.ppl() - m.exp()).abs() < 1e-12);
        assert!((s.ppl_error().unwrap() - (v / (n - 1.0)).sqrt() * m.exp()).abs() < 1e-12);
        let (mut a, mut b) = (PplStats::new(), PplStats::new());
        a.extend(&nlls[..2]);
        b.extend(&nlls[2..]);
        a.merge(&b);
        assert_eq!(a, s);
        let mut one = PplStats::new();
        one.add(1.0);
        assert_eq!(one.ppl_error(), None);
    }

    #[test]
    #[ignore = "micro-benchmark; run with --ignored --nocapture"]
    fn bench_token_nlls() {
        let n_vocab = 151_936;
        let n_rows = 256;
        let (l, t) = rows(n_rows, n_vocab, 20.0, 9);
        let _ = token_nlls(&l, n_vocab, &t); // warm up the pool
        let reps = 4;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            std::hint::black_box(token_nlls(&l, n_vocab, &t));
        }
        let secs = start.elapsed().as_secs_f64();
        let par = (reps * n_rows) as f64 / secs;
        let time_rows = |f: &dyn Fn(&[f32], usize) -> f64| {
            let s = std::time::Instant::now();
            let v: Vec<f64> = (0..n_rows)
                .map(|i| f(&l[i * n_vocab..(i + 1) * n_vocab], t[i] as usize))
                .collect();
            (n_rows as f64 / s.elapsed().as_secs_f64(), v)
        };
        let (f64_rate, exact) = time_rows(&|r, t| row_nll(r, t));
        let (f32_rate, approx) = time_rows(&|r, t| row_nll_f32exp(r, t));
        let (naive_rate, reference) = time_rows(&|r, t| naive(r, t));
        let err = |v: &[f64]| {
            v.iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        println!(
            "token_nlls vocab {n_vocab}: {par:.0} rows/s on {} threads; one thread: f64x4 {f64_rate:.0} rows/s (max err {:.1e}), \
             f32x8 {f32_rate:.0} rows/s (max err {:.1e}), scalar libm f64 {naive_rate:.0} rows/s",
            rayon::current_num_threads(),
            err(&exact),
            err(&approx),
        );
    }
}
