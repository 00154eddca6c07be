//! Token sampling with llama.cpp's semantics.
//!
//! The chain is the one `llama-cli` builds by default (minus the samplers we do not
//! offer): repetition penalty → top-k → top-p → min-p → temperature → draw from the
//! remaining distribution. A temperature ≤ 0 short-circuits to greedy argmax over the
//! penalised logits (top-k/top-p/min-p always keep the best token, so this is the same
//! token llama.cpp would pick, with ties broken towards the lowest id).
//!
//! Randomness comes from [`ChaCha8Rng`] seeded with [`SamplerConfig::seed`]: the
//! ChaCha stream is specified and value-stable, so a seed gives the same tokens on every
//! run and platform (it does not reproduce llama.cpp's `mt19937` draws).
//!
//! The vocabulary-sized passes (max, argmax, Σexp, threshold top-k) are `wide`-vectorised;
//! the row kernels live in [`crate::logprob`], which splits only very long rows across
//! `rayon` threads (one row is memory-bound; see `PAR_MIN` there). Results never depend on
//! the thread count.

use std::collections::{HashMap, VecDeque};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wide::f32x8;

pub use crate::logprob::{argmax, max_logit};
use crate::logprob::{exp_nonpos_f32x8, lanes, map_chunks, sum_exp_f32};

/// Sampling parameters; field meanings and defaults follow llama.cpp's `common_params_sampling`.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Temperature; ≤ 0 selects greedy argmax. Default 0.8.
    pub temp: f32,
    /// Keep only the `top_k` most likely tokens; ≤ 0 disables. Default 40.
    pub top_k: i32,
    /// Nucleus sampling: keep the smallest prefix whose probability mass reaches `top_p`;
    /// ≥ 1 disables. Default 0.95.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` × that of the best token; ≤ 0
    /// disables. Default 0.05.
    pub min_p: f32,
    /// Repetition penalty over the last `repeat_last_n` accepted tokens (positive logits
    /// are divided by it, non-positive ones multiplied); 1.0 disables. Default 1.0.
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at; 0 disables. Default 64.
    pub repeat_last_n: usize,
    /// RNG seed. Default 42 (fixed, so runs are reproducible unless a caller picks one).
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 42,
        }
    }
}

/// First guess of how many sorted candidates top-p needs when top-k is off (as llama.cpp).
const TOP_P_GUESS: usize = 256;

/// A candidate token: (logit, id).
type Cand = (f32, u32);

/// Orders candidates by descending logit, ties by ascending id (NaN sorts last).
fn by_logit_desc(a: &Cand, b: &Cand) -> std::cmp::Ordering {
    let ka = if a.0.is_nan() { f32::NEG_INFINITY } else { a.0 };
    let kb = if b.0.is_nan() { f32::NEG_INFINITY } else { b.0 };
    kb.total_cmp(&ka).then(a.1.cmp(&b.1))
}

/// Pushes `(x, id)` for every `x > thr` of a chunk onto `out`, testing 8 lanes at a time.
fn push_above(out: &mut Vec<Cand>, xs: &[f32], start: usize, thr: f32) {
    let t = f32x8::splat(thr);
    let mut it = xs.chunks_exact(8);
    let mut base = start;
    for c in &mut it {
        let mask = lanes(c).simd_gt(t).to_bitmask();
        if mask != 0 {
            for (j, &x) in c.iter().enumerate() {
                if mask & (1 << j) != 0 {
                    out.push((x, (base + j) as u32));
                }
            }
        }
        base += 8;
    }
    out.extend(
        it.remainder()
            .iter()
            .enumerate()
            .filter(|&(_, &x)| x > thr)
            .map(|(j, &x)| (x, (base + j) as u32)),
    );
}

/// Keeps the `k` best of `v` (unordered).
fn keep_best(v: &mut Vec<Cand>, k: usize) {
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, by_logit_desc);
        v.truncate(k);
    }
}

/// The `k` best candidates of a chunk, by a rising threshold: only logits above the
/// current k-th best are collected, and the buffer is cut back to `k` when it fills up.
/// −∞ and NaN logits (probability 0) are never candidates.
fn chunk_top_k(xs: &[f32], start: usize, k: usize) -> Vec<Cand> {
    let mut buf = Vec::with_capacity(4 * k + 512);
    let mut thr = f32::NEG_INFINITY;
    for (b, block) in xs.chunks(512).enumerate() {
        push_above(&mut buf, block, start + b * 512, thr);
        if buf.len() >= 4 * k {
            keep_best(&mut buf, k);
            thr = buf[k - 1].0; // later ties lose on id, so strict `>` is right
        }
    }
    keep_best(&mut buf, k);
    buf
}

/// The `k` best candidates of `logits` (by [`by_logit_desc`]), sorted best first.
fn top_k_sorted(logits: &[f32], k: usize) -> Vec<Cand> {
    let mut all: Vec<Cand> = map_chunks(logits, |start, c| chunk_top_k(c, start, k))
        .into_iter()
        .flatten()
        .collect();
    keep_best(&mut all, k);
    all.sort_unstable_by(by_logit_desc);
    all
}

/// Length of the top-p prefix of sorted `cand` given softmax normaliser (`max`, `sum`),
/// or `None` when the whole list is needed and the mass `p` was not reached.
fn top_p_len(cand: &[Cand], max: f32, sum: f64, p: f32) -> Option<usize> {
    let mut cum = 0.0f64;
    for (i, &(l, _)) in cand.iter().enumerate() {
        cum += (l - max).exp() as f64 / sum;
        if cum >= f64::from(p) {
            return Some(i + 1);
        }
    }
    None
}

/// Stateful sampler: configuration, RNG and the recent-token history for penalties.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    n_vocab: usize,
    rng: ChaCha8Rng,
    history: VecDeque<u32>,
    counts: HashMap<u32, u32>,
    work: Vec<f32>,
}

impl Sampler {
    /// Creates a sampler for a vocabulary of `n_vocab` tokens.
    pub fn new(cfg: SamplerConfig, n_vocab: usize) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Self {
            cfg,
            n_vocab,
            rng,
            history: VecDeque::new(),
            counts: HashMap::new(),
            work: Vec::new(),
        }
    }

    /// The configuration this sampler was built with.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Forgets the token history and re-seeds the RNG, as llama.cpp's `llama_sampler_reset`.
    pub fn reset(&mut self) {
        self.history.clear();
        self.counts.clear();
        self.rng = ChaCha8Rng::seed_from_u64(self.cfg.seed);
    }

    /// Records a token that became part of the context (prompt or generated), for the
    /// repetition penalty's window of the last `repeat_last_n` tokens.
    pub fn accept(&mut self, token: u32) {
        let n = self.cfg.repeat_last_n;
        if n == 0 {
            return;
        }
        if self.history.len() >= n {
            if let Some(old) = self.history.pop_front() {
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.history.push_back(token);
        *self.counts.entry(token).or_insert(0) += 1;
    }

    fn penalties_active(&self) -> bool {
        self.cfg.repeat_last_n > 0 && self.cfg.repeat_penalty != 1.0 && !self.counts.is_empty()
    }

    /// Picks the next token from one row of `n_vocab` logits. Does not call
    /// [`Sampler::accept`]; the caller does that once the token is used.
    ///
    /// # Panics
    /// If `logits.len() != n_vocab` or the vocabulary is empty.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert_eq!(
            logits.len(),
            self.n_vocab,
            "logits row length must equal n_vocab"
        );
        assert!(self.n_vocab > 0, "empty vocabulary");
        let mut work = std::mem::take(&mut self.work);
        let l: &[f32] = if self.penalties_active() {
            work.clear();
            work.extend_from_slice(logits);
            let pen = self.cfg.repeat_penalty;
            for &tok in self.counts.keys() {
                if let Some(x) = work.get_mut(tok as usize) {
                    *x = if *x <= 0.0 { *x * pen } else { *x / pen };
                }
            }
            &work
        } else {
            logits
        };
        let tok = if self.cfg.temp <= 0.0 {
            argmax(l)
        } else {
            self.sample_dist(l)
        };
        self.work = work;
        tok
    }

    /// The candidates that survive top-k, top-p and min-p: best first when top-k or top-p
    /// sorted them, else in id order (the draw does not care).
    fn candidates(&self, l: &[f32]) -> Vec<Cand> {
        let (top_p, min_p) = (self.cfg.top_p, self.cfg.min_p);
        let k = self.cfg.top_k;
        if k > 0 && (k as usize) < l.len() {
            let mut cand = top_k_sorted(l, k as usize);
            let Some(&(max, _)) = cand.first() else {
                return vec![(max_logit(l), argmax(l))]; // nothing finite: greedy fallback
            };
            if top_p < 1.0 {
                let sum: f64 = cand.iter().map(|&(x, _)| (x - max).exp() as f64).sum();
                if let Some(n) = top_p_len(&cand, max, sum, top_p) {
                    cand.truncate(n);
                }
            }
            if min_p > 0.0 {
                let min_logit = max + min_p.ln();
                let n = 1 + cand[1..].iter().take_while(|c| c.0 >= min_logit).count();
                cand.truncate(n);
            }
            return cand;
        }
        // Whole vocabulary. Top-p and min-p each keep a prefix of the sorted list measured
        // against the same best token, so the result is the shorter of the two prefixes.
        // As llama.cpp, guess that the nucleus lies in the best TOP_P_GUESS tokens (found
        // by a threshold pass) and fall back to sorting everything only when it does not.
        let max = max_logit(l);
        if max.is_nan() || max == f32::NEG_INFINITY {
            return vec![(max, argmax(l))];
        }
        let min_logit = if min_p > 0.0 {
            max + min_p.ln()
        } else {
            f32::NEG_INFINITY
        };
        let sum = (top_p < 1.0).then(|| map_chunks(l, |_, c| sum_exp_f32(c, max)).iter().sum());
        if let Some(sum) = sum {
            let guess = TOP_P_GUESS.min(l.len());
            let mut head = top_k_sorted(l, guess);
            let n_min = 1 + head[1..].iter().take_while(|c| c.0 >= min_logit).count();
            let n_top = top_p_len(&head, max, sum, top_p);
            if n_top.is_some() || n_min < head.len() || head.len() < guess {
                head.truncate(n_top.unwrap_or(head.len()).min(n_min));
                return head;
            }
        }
        // `x > next_down(min_logit)` is `x >= min_logit`, and false for NaN; −∞ logits
        // (probability 0) are dropped.
        let below = if min_logit == f32::NEG_INFINITY {
            min_logit
        } else {
            min_logit.next_down()
        };
        let mut cand: Vec<Cand> = map_chunks(l, |start, c| {
            let mut v = Vec::new();
            push_above(&mut v, c, start, below);
            v
        })
        .into_iter()
        .flatten()
        .collect();
        if cand.is_empty() {
            return vec![(max, argmax(l))];
        }
        if let Some(sum) = sum {
            cand.sort_unstable_by(by_logit_desc);
            if let Some(n) = top_p_len(&cand, max, sum, top_p) {
                cand.truncate(n);
            }
        }
        // Without top-p the survivors stay in id order: the draw needs no sorting.
        cand
    }

    /// Uniform f64 in [0, 1) from the top 53 bits of one 64-bit draw.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Temperature scaling and a draw from the softmax of the surviving candidates
    /// (which come best first, or in id order when nothing sorted them).
    fn sample_dist(&mut self, l: &[f32]) -> u32 {
        let cand = self.candidates(l);
        let r = self.uniform();
        if cand.len() == 1 {
            return cand[0].1;
        }
        let inv_t = 1.0 / self.cfg.temp;
        let max = cand.iter().map(|c| c.0).fold(f32::NEG_INFINITY, f32::max) * inv_t;
        // Weights exp(x/T − max/T), eight at a time.
        let mut w: Vec<f32> = Vec::with_capacity(cand.len() + 8);
        let (it, m, s) = (cand.chunks_exact(8), f32x8::splat(max), f32x8::splat(inv_t));
        let rem = it.remainder();
        for c in it {
            let x = f32x8::from(std::array::from_fn::<f32, 8, _>(|j| c[j].0));
            w.extend_from_slice(&exp_nonpos_f32x8(x * s - m).to_array());
        }
        w.extend(rem.iter().map(|c| (c.0 * inv_t - max).exp()));
        let target = w.iter().map(|&x| x as f64).sum::<f64>() * r;
        let mut run = 0.0f64;
        for (i, &wi) in w.iter().enumerate() {
            run += wi as f64;
            if run >= target && wi > 0.0 {
                return cand[i].1;
            }
        }
        cand.iter()
            .zip(&w)
            .rev()
            .find(|(_, &wi)| wi > 0.0)
            .map_or(cand[0].1, |(c, _)| c.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temp: f32, top_k: i32, top_p: f32, min_p: f32) -> SamplerConfig {
        SamplerConfig {
            temp,
            top_k,
            top_p,
            min_p,
            ..SamplerConfig::default()
        }
    }

    /// Deterministic logits: `flat` → uniform in [-8, 8); else shaped like an LM head's,
    /// N(0, 2) noise with a dozen tokens at 12–17.5.
    fn logits(n: usize, seed: u64, flat: bool) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut u = move || ((rng.next_u32() >> 8) as f32 + 0.5) / (1u32 << 24) as f32;
        if flat {
            return (0..n).map(|_| u() * 16.0 - 8.0).collect();
        }
        let mut l: Vec<f32> = (0..n)
            .map(|_| 2.0 * (-2.0 * u().ln()).sqrt() * (std::f32::consts::TAU * u()).cos())
            .collect();
        (0..12).for_each(|i| l[(u() * n as f32) as usize % n] = 12.0 + i as f32 * 0.5);
        l
    }

    /// Sorted ids of the candidates `c` keeps for `l`.
    fn kept(l: &[f32], c: SamplerConfig) -> Vec<u32> {
        let mut ids: Vec<u32> = Sampler::new(c, l.len())
            .candidates(l)
            .iter()
            .map(|c| c.1)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The chain done the obvious way: full sort, top-k, top-p in f64, min-p.
    fn naive_kept(l: &[f32], c: &SamplerConfig) -> Vec<u32> {
        let mut v: Vec<Cand> = l.iter().enumerate().map(|(i, &x)| (x, i as u32)).collect();
        v.sort_by(by_logit_desc);
        v.truncate(if c.top_k > 0 {
            c.top_k as usize
        } else {
            v.len()
        });
        let max = v[0].0;
        if c.top_p < 1.0 {
            let sum: f64 = v.iter().map(|&(x, _)| ((x - max) as f64).exp()).sum();
            let mut cum = 0.0;
            let n = v.iter().position(|&(x, _)| {
                cum += ((x - max) as f64).exp() / sum;
                cum >= c.top_p as f64
            });
            v.truncate(n.map_or(v.len(), |n| n + 1));
        }
        let min_logit = if c.min_p > 0.0 {
            max + c.min_p.ln()
        } else {
            f32::NEG_INFINITY
        };
        let mut ids: Vec<u32> = v.iter().filter(|x| x.0 >= min_logit).map(|c| c.1).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut l = logits(151_936, 1, true);
        (l[100_000], l[120_000]) = (50.0, 50.0);
        let mut s = Sampler::new(cfg(0.0, 40, 0.95, 0.05), l.len());
        assert_eq!(s.sample(&l), 100_000);
        // top-k = 1 at any temperature is greedy too.
        let mut s = Sampler::new(cfg(1.5, 1, 1.0, 0.0), l.len());
        assert!((0..10).all(|_| s.sample(&l) == 100_000));
    }

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let flat: Vec<f32> = logits(32_000, 4, true).iter().map(|x| x * 0.1).collect();
        let run = |seed: u64, reset_at: usize| {
            let mut s = Sampler::new(
                SamplerConfig {
                    seed,
                    ..cfg(1.0, 0, 1.0, 0.0)
                },
                flat.len(),
            );
            let mut draw = |i| {
                if i == reset_at {
                    s.reset();
                }
                s.sample(&flat)
            };
            (0..64).map(&mut draw).collect::<Vec<_>>()
        };
        assert_eq!(run(7, usize::MAX), run(7, usize::MAX));
        assert_ne!(run(7, usize::MAX), run(8, usize::MAX));
        let with_reset = run(7, 32);
        assert_eq!(
            with_reset[..32],
            with_reset[32..],
            "reset() restarts the stream"
        );
    }

    #[test]
    fn repeat_penalty_follows_llama_cpp_rule() {
        // Positive logits are divided by the penalty, non-positive ones multiplied.
        let c = SamplerConfig {
            temp: 0.0,
            repeat_penalty: 2.0,
            ..Default::default()
        };
        let l = [2.0, 1.5, -1.0, -1.5];
        let mut s = Sampler::new(c.clone(), 4);
        assert_eq!(s.sample(&l), 0);
        s.accept(0);
        assert_eq!(s.sample(&l), 1, "2.0/2 = 1.0 < 1.5");
        assert_eq!(
            s.sample(&[-1.0, -1.5, -5.0, -5.0]),
            1,
            "-1.0*2 = -2.0 < -1.5"
        );
        // The window forgets tokens older than repeat_last_n.
        let mut s = Sampler::new(
            SamplerConfig {
                repeat_last_n: 2,
                ..c
            },
            4,
        );
        [0, 3, 3].into_iter().for_each(|t| s.accept(t));
        assert_eq!(s.sample(&l), 0);
    }

    #[test]
    fn min_p_and_top_p_keep_the_right_sets() {
        // p ∝ [8, 4, 2, 1, 0.5]: min_p 0.2 keeps p ≥ 1.6, min_p 0.1 keeps p ≥ 0.8.
        let l: Vec<f32> = [8.0f32, 4.0, 2.0, 1.0, 0.5]
            .iter()
            .map(|p| p.ln())
            .collect();
        assert_eq!(kept(&l, cfg(1.0, 0, 1.0, 0.2)), [0, 1, 2]);
        assert_eq!(kept(&l, cfg(1.0, 0, 1.0, 0.1)), [0, 1, 2, 3]);
        // p = [1/2, 1/4, 1/8, 1/16, 1/16]: smallest prefix with mass ≥ top_p.
        let l: Vec<f32> = [8.0f32, 4.0, 2.0, 1.0, 1.0]
            .iter()
            .map(|p| (p / 16.0).ln())
            .collect();
        assert_eq!(kept(&l, cfg(1.0, 0, 0.7, 0.0)), [0, 1]);
        assert_eq!(kept(&l, cfg(1.0, 0, 0.8, 0.0)), [0, 1, 2]);
        assert_eq!(kept(&l, cfg(1.0, 0, 0.3, 0.0)), [0]);
        // Top-p renormalises over what top-k kept: top-2 → [2/3, 1/3].
        assert_eq!(kept(&l, cfg(1.0, 2, 0.6, 0.0)), [0]);
        // And the draw only ever returns kept tokens.
        let mut s = Sampler::new(cfg(1.0, 0, 0.8, 0.0), l.len());
        assert!((0..500).all(|_| s.sample(&l) <= 2));
    }

    #[test]
    fn candidate_sets_match_naive_chain() {
        let shapes = [
            ("lm-like", logits(151_936, 11, false)),
            ("flat", logits(151_936, 12, true)),
            ("flat-small", logits(1000, 13, true)),
            ("tiny", vec![0.5, 2.0, 2.0, -1.0, 1.9]),
        ];
        let (ks, ps, ms) = ([0, 3, 40, 100], [0.5, 0.9, 0.95, 1.0], [0.0, 0.05, 0.3]);
        for (shape, l) in &shapes {
            for ((k, p), m) in ks
                .iter()
                .flat_map(|&k| ps.map(|p| (k, p)))
                .flat_map(|kp| ms.map(|m| (kp, m)))
            {
                let c = cfg(0.8, k, p, m);
                assert_eq!(
                    kept(l, c.clone()),
                    naive_kept(l, &c),
                    "{shape} k={k} p={p} min_p={m}"
                );
            }
        }
    }

    #[test]
    #[ignore = "micro-benchmark; run with --ignored --nocapture"]
    fn bench_sample_151936() {
        for (shape, l) in [
            ("lm-like", logits(151_936, 6, false)),
            ("flat", logits(151_936, 6, true)),
        ] {
            for (k, p, m, t) in [
                (40, 0.95, 0.05, 0.0),
                (40, 0.95, 0.05, 0.8),
                (0, 0.95, 0.05, 0.8),
                (0, 0.95, 0.0, 0.8),
                (0, 1.0, 0.0, 0.8),
            ] {
                let mut s = Sampler::new(cfg(t, k, p, m), l.len());
                let t0 = std::time::Instant::now();
                (0..100).for_each(|_| _ = std::hint::black_box(s.sample(&l)));
                let us = t0.elapsed().as_secs_f64() * 1e4;
                println!("sample [{shape}] temp={t} k={k} p={p} min_p={m}: {us:.1} µs/token");
            }
        }
    }
}
