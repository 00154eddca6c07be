//! Perplexity of a model over long texts, at several window lengths and RoPE scalings.
//!
//! The protocol (see `docs/EVALUATION.md`): a text is tokenized once (BOS first when the
//! model adds one) and cut into non-overlapping windows of `n` tokens; the first token of
//! every window is replaced by BOS, as llama-perplexity does. Each window is evaluated
//! from an empty cache, and every prediction inside it is scored
//! ([`Protocol::Full`]: the `n − 1` tokens after the first) or only those of its second
//! half ([`Protocol::LlamaCompat`]: llama-perplexity's `n − n/2 − 1`). For the bucketed
//! scalings (CLEX and its kin) the whole window runs in the window's bucket
//! `t = ceil(n / L)`, as one forward over `n` tokens would.
//!
//! Memory stays bounded for long windows: a window is fed in micro-batches of at most
//! `n_ubatch` tokens (the KV cache keeps the context) and only one micro-batch of logits
//! (`n_ubatch × n_vocab` floats) exists at a time; its rows are reduced to NLLs by
//! [`logprob::token_nlls`] straight away. Micro-batches whose rows are not scored ask for
//! one row only.
//!
//! Statistics are llama-perplexity's ([`PplStats`]): PPL = exp(mean NLL) and its standard
//! error `sqrt(var/(N−1))·PPL` over the scored tokens of all windows and texts.

use crate::logprob::{self, PplStats};
use crate::model::Model;
use crate::rope::RopeScaling;
use crate::session::{BucketPolicy, Logits, RopePlan, Session, SessionOptions};
use crate::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// Which predictions of a window are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Every token after the first: `n − 1` per window of `n`.
    #[default]
    Full,
    /// llama-perplexity's: the tokens after position `n/2`, i.e. `n − n/2 − 1` per window
    /// (the first half only gives context).
    LlamaCompat,
}

impl Protocol {
    /// The first position whose prediction (of the token after it) is scored.
    pub fn first_scored(self, n: usize) -> usize {
        match self {
            Protocol::Full => 0,
            Protocol::LlamaCompat => n / 2,
        }
    }

    /// Scored tokens in a window of `n` tokens.
    pub fn n_scored(self, n: usize) -> usize {
        n.saturating_sub(1).saturating_sub(self.first_scored(n))
    }

    /// The name used in reports (`full`, `llama-compat`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Full => "full",
            Protocol::LlamaCompat => "llama-compat",
        }
    }
}

/// A causal language model that can be fed a sequence in pieces: what [`score_window`]
/// needs. [`Session`] is one; tests use hand-made ones.
pub trait CausalLm {
    /// Vocabulary size (the length of a logit row).
    fn n_vocab(&self) -> usize;
    /// The most tokens one [`CausalLm::eval`] call should get (one micro-batch).
    fn max_batch(&self) -> usize;
    /// The most tokens the context holds.
    fn n_ctx(&self) -> usize;
    /// Forgets every token.
    fn reset(&mut self);
    /// Evaluates `tokens` after those already seen; returns one logit row per token for
    /// [`Logits::All`], the last token's row for [`Logits::Last`].
    fn eval(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>>;
}

impl CausalLm for Session {
    fn n_vocab(&self) -> usize {
        self.model().hparams.n_vocab
    }
    fn max_batch(&self) -> usize {
        self.options().n_ubatch
    }
    fn n_ctx(&self) -> usize {
        Session::n_ctx(self)
    }
    fn reset(&mut self) {
        Session::reset(self)
    }
    fn eval(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>> {
        Session::eval(self, tokens, want)
    }
}

/// The start offsets of the non-overlapping windows of `n` tokens in a text of `n_tokens`
/// (a shorter tail is dropped), at most `max_windows` of them: llama-perplexity's chunks.
pub fn window_starts(n_tokens: usize, n: usize, max_windows: Option<usize>) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let count = (n_tokens / n).min(max_windows.unwrap_or(usize::MAX));
    (0..count).map(|k| k * n).collect()
}

/// The window of `n` tokens starting at `start`, its first token replaced by `bos` when
/// given (llama-perplexity's rule).
pub fn window(tokens: &[u32], start: usize, n: usize, bos: Option<u32>) -> Vec<u32> {
    let mut w = tokens[start..start + n].to_vec();
    if let (Some(b), Some(first)) = (bos, w.first_mut()) {
        *first = b;
    }
    w
}

/// Scores one window: evaluates it from an empty context in micro-batches of at most
/// `lm.max_batch()` tokens and returns the NLL of every scored token, in order
/// (`protocol.n_scored(window.len())` values). `on_batch` is told how many tokens each
/// micro-batch held (for progress). At most one micro-batch of logits is alive at a time.
pub fn score_window<L: CausalLm + ?Sized>(
    lm: &mut L,
    window: &[u32],
    protocol: Protocol,
    mut on_batch: impl FnMut(usize),
) -> Result<Vec<f64>> {
    let n = window.len();
    if n < 2 {
        return Err(Error::Other(format!("a window needs at least 2 tokens, got {n}")));
    }
    if n > lm.n_ctx() {
        return Err(Error::Context(format!("a window of {n} tokens does not fit in the context of {}", lm.n_ctx())));
    }
    let n_vocab = lm.n_vocab();
    let ub = lm.max_batch().max(1);
    // Rows at positions first..last are scored; row p predicts window[p + 1].
    let (first, last) = (protocol.first_scored(n), n - 1);
    let mut nlls = Vec::with_capacity(last.saturating_sub(first));
    lm.reset();
    let mut s = 0;
    while s < n {
        let e = (s + ub).min(n);
        let (lo, hi) = (s.max(first), e.min(last));
        if lo < hi {
            let logits = lm.eval(&window[s..e], Logits::All)?;
            if logits.len() != (e - s) * n_vocab {
                return Err(Error::Other(format!(
                    "expected {} logit rows, got {} values",
                    e - s,
                    logits.len()
                )));
            }
            let rows = &logits[(lo - s) * n_vocab..(hi - s) * n_vocab];
            nlls.extend(logprob::token_nlls(rows, n_vocab, &window[lo + 1..hi + 1]));
        } else {
            lm.eval(&window[s..e], Logits::Last)?;
        }
        on_batch(e - s);
        s = e;
    }
    Ok(nlls)
}

/// Session options for scoring windows of `len` tokens: the context is the window, and
/// for a bucketed scaling under the default per-length policy the bucket is fixed at the
/// window's, `t = ceil(len / L)` (within CLEX's hard limit L·T unless clamping), so every
/// micro-batch runs in it — as one forward over the window would. A `--clex-t` choice
/// is kept. Errors name the limit a length exceeds.
pub fn window_options(model: &Model, base: &SessionOptions, len: usize) -> Result<SessionOptions> {
    let mut o = base.clone();
    o.n_ctx = len;
    let plan = RopePlan::new(model, &o.rope, len).map_err(plan_error)?;
    if plan.scaling().is_bucketed() && matches!(o.rope.bucket, BucketPolicy::PerLength | BucketPolicy::FromContext) {
        let t = plan.bucket(len).map_err(Error::Context)?;
        o.rope.bucket = BucketPolicy::Fixed(t);
    }
    Ok(o)
}

/// JSON `null` (how serde_json writes NaN) read back as NaN.
fn null_as_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A RoPE plan's refusal: a length beyond a limit is a context error, anything else
/// (e.g. `clex` on a plain model) a usage error.
fn plan_error(msg: String) -> Error {
    if msg.contains("limit") {
        Error::Context(msg)
    } else {
        Error::Other(msg)
    }
}

/// The result for one (window length, scaling) pair. Written to and read back from
/// `perplexity --json` files (`--from-json` merges earlier runs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PplResult {
    /// Window length in tokens.
    pub n_ctx: usize,
    /// The RoPE scaling in force (resolved: the model's own when none was asked for).
    pub rope_scaling: String,
    /// The CLEX bucket t the windows ran in (1 for unbucketed scalings).
    pub bucket: u32,
    /// Windows scored.
    pub windows: usize,
    /// Tokens scored.
    pub tokens: u64,
    /// Perplexity (NaN, written `null` in JSON, when nothing was scored).
    #[serde(deserialize_with = "null_as_nan")]
    pub ppl: f64,
    /// Its standard error, llama-perplexity's formula.
    pub ppl_error: Option<f64>,
    /// Mean negative log-likelihood in nats.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_nll: f64,
    /// Tokens evaluated (windows × length).
    pub eval_tokens: usize,
    /// Wall time of the evaluation (session set-up included).
    pub seconds: f64,
    /// Evaluated tokens per second.
    pub tokens_per_second: f64,
    /// The scoring protocol.
    pub protocol: Protocol,
    /// Why nothing was scored, when nothing was (text too short, length beyond a limit).
    pub skipped: Option<String>,
    /// The running sums behind the figures.
    #[serde(skip)]
    pub stats: PplStats,
}

impl PplResult {
    fn new(n_ctx: usize, rope_scaling: String, bucket: u32, protocol: Protocol) -> Self {
        Self {
            n_ctx,
            rope_scaling,
            bucket,
            windows: 0,
            tokens: 0,
            ppl: f64::NAN,
            ppl_error: None,
            mean_nll: f64::NAN,
            eval_tokens: 0,
            seconds: 0.0,
            tokens_per_second: 0.0,
            protocol,
            skipped: None,
            stats: PplStats::new(),
        }
    }

    fn finish(&mut self, seconds: f64) {
        self.tokens = self.stats.count;
        self.ppl = self.stats.ppl();
        self.ppl_error = self.stats.ppl_error();
        self.mean_nll = self.stats.mean_nll();
        self.seconds = seconds;
        self.tokens_per_second = if seconds > 0.0 { self.eval_tokens as f64 / seconds } else { 0.0 };
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct PerplexityConfig {
    /// Window lengths.
    pub lengths: Vec<usize>,
    /// RoPE scalings (`None`: the model's own).
    pub scalings: Vec<Option<RopeScaling>>,
    /// Which predictions are scored.
    pub protocol: Protocol,
    /// At most this many windows per length (over all texts), like llama-perplexity's
    /// `--chunks`.
    pub max_windows: Option<usize>,
    /// Session settings (`n_ctx` is replaced by each length; `rope.scaling` by each scaling).
    pub session: SessionOptions,
}

/// Progress reports from [`evaluate`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A (length, scaling) pair starts.
    Start { n_ctx: usize, rope_scaling: &'a str, bucket: u32, windows: usize },
    /// A micro-batch of this many tokens was evaluated.
    Tokens(usize),
    /// A pair is done.
    Done(&'a PplResult),
}

/// The windows of one length over several texts: (text index, start), in text order,
/// at most `max_windows` in all.
pub fn plan_windows(texts: &[Vec<u32>], n: usize, max_windows: Option<usize>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let left = max_windows.map(|m| m.saturating_sub(out.len()));
        out.extend(window_starts(t.len(), n, left).into_iter().map(|s| (i, s)));
    }
    out
}

/// Tokens [`evaluate`] will run through the model (for a progress total).
pub fn total_eval_tokens(texts: &[Vec<u32>], cfg: &PerplexityConfig) -> u64 {
    let per_scaling: u64 =
        cfg.lengths.iter().map(|&n| (plan_windows(texts, n, cfg.max_windows).len() * n) as u64).sum();
    per_scaling * cfg.scalings.len().max(1) as u64
}

/// Evaluates every (length, scaling) pair of `cfg` on the tokenized `texts` (each starting
/// with BOS when the model adds one; `bos` replaces the first token of every window).
/// Lengths no text is long enough for, and lengths a scaling refuses (CLEX beyond L·T),
/// give a result with no windows and the reason in `skipped`. Results come in
/// length-major order, scalings in the order given.
pub fn evaluate(
    model: &Arc<Model>,
    texts: &[Vec<u32>],
    bos: Option<u32>,
    cfg: &PerplexityConfig,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<PplResult>> {
    let scalings: Vec<Option<RopeScaling>> = if cfg.scalings.is_empty() { vec![None] } else { cfg.scalings.clone() };
    let mut results = Vec::new();
    for &n in &cfg.lengths {
        if n < 2 {
            return Err(Error::Other(format!("window length {n} is too short (at least 2 tokens)")));
        }
        let starts = plan_windows(texts, n, cfg.max_windows);
        for &scaling in &scalings {
            let t0 = Instant::now();
            let mut base = cfg.session.clone();
            base.rope.scaling = scaling;
            let fallback_name = scaling.map_or_else(|| "model".to_string(), |s| s.to_string());
            // A length beyond what a scaling allows (CLEX's L·T) is reported, not fatal.
            let prepared = window_options(model, &base, n).and_then(|opts| {
                let name = RopePlan::new(model, &opts.rope, n).map_err(plan_error)?.scaling().to_string();
                Ok((opts, name))
            });
            let (opts, name) = match prepared {
                Ok(x) => x,
                Err(Error::Context(msg)) => {
                    let mut r = PplResult::new(n, fallback_name, 0, cfg.protocol);
                    r.skipped = Some(msg);
                    on(Event::Start { n_ctx: n, rope_scaling: &r.rope_scaling, bucket: 0, windows: 0 });
                    r.finish(t0.elapsed().as_secs_f64());
                    on(Event::Done(&r));
                    results.push(r);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let bucket = match opts.rope.bucket {
                BucketPolicy::Fixed(t) => t,
                _ => 1,
            };
            let mut r = PplResult::new(n, name, bucket, cfg.protocol);
            if starts.is_empty() {
                r.skipped = Some(format!("no text has {n} tokens"));
            }
            on(Event::Start { n_ctx: n, rope_scaling: &r.rope_scaling, bucket, windows: starts.len() });
            if !starts.is_empty() {
                let mut session = Session::new(Arc::clone(model), opts)?;
                for &(ti, s) in &starts {
                    let w = window(&texts[ti], s, n, bos);
                    let nlls = score_window(&mut session, &w, cfg.protocol, |k| on(Event::Tokens(k)))?;
                    r.stats.extend(&nlls);
                    r.windows += 1;
                    r.eval_tokens += n;
                }
                if session.bucket() != 0 {
                    r.bucket = session.bucket();
                }
            }
            r.finish(t0.elapsed().as_secs_f64());
            on(Event::Done(&r));
            results.push(r);
        }
    }
    Ok(results)
}

fn fmt_ppl(x: f64) -> String {
    if !x.is_finite() {
        "—".into()
    } else if x >= 1e5 {
        format!("{x:.4e}")
    } else {
        format!("{x:.4}")
    }
}

fn fmt_err(e: Option<f64>) -> String {
    match e {
        Some(e) if e >= 1e4 => format!("{e:.4e}"),
        Some(e) => format!("{e:.4}"),
        None => "—".into(),
    }
}

/// A markdown table, one row per result.
pub fn markdown_table(results: &[PplResult]) -> String {
    let mut s = String::new();
    s.push_str("| n_ctx | rope | t | windows | tokens | PPL | ± | mean NLL | seconds | tok/s |\n");
    s.push_str("|------:|------|--:|--------:|-------:|----:|--:|---------:|--------:|------:|\n");
    for r in results {
        let nll = if r.mean_nll.is_finite() { format!("{:.5}", r.mean_nll) } else { "—".into() };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            r.n_ctx,
            r.rope_scaling,
            r.bucket,
            r.windows,
            r.tokens,
            fmt_ppl(r.ppl),
            fmt_err(r.ppl_error),
            nll,
            r.seconds,
            r.tokens_per_second
        );
    }
    let skipped: Vec<&PplResult> = results.iter().filter(|r| r.skipped.is_some()).collect();
    if !skipped.is_empty() {
        s.push('\n');
        for r in skipped {
            let _ = writeln!(s, "- n_ctx {} {}: skipped: {}", r.n_ctx, r.rope_scaling, r.skipped.as_deref().unwrap_or(""));
        }
    }
    s
}

/// A markdown table of PPL ± error with one row per length and one column per scaling
/// (empty when there is only one scaling).
pub fn markdown_pivot(results: &[PplResult]) -> String {
    let mut lengths: Vec<usize> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for r in results {
        if !lengths.contains(&r.n_ctx) {
            lengths.push(r.n_ctx);
        }
        if !names.contains(&r.rope_scaling.as_str()) {
            names.push(&r.rope_scaling);
        }
    }
    if names.len() < 2 {
        return String::new();
    }
    let mut s = String::from("| n_ctx |");
    for n in &names {
        let _ = write!(s, " {n} |");
    }
    s.push_str("\n|------:|");
    s.push_str(&"------:|".repeat(names.len()));
    s.push('\n');
    for &len in &lengths {
        let _ = write!(s, "| {len} |");
        for n in &names {
            match results.iter().find(|r| r.n_ctx == len && r.rope_scaling == *n) {
                Some(r) if r.ppl.is_finite() => {
                    let _ = write!(s, " {} ± {} |", fmt_ppl(r.ppl), fmt_err(r.ppl_error));
                }
                _ => s.push_str(" — |"),
            }
        }
        s.push('\n');
    }
    s
}

/// CSV with a header line.
pub fn csv(results: &[PplResult]) -> String {
    let mut s = String::from(
        "n_ctx,rope_scaling,bucket,windows,tokens,ppl,ppl_error,mean_nll,eval_tokens,seconds,tokens_per_second,protocol\n",
    );
    let num = |x: f64| if x.is_finite() { format!("{x}") } else { String::new() };
    for r in results {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{:.3},{:.2},{}",
            r.n_ctx,
            r.rope_scaling,
            r.bucket,
            r.windows,
            r.tokens,
            num(r.ppl),
            r.ppl_error.map(num).unwrap_or_default(),
            num(r.mean_nll),
            r.eval_tokens,
            r.seconds,
            r.tokens_per_second,
            r.protocol.as_str()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_counts() {
        assert_eq!(Protocol::Full.n_scored(512), 511);
        assert_eq!(Protocol::LlamaCompat.n_scored(512), 255);
        assert_eq!(Protocol::LlamaCompat.n_scored(7), 3);
        assert_eq!(Protocol::Full.n_scored(1), 0);
    }

    #[test]
    fn windows_are_cut_like_llama_perplexity() {
        assert_eq!(window_starts(10, 4, None), vec![0, 4]);
        assert_eq!(window_starts(12, 4, Some(2)), vec![0, 4]);
        assert_eq!(window_starts(3, 4, None), Vec::<usize>::new());
        let toks: Vec<u32> = (10..22).collect();
        assert_eq!(window(&toks, 4, 4, Some(1)), vec![1, 15, 16, 17]);
        assert_eq!(window(&toks, 4, 4, None), vec![14, 15, 16, 17]);
        let texts = vec![vec![0u32; 9], vec![0u32; 5], vec![0u32; 8]];
        assert_eq!(plan_windows(&texts, 4, None), vec![(0, 0), (0, 4), (1, 0), (2, 0), (2, 4)]);
        assert_eq!(plan_windows(&texts, 4, Some(3)), vec![(0, 0), (0, 4), (1, 0)]);
    }
}
