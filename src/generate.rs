//! Prompting and streaming generation on a [`Session`]: text in, an iterator of token
//! events out, with the usual stop conditions.
//!
//! The session's cache always ends with every token evaluated so far: [`Session::prompt`]
//! appends text, a [`Generation`] appends each token it hands out (the evaluation of a
//! token happens at the start of the next step, so a token is delivered as soon as it is
//! sampled). The logits a generation starts from are those of the cache's last token,
//! which it evaluates again (one token) when it starts; so generating from a restored
//! session ([`Session::restore`]) or after a [`Session::chat`] needs nothing else.

use crate::cancel::CancelToken;
use crate::sample::{Sampler, SamplerConfig};
use crate::session::{Logits, Session};
use crate::tokenizer::StreamDecoder;
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// How [`Session::generate`] runs.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Most tokens to generate; `None`: until the end of generation or a full context.
    pub max_tokens: Option<usize>,
    /// Sampling (temperature ≤ 0: greedy; same seed, same tokens).
    pub sampling: SamplerConfig,
    /// Stop as soon as the generated text contains one of these (not empty). The text
    /// delivered stops just before it; text that could be the start of one is held back
    /// until it is known not to be.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (they are then delivered as text).
    pub ignore_eos: bool,
    /// Stops the generation from another thread.
    pub cancel: Option<CancelToken>,
}

impl GenerateOptions {
    /// Greedy decoding (temperature 0) of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self { max_tokens: Some(max_tokens), sampling: SamplerConfig { temp: 0.0, ..Default::default() }, ..Default::default() }
    }

    fn check(&self) -> Result<()> {
        let s = &self.sampling;
        let bad = |what: &str, v: f32| Error::InvalidArgument(format!("{what} must be a finite number, not {v}"));
        for (what, v) in [("temperature", s.temp), ("top_p", s.top_p), ("min_p", s.min_p), ("repeat_penalty", s.repeat_penalty)] {
            if !v.is_finite() {
                return Err(bad(what, v));
            }
        }
        if s.repeat_penalty <= 0.0 {
            return Err(Error::InvalidArgument(format!("repeat_penalty must be positive, not {}", s.repeat_penalty)));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(Error::InvalidArgument("an empty stop string would stop at once".into()));
        }
        Ok(())
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// [`GenerateOptions::max_tokens`] tokens were generated.
    MaxTokens,
    /// The model produced an end-of-generation token (not delivered, not cached).
    EndOfGeneration,
    /// The text contained [`GenerateOptions::stop`]`[i]`.
    StopString(usize),
    /// The [`CancelToken`] was cancelled.
    Cancelled,
    /// The context is full: no room for another token.
    ContextFull,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// The token id.
    pub token: u32,
    /// Text released with this token: always whole UTF-8 characters, possibly empty
    /// (a character split across tokens, or text held back for a stop string).
    pub text: String,
    /// 0 for the first token of this generation, then 1, 2, …
    pub index: usize,
    /// Time spent producing this token (the previous token's evaluation and sampling).
    pub elapsed: Duration,
}

/// Figures of a whole generation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Tokens delivered.
    pub n_tokens: usize,
    /// Time to the first token (includes evaluating the cache's last token again).
    pub first_token: Option<Duration>,
    /// Time spent generating, in all.
    pub total: Duration,
}

impl Timings {
    /// Tokens per second over the whole generation.
    pub fn tokens_per_second(&self) -> f64 {
        self.n_tokens as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

/// What a [`Generation`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A token and its text.
    Token(TokenEvent),
    /// The end (always the last event): why, the text still held (a stop string's
    /// prefix that was not one, an incomplete character flushed), and the figures.
    Finished { reason: StopReason, text: String, timings: Timings },
}

/// Figures of a prompt evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PromptStats {
    /// Tokens evaluated.
    pub n_evaluated: usize,
    /// Tokens kept from the cache (a chat turn's shared prefix).
    pub n_reused: usize,
    /// Time spent.
    pub elapsed: Duration,
}

/// A running generation: an iterator of [`Event`]s that ends after
/// [`Event::Finished`] or an error. Borrows the session; dropping it early is fine (the
/// last delivered token is still evaluated into the cache, errors ignored).
pub struct Generation<'s> {
    session: &'s mut Session,
    opts: GenerateOptions,
    sampler: Sampler,
    dec: StreamDecoder,
    /// Text decoded but not yet released (stop strings).
    held: String,
    logits: Vec<f32>,
    /// Delivered but not yet evaluated.
    pending: Option<u32>,
    /// Decided, to be reported at the next step (after `pending` is evaluated).
    stopping: Option<StopReason>,
    done: bool,
    timings: Timings,
}

impl Session {
    /// Tokenizes `text` and evaluates it after what the cache holds (the vocabulary's
    /// BOS is added when the cache is empty; special-token texts are parsed).
    pub fn prompt(&mut self, text: &str) -> Result<PromptStats> {
        let tokens = self.model().tokenizer.encode(text, self.n_past() == 0, true);
        self.prompt_tokens(&tokens)
    }

    /// Evaluates `tokens` after what the cache holds.
    pub fn prompt_tokens(&mut self, tokens: &[u32]) -> Result<PromptStats> {
        let t0 = Instant::now();
        let n_reused = self.n_past();
        if !tokens.is_empty() {
            self.eval(tokens, Logits::Last)?;
        }
        Ok(PromptStats { n_evaluated: tokens.len(), n_reused, elapsed: t0.elapsed() })
    }

    /// Starts generating after the cache's last token (see [`Generation`]). Fails when
    /// the cache is empty or an option is invalid.
    pub fn generate(&mut self, opts: GenerateOptions) -> Result<Generation<'_>> {
        opts.check()?;
        let Some(&last) = self.tokens().last() else {
            return Err(Error::InvalidArgument("the session is empty: give it a prompt first".into()));
        };
        let mut sampler = Sampler::new(opts.sampling.clone(), self.model().hparams.n_vocab);
        let toks = self.tokens();
        for &t in &toks[toks.len().saturating_sub(opts.sampling.repeat_last_n)..] {
            sampler.accept(t);
        }
        // The logits to start from: the last cached token, evaluated again in place.
        self.truncate(self.n_past() - 1);
        Ok(Generation {
            session: self,
            opts,
            sampler,
            dec: StreamDecoder::new(),
            held: String::new(),
            logits: Vec::new(),
            pending: Some(last),
            stopping: None,
            done: false,
            timings: Timings::default(),
        })
    }
}

impl Generation<'_> {
    /// The session being generated on.
    pub fn session(&self) -> &Session {
        self.session
    }

    /// Runs to the end; returns the whole text and why it stopped.
    pub fn text(mut self) -> Result<(String, StopReason)> {
        let mut out = String::new();
        for ev in &mut self {
            match ev? {
                Event::Token(t) => out.push_str(&t.text),
                Event::Finished { reason, text, .. } => {
                    out.push_str(&text);
                    return Ok((out, reason));
                }
            }
        }
        Err(Error::Other("generation ended without a stop reason".into()))
    }

    fn eval_pending(&mut self) -> Result<()> {
        if let Some(t) = self.pending.take() {
            self.session.eval_into(&[t], Logits::Last, &mut self.logits)?;
        }
        Ok(())
    }

    fn finish(&mut self, reason: StopReason, t0: Instant) -> Event {
        self.done = true;
        let mut text = std::mem::take(&mut self.held);
        let tail = self.dec.finish();
        if !matches!(reason, StopReason::StopString(_)) {
            text.push_str(&tail);
        }
        self.timings.total += t0.elapsed();
        Event::Finished { reason, text, timings: self.timings }
    }

    fn step(&mut self, t0: Instant) -> Result<Event> {
        self.eval_pending()?;
        if let Some(reason) = self.stopping.take() {
            return Ok(self.finish(reason, t0));
        }
        if self.opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Ok(self.finish(StopReason::Cancelled, t0));
        }
        if self.opts.max_tokens.is_some_and(|m| self.timings.n_tokens >= m) {
            return Ok(self.finish(StopReason::MaxTokens, t0));
        }
        if self.session.n_past() >= self.session.n_ctx() {
            return Ok(self.finish(StopReason::ContextFull, t0));
        }
        let tok = &self.session.model().tokenizer;
        let t = self.sampler.sample(&self.logits);
        if tok.is_eog(t) && !self.opts.ignore_eos {
            return Ok(self.finish(StopReason::EndOfGeneration, t0));
        }
        self.sampler.accept(t);
        let piece = self.dec.push(&tok.token_to_piece(t));
        self.held.push_str(&piece);
        let (text, hit) = release(&mut self.held, &self.opts.stop);
        self.stopping = hit.map(StopReason::StopString);
        self.pending = Some(t);
        let elapsed = t0.elapsed();
        let index = self.timings.n_tokens;
        self.timings.n_tokens += 1;
        self.timings.total += elapsed;
        self.timings.first_token.get_or_insert(self.timings.total);
        Ok(Event::Token(TokenEvent { token: t, text, index, elapsed }))
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step(Instant::now());
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

impl Drop for Generation<'_> {
    fn drop(&mut self) {
        // Keep the promise that every delivered token is in the cache (not while
        // unwinding: a second panic would abort).
        if !std::thread::panicking() {
            let _ = self.eval_pending();
        }
    }
}

/// Takes from `held` the text that can be released: all of it before the first stop
/// string found (and the index of that string), else all but the longest end that could
/// still grow into a stop string.
fn release(held: &mut String, stops: &[String]) -> (String, Option<usize>) {
    let first = stops.iter().enumerate().filter_map(|(i, s)| held.find(s.as_str()).map(|p| (p, i))).min();
    if let Some((p, i)) = first {
        let out = held[..p].to_owned();
        held.clear();
        return (out, Some(i));
    }
    let keep = stops.iter().map(|s| overlap(held, s)).max().unwrap_or(0);
    let out: String = held.drain(..held.len() - keep).collect();
    (out, None)
}

/// The longest proper prefix of `stop` that `text` ends with, in bytes.
fn overlap(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1)).rev().find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(pieces: &[&str], stops: &[&str]) -> (Vec<String>, Option<usize>, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut held = String::new();
        let mut out = Vec::new();
        for p in pieces {
            held.push_str(p);
            let (t, hit) = release(&mut held, &stops);
            out.push(t);
            if hit.is_some() {
                return (out, hit, held);
            }
        }
        (out, None, held)
    }

    #[test]
    fn stop_string_across_pieces_is_cut_and_held_back() {
        let (out, hit, _) = feed(&["Hello wor", "ld\nUs", "er: hi"], &["\nUser:"]);
        assert_eq!(out, ["Hello wor", "ld", ""]);
        assert_eq!(hit, Some(0));
    }

    #[test]
    fn false_start_is_released_later() {
        let (out, hit, held) = feed(&["a<", "b", "<e", "nd"], &["<end>"]);
        assert_eq!(out, ["a", "<b", "", ""]);
        assert_eq!((hit, held.as_str()), (None, "<end"));
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        let (out, hit, _) = feed(&["xé€yz"], &["z", "€"]);
        assert_eq!((out[0].as_str(), hit), ("xé", Some(1)));
        assert_eq!(overlap("aé", "éb"), 2);
        assert_eq!(overlap("abc", "c"), 0);
        assert_eq!(overlap("", "abc"), 0);
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = GenerateOptions::greedy(4);
        assert!(o.check().is_ok());
        o.sampling.temp = f32::NAN;
        assert!(matches!(o.check(), Err(Error::InvalidArgument(_))));
        let o = GenerateOptions { stop: vec![String::new()], ..GenerateOptions::greedy(1) };
        assert!(matches!(o.check(), Err(Error::InvalidArgument(_))));
    }
}
