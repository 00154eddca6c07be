//! The conversation and its evaluation. Each turn renders the whole conversation, keeps
//! the cached tokens it shares with the cache, and evaluates only the rest. A full
//! context either stops (and says so) or drops the oldest turns, shifting the cache.

use super::Ui;
use clex::chat::{ChatFormat, ChatMessage};
use clex::model::Model;
use clex::sample::Sampler;
use clex::session::{Logits, Session};
use clex::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Set by Ctrl-C while a reply is being made: the reply stops at the next token.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Whether a reply is in progress (a Ctrl-C outside one ends the program).
pub static REPLYING: AtomicBool = AtomicBool::new(false);

/// What to do when the conversation no longer fits in the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtxFull {
    /// Stop the reply (or refuse the message), say so, keep the conversation.
    Stop,
    /// Drop the oldest turns (the system prompt stays) until a quarter of the context is
    /// free, moving the cached tokens of the rest down (a context shift).
    Shift,
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfTurn,
    Limit,
    Interrupted,
    ContextFull,
}

/// Figures of the last reply (`/stats`).
#[derive(Debug, Clone)]
pub struct Stats {
    pub prompt_tokens: usize,
    pub prompt_evaluated: usize,
    pub prompt_s: f64,
    pub generated: usize,
    pub gen_s: f64,
    pub stop: StopReason,
}

/// How a message was handled.
pub enum Outcome {
    Replied(Stats),
    /// Not sent (it does not fit, or Ctrl-C came before the reply began); the
    /// conversation is as before.
    Withdrawn(String),
}

pub struct Chat {
    pub model: Arc<Model>,
    pub session: Session,
    pub format: ChatFormat,
    pub sampler: Sampler,
    pub messages: Vec<ChatMessage>,
    pub policy: CtxFull,
    /// Most tokens of one reply.
    pub max_reply: Option<usize>,
    pub last: Option<Stats>,
    /// Context shifts done, and the turns they dropped.
    pub shifts: usize,
    pub dropped_messages: usize,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Chat {
    /// The tokens of `messages` (a template error is the user's to fix: a plain message).
    pub fn tokens(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>> {
        self.format.tokens(&self.model.tokenizer, messages, add_generation_prompt).map_err(Error::Other)
    }

    /// Keeps only the cached tokens the conversation as it now stands starts with (after
    /// /reset, /system, /load): what stays is reused by the next turn.
    pub fn trim_cache(&mut self) {
        // Some templates cannot render an empty conversation: then nothing is kept.
        let toks = if self.messages.is_empty() { Vec::new() } else { self.tokens(&self.messages, false).unwrap_or_default() };
        let p = common_prefix(self.session.tokens(), &toks);
        self.session.truncate(p);
    }

    /// Index range of the oldest exchange that may be dropped: from the first message
    /// after the system prompt to the next user message, never reaching the last user
    /// message (the one being answered).
    fn oldest_exchange(&self) -> Option<std::ops::Range<usize>> {
        let start = usize::from(self.messages.first().is_some_and(|m| m.role == "system"));
        let last_user = self.messages.iter().rposition(|m| m.role == "user")?;
        if start >= last_user {
            return None;
        }
        let end = (start + 1..=last_user).find(|&i| self.messages[i].role == "user")?;
        Some(start..end)
    }

    /// Drops the oldest exchanges until the prompt (plus `extra` tokens already generated)
    /// leaves a quarter of the context free, or nothing more may go. Returns the prompt
    /// tokens after dropping and how many tokens the drop removed from their start
    /// region (the shift hint), or None when nothing could be dropped.
    fn drop_oldest(&mut self, extra: usize, ui: &mut Ui) -> Result<Option<(Vec<u32>, usize)>> {
        let before = self.tokens(&self.messages, true)?;
        let target = self.session.n_ctx() * 3 / 4;
        let mut prompt = before.clone();
        let mut dropped = 0;
        while prompt.len() + extra > target {
            let Some(r) = self.oldest_exchange() else { break };
            dropped += r.len();
            self.messages.drain(r);
            prompt = self.tokens(&self.messages, true)?;
        }
        if dropped == 0 {
            return Ok(None);
        }
        self.shifts += 1;
        self.dropped_messages += dropped;
        ui.note(&format!(
            "context full{}: dropped the {dropped} oldest messages ({} tokens){}; {} tokens remain",
            if extra > 0 { " during the reply" } else { "" },
            before.len().saturating_sub(prompt.len()),
            if self.messages.first().is_some_and(|m| m.role == "system") { ", kept the system prompt" } else { "" },
            prompt.len() + extra
        ));
        let hint = before.len().saturating_sub(prompt.len());
        Ok(Some((prompt, hint)))
    }

    /// Brings the cache to `target`: keeps the common prefix (after moving the cache down
    /// by `shift_hint` tokens where that makes more of it match), evaluates the rest
    /// (at least one token) and returns the last logits and the number evaluated.
    fn sync(&mut self, target: &[u32], shift_hint: Option<usize>) -> Result<(Vec<f32>, usize)> {
        if target.is_empty() {
            return Err(Error::Other("the chat template rendered the conversation to no tokens".into()));
        }
        let cache = self.session.tokens();
        let mut p = common_prefix(cache, target);
        if let Some(d) = shift_hint.filter(|&d| d > 0 && p + d < cache.len()) {
            if common_prefix(&cache[p + d..], &target[p..]) > 0 {
                self.session.shift(p, d)?;
                p = common_prefix(self.session.tokens(), target);
            }
        }
        let p = p.min(target.len() - 1);
        self.session.truncate(p);
        let logits = self.session.eval(&target[p..], Logits::Last)?;
        Ok((logits, target.len() - p))
    }

    /// One exchange: `text` as the user's message, the reply streamed to `ui`.
    pub fn turn(&mut self, text: String, ui: &mut Ui) -> Result<Outcome> {
        let n_ctx = self.session.n_ctx();
        self.messages.push(ChatMessage::new("user", text));
        let mut prompt = match self.tokens(&self.messages, true) {
            Ok(p) => p,
            Err(e) => {
                // The template refuses the conversation with this message: it is not kept.
                self.messages.pop();
                return Err(e);
            }
        };
        let mut hint = None;
        if prompt.len() >= n_ctx {
            let refused = match self.policy {
                CtxFull::Stop => Some(format!(
                    "context full: the conversation with this message is {} tokens and the context holds {n_ctx}. \
                     Nothing was sent. /reset starts over (the system prompt stays), /save FILE keeps the conversation; \
                     or run with a larger -c, or --ctx-full shift to drop the oldest turns.",
                    prompt.len()
                )),
                CtxFull::Shift => {
                    // The system prompt and this message alone must fit before anything is dropped.
                    let alone: Vec<ChatMessage> = self.messages.iter().take(1).filter(|m| m.role == "system").chain(self.messages.last()).cloned().collect();
                    let need = self.tokens(&alone, true)?.len();
                    let dropped = if need < n_ctx { self.drop_oldest(0, ui)? } else { None };
                    match dropped {
                        Some((p, h)) if p.len() < n_ctx => {
                            (prompt, hint) = (p, Some(h));
                            None
                        }
                        _ => Some(format!(
                            "this message does not fit: with the system prompt it is {need} tokens and the context holds {n_ctx} \
                             (nothing was sent; raise -c)"
                        )),
                    }
                }
            };
            if let Some(msg) = refused {
                self.messages.pop();
                return Ok(Outcome::Withdrawn(msg));
            }
        }

        INTERRUPTED.store(false, Ordering::SeqCst);
        REPLYING.store(true, Ordering::SeqCst);
        let r = self.reply(prompt, hint, ui);
        REPLYING.store(false, Ordering::SeqCst);
        let (text, stats) = match r {
            Ok(x) => x,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        if stats.generated == 0 && stats.stop == StopReason::Interrupted {
            self.messages.pop();
            return Ok(Outcome::Withdrawn("stopped before the reply began; the message was not kept".into()));
        }
        self.messages.push(ChatMessage::new("assistant", text));
        self.last = Some(stats.clone());
        Ok(Outcome::Replied(stats))
    }

    fn reply(&mut self, prompt: Vec<u32>, hint: Option<usize>, ui: &mut Ui) -> Result<(String, Stats)> {
        let n_ctx = self.session.n_ctx();
        let t0 = Instant::now();
        let (mut logits, evaluated) = self.sync(&prompt, hint)?;
        for &t in &prompt[prompt.len() - evaluated..] {
            self.sampler.accept(t);
        }
        let prompt_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let tok = Arc::clone(&self.model);
        let tok = &tok.tokenizer;
        let mut generated: Vec<u32> = Vec::new();
        let mut prompt_len = prompt.len();
        let mut dec = clex::tokenizer::StreamDecoder::new();
        let mut text = String::new();
        let limit = self.max_reply.unwrap_or(usize::MAX);
        let stop = loop {
            if INTERRUPTED.load(Ordering::SeqCst) {
                break StopReason::Interrupted;
            }
            if generated.len() >= limit {
                break StopReason::Limit;
            }
            let t = self.sampler.sample(&logits);
            self.sampler.accept(t);
            if tok.is_eog(t) {
                break StopReason::EndOfTurn;
            }
            // The first piece as detokenization gives it (SPM's leading space dropped).
            let piece = if generated.is_empty() { tok.detokenize(&[t], false, false) } else { tok.token_to_piece(t) };
            generated.push(t);
            let s = dec.push(&piece);
            ui.reply(&s);
            text.push_str(&s);
            if self.session.n_past() + 1 > n_ctx {
                if self.policy == CtxFull::Stop {
                    break StopReason::ContextFull;
                }
                ui.reply_break();
                match self.drop_oldest(generated.len(), ui)? {
                    Some((p, h)) if p.len() + generated.len() < n_ctx => {
                        prompt_len = p.len();
                        let target: Vec<u32> = p.into_iter().chain(generated.iter().copied()).collect();
                        logits = self.sync(&target, Some(h))?.0;
                        continue;
                    }
                    _ => break StopReason::ContextFull,
                }
            }
            logits = self.session.eval(&[t], Logits::Last)?;
        };
        let tail = dec.finish();
        ui.reply(&tail);
        text.push_str(&tail);
        let stats = Stats {
            prompt_tokens: prompt_len,
            prompt_evaluated: evaluated,
            prompt_s,
            generated: generated.len(),
            gen_s: t1.elapsed().as_secs_f64(),
            stop,
        };
        Ok((text, stats))
    }

    /// `/ctx`: tokens used of the context, and the CLEX bucket.
    pub fn ctx_report(&self) -> String {
        let s = &self.session;
        let (used, n_ctx) = (s.n_past(), s.n_ctx());
        let conv = if self.messages.is_empty() { 0 } else { self.tokens(&self.messages, false).map_or(0, |t| t.len()) };
        let mut out = format!(
            "context: {used} of {n_ctx} tokens cached ({:.0}%) · conversation: {conv} tokens, {} message{}",
            100.0 * used as f64 / n_ctx.max(1) as f64,
            self.messages.len(),
            if self.messages.len() == 1 { "" } else { "s" }
        );
        let rope = s.rope();
        let t = s.bucket();
        if rope.scaling().is_bucketed() {
            let l = rope.orig_ctx() as usize;
            out += &format!(
                "\nrope: {} · bucket t = {t}{} · L = {l} · re-rotations {}",
                rope.scaling(),
                if t == 0 { " (empty cache)" } else { "" },
                s.rerotations
            );
            if let Some(table) = rope.table() {
                out += &format!(" · hard limit L·T = {}", table.max_tokens());
            }
            if t >= 1 {
                out += &format!(" · this bucket covers up to {} tokens", l * t as usize);
            }
        } else {
            out += &format!("\nrope: {} (no buckets: t = {})", rope.scaling(), t.max(1));
        }
        out += &format!(
            "\nwhen full: {} · shifts so far {} ({} messages dropped)",
            match self.policy {
                CtxFull::Stop => "stop",
                CtxFull::Shift => "shift (drop the oldest turns)",
            },
            self.shifts,
            self.dropped_messages
        );
        out
    }
}
