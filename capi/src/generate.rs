//! Streaming generation: options, the token callback, stop reasons.

use crate::session::{clex_session, with_session};
use crate::{check_size, clex_status, invalid, str_arg, Fail};
use clex_core::{CancelToken, Event, GenerateOptions, SamplerConfig, StopReason};
use std::ffi::{c_char, c_void};

/// Why `clex_session_generate` stopped.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum clex_stop_reason {
    /// Not stopped (the call failed).
    CLEX_STOP_NONE = 0,
    /// `max_tokens` tokens were generated.
    CLEX_STOP_MAX_TOKENS = 1,
    /// The model ended its turn (end-of-generation token).
    CLEX_STOP_END_OF_GENERATION = 2,
    /// The text reached one of the stop strings (not delivered).
    CLEX_STOP_STOP_STRING = 3,
    /// `clex_cancel` was called.
    CLEX_STOP_CANCELLED = 4,
    /// The context is full.
    CLEX_STOP_CONTEXT_FULL = 5,
    /// The token callback returned non-zero.
    CLEX_STOP_CALLBACK = 6,
}

/// Receives each piece of generated text: `text` is `len` bytes of UTF-8 (whole
/// characters; NUL-terminated too; valid during the call only), `token` the token id, or
/// -1 for the text released when generation ends. Return 0 to go on, non-zero to stop.
pub type clex_token_callback = Option<unsafe extern "C" fn(text: *const c_char, len: usize, token: i32, user_data: *mut c_void) -> i32>;

/// How `clex_session_generate` runs. Initialise with `clex_generate_options_default()`.
#[repr(C)]
pub struct clex_generate_options {
    /// `sizeof(clex_generate_options)`, set by `clex_generate_options_default()`.
    pub struct_size: u32,
    /// Most tokens to generate; negative: until end of generation or a full context.
    pub max_tokens: i32,
    /// Sampling: temperature (<= 0: greedy), top-k (<= 0: off), top-p, min-p,
    /// repetition penalty (1: off) over the last `repeat_last_n` tokens, seed.
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    pub seed: u64,
    /// `n_stop` stop strings (UTF-8, not empty); may be NULL when `n_stop` is 0.
    pub stop: *const *const c_char,
    pub n_stop: usize,
    /// Go on past end-of-generation tokens.
    pub ignore_eos: bool,
}

/// Fills `opts` with the defaults (llama.cpp's sampling defaults, seed 42, no limit).
///
/// # Safety
/// `opts` is NULL or points to writable memory for a `clex_generate_options`.
#[no_mangle]
pub unsafe extern "C" fn clex_generate_options_default(opts: *mut clex_generate_options) {
    if opts.is_null() {
        return;
    }
    let s = SamplerConfig::default();
    let d = clex_generate_options {
        struct_size: std::mem::size_of::<clex_generate_options>() as u32,
        max_tokens: -1,
        temperature: s.temp,
        top_k: s.top_k,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n as u32,
        seed: s.seed,
        stop: std::ptr::null(),
        n_stop: 0,
        ignore_eos: false,
    };
    // SAFETY: non-NULL and writable per the contract.
    unsafe { opts.write(d) };
}

/// # Safety
/// `o`'s `stop` points to `n_stop` NUL-terminated strings (or `n_stop` is 0).
unsafe fn generate_options(o: &clex_generate_options, cancel: &CancelToken) -> Result<GenerateOptions, Fail> {
    check_size(o.struct_size, std::mem::size_of::<clex_generate_options>(), "clex_generate_options")?;
    let mut stop = Vec::new();
    if o.n_stop > 0 {
        if o.stop.is_null() {
            return Err(invalid("stop is NULL but n_stop is not 0"));
        }
        // SAFETY: `n_stop` readable pointers per the contract.
        for (i, &p) in unsafe { std::slice::from_raw_parts(o.stop, o.n_stop) }.iter().enumerate() {
            // SAFETY: NUL-terminated per the contract.
            stop.push(unsafe { str_arg(p, &format!("stop[{i}]")) }?.to_owned());
        }
    }
    Ok(GenerateOptions {
        max_tokens: usize::try_from(o.max_tokens).ok(),
        sampling: SamplerConfig {
            temp: o.temperature,
            top_k: o.top_k,
            top_p: o.top_p,
            min_p: o.min_p,
            repeat_penalty: o.repeat_penalty,
            repeat_last_n: o.repeat_last_n as usize,
            seed: o.seed,
        },
        stop,
        ignore_eos: o.ignore_eos,
        cancel: Some(cancel.clone()),
    })
}

/// Generates after what the session holds, calling `callback` (may be NULL) with each
/// piece of text; `opts` may be NULL (defaults). `*out_reason` (may be NULL) gets why it
/// stopped. Every token delivered stays in the session, so a later prompt or generate
/// continues after it.
///
/// # Safety
/// `session` is a live handle; `opts` is NULL or a valid `clex_generate_options`;
/// `callback` is NULL or a function safe to call with `user_data`; `out_reason` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn clex_session_generate(
    session: *mut clex_session,
    opts: *const clex_generate_options,
    callback: clex_token_callback,
    user_data: *mut c_void,
    out_reason: *mut clex_stop_reason,
) -> clex_status {
    let mut reason = clex_stop_reason::CLEX_STOP_NONE;
    // SAFETY: forwarded contract.
    let st = unsafe {
        with_session(session, |s, c| {
            // SAFETY: NULL or valid per the contract.
            let go = match opts.as_ref() {
                Some(o) => generate_options(o, c)?,
                None => GenerateOptions { cancel: Some(c.clone()), ..Default::default() },
            };
            let mut buf = Vec::new();
            // SAFETY: the caller's function with its user data, per the contract; `buf`
            // outlives the call and is NUL-terminated.
            let mut emit = |text: &str, token: i32| -> bool {
                let Some(cb) = callback else { return true };
                buf.clear();
                buf.extend_from_slice(text.as_bytes());
                buf.push(0);
                cb(buf.as_ptr().cast(), text.len(), token, user_data) == 0
            };
            for ev in s.generate(go).map_err(Fail::from)? {
                match ev.map_err(Fail::from)? {
                    Event::Token(t) => {
                        if !emit(&t.text, t.token as i32) {
                            reason = clex_stop_reason::CLEX_STOP_CALLBACK;
                            return Ok(());
                        }
                    }
                    Event::Finished { reason: r, text, .. } => {
                        reason = stop_reason(r);
                        if !text.is_empty() {
                            emit(&text, -1);
                        }
                    }
                }
            }
            Ok(())
        })
    };
    if !out_reason.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_reason.write(reason) };
    }
    st
}

fn stop_reason(r: StopReason) -> clex_stop_reason {
    match r {
        StopReason::MaxTokens => clex_stop_reason::CLEX_STOP_MAX_TOKENS,
        StopReason::EndOfGeneration => clex_stop_reason::CLEX_STOP_END_OF_GENERATION,
        StopReason::StopString(_) => clex_stop_reason::CLEX_STOP_STOP_STRING,
        StopReason::Cancelled => clex_stop_reason::CLEX_STOP_CANCELLED,
        StopReason::ContextFull => clex_stop_reason::CLEX_STOP_CONTEXT_FULL,
    }
}
