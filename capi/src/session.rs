//! Sessions: options, prompts, chat turns, cancellation, state files.

use crate::model::{catch, clex_model};
use crate::{check_size, clex_status, guard, invalid, opt_str_arg, str_arg, Fail};
use clex_core::clex::Overflow;
use clex_core::rope::{RopeOverrides, RopeScaling};
use clex_core::{BucketPolicy, CancelToken, ChatMessage, RopeSettings, Session, SessionOptions};
use std::ffi::c_char;
use std::sync::{Mutex, TryLockError};

/// A conversation with a model (opaque): its context (KV cache) and tokens. One call at a
/// time: a call made while another thread's call runs fails with CLEX_ERR_BUSY. May be
/// used from different threads one after the other.
pub struct clex_session {
    inner: Mutex<Session>,
    cancel: CancelToken,
}

/// Stops the generation of one session from any thread (opaque). Stays valid after the
/// session is freed (it then does nothing).
pub struct clex_cancel_handle {
    token: CancelToken,
}

/// How a session runs. Initialise with `clex_session_options_default()`.
#[repr(C)]
pub struct clex_session_options {
    /// `sizeof(clex_session_options)`, set by `clex_session_options_default()`.
    pub struct_size: u32,
    /// Context size in tokens; 0: the model's training context.
    pub n_ctx: u32,
    /// CPU threads; 0: all cores.
    pub n_threads: u32,
    /// Tokens per forward pass; 0: 512.
    pub n_ubatch: u32,
    /// Flash attention (needed for a quantized V cache).
    pub flash_attn: bool,
    /// K / V cache types ("f16", "q8_0", …); NULL: "f16".
    pub type_k: *const c_char,
    pub type_v: *const c_char,
    /// RoPE scaling: "none", "linear", "yarn", "dynamic-ntk", "clex-ntk", "clex"; NULL: the model's.
    pub rope_scaling: *const c_char,
    /// RoPE frequency base / scale overrides; 0: the model's.
    pub rope_freq_base: f32,
    pub rope_freq_scale: f32,
    /// CLEX bucket for the whole session (1..T); 0: per length (the reference's).
    pub clex_fixed_t: u32,
    /// CLEX bucket from `n_ctx` for the whole session.
    pub clex_from_ctx: bool,
    /// Beyond CLEX's L·T: keep t = T (true) or refuse (false).
    pub clex_overflow_clamp: bool,
}

/// Fills `opts` with the defaults. NULL is ignored.
///
/// # Safety
/// `opts` is NULL or points to writable memory for a `clex_session_options`.
#[no_mangle]
pub unsafe extern "C" fn clex_session_options_default(opts: *mut clex_session_options) {
    if opts.is_null() {
        return;
    }
    let d = clex_session_options {
        struct_size: std::mem::size_of::<clex_session_options>() as u32,
        n_ctx: 0,
        n_threads: 0,
        n_ubatch: 0,
        flash_attn: false,
        type_k: std::ptr::null(),
        type_v: std::ptr::null(),
        rope_scaling: std::ptr::null(),
        rope_freq_base: 0.0,
        rope_freq_scale: 0.0,
        clex_fixed_t: 0,
        clex_from_ctx: false,
        clex_overflow_clamp: false,
    };
    // SAFETY: non-NULL and writable per the contract.
    unsafe { opts.write(d) };
}

/// # Safety
/// `o`'s strings are NULL or NUL-terminated.
unsafe fn session_options(o: &clex_session_options) -> Result<SessionOptions, Fail> {
    check_size(o.struct_size, std::mem::size_of::<clex_session_options>(), "clex_session_options")?;
    let mut so = SessionOptions { n_ctx: o.n_ctx as usize, flash_attn: o.flash_attn, ..Default::default() };
    if o.n_threads > 0 {
        so.n_threads = o.n_threads as usize;
    }
    if o.n_ubatch > 0 {
        so.n_ubatch = o.n_ubatch as usize;
    }
    // SAFETY: NULL or NUL-terminated per this function's contract.
    if let Some(t) = unsafe { opt_str_arg(o.type_k, "type_k") }? {
        so.type_k = clex_core::kv::parse_cache_type(t).map_err(Fail::from)?;
    }
    // SAFETY: as above.
    if let Some(t) = unsafe { opt_str_arg(o.type_v, "type_v") }? {
        so.type_v = clex_core::kv::parse_cache_type(t).map_err(Fail::from)?;
    }
    // SAFETY: as above.
    let scaling = unsafe { opt_str_arg(o.rope_scaling, "rope_scaling") }?.map(str::parse::<RopeScaling>).transpose().map_err(invalid)?;
    let positive = |v: f32, what: &str| match v {
        v if v == 0.0 => Ok(None),
        v if v.is_finite() && v > 0.0 => Ok(Some(v)),
        v => Err(invalid(format!("{what} must be 0 (the model's) or positive, not {v}"))),
    };
    let bucket = match (o.clex_fixed_t, o.clex_from_ctx) {
        (0, false) => BucketPolicy::PerLength,
        (0, true) => BucketPolicy::FromContext,
        (t, false) => BucketPolicy::Fixed(t),
        (_, true) => return Err(invalid("clex_fixed_t and clex_from_ctx are exclusive")),
    };
    so.rope = RopeSettings {
        scaling,
        overrides: RopeOverrides {
            freq_base: positive(o.rope_freq_base, "rope_freq_base")?,
            freq_scale: positive(o.rope_freq_scale, "rope_freq_scale")?,
            ..Default::default()
        },
        overflow: Some(if o.clex_overflow_clamp { Overflow::Clamp } else { Overflow::Refuse }),
        bucket,
    };
    Ok(so)
}

/// A new session on `model`; `opts` may be NULL (defaults). `*out` gets a handle to free
/// with `clex_free_session` (NULL on failure).
///
/// # Safety
/// `model` is a live model handle; `opts` is NULL or a valid `clex_session_options` whose
/// strings are NULL or NUL-terminated; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn clex_session_new(model: *const clex_model, opts: *const clex_session_options, out: *mut *mut clex_session) -> clex_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NULL or a live handle per the contract; only read.
        let model = unsafe { model.as_ref() }.ok_or_else(|| invalid("model is NULL"))?;
        // SAFETY: NULL or a valid struct per the contract.
        let so = match unsafe { opts.as_ref() } {
            // SAFETY: the struct's strings are NULL or NUL-terminated per the contract.
            Some(o) => unsafe { session_options(o) }?,
            None => SessionOptions::default(),
        };
        let s = Session::new(model.inner.clone(), so).map_err(Fail::from)?;
        let h = Box::into_raw(Box::new(clex_session { inner: Mutex::new(s), cancel: CancelToken::new() }));
        // SAFETY: as above.
        unsafe { out.write(h) };
        Ok(())
    })
}

/// Runs `f` on the session, one caller at a time; the cancel flag is cleared after.
///
/// # Safety
/// `s` is NULL or a live session handle.
pub(crate) unsafe fn with_session(s: *const clex_session, f: impl FnOnce(&mut Session, &CancelToken) -> Result<(), Fail>) -> clex_status {
    guard(|| {
        // SAFETY: NULL or live per the contract; the Mutex gives exclusive access.
        let h = unsafe { s.as_ref() }.ok_or_else(|| invalid("session is NULL"))?;
        let mut g = match h.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => return Err(Fail(clex_status::CLEX_ERR_BUSY, "the session is in use by another call".into())),
            Err(TryLockError::Poisoned(_)) => {
                return Err(Fail(clex_status::CLEX_ERR_INTERNAL, "the session is unusable after an internal error; free it".into()))
            }
        };
        let r = f(&mut g, &h.cancel);
        h.cancel.reset();
        r
    })
}

fn check_cancel(c: &CancelToken) -> Result<(), Fail> {
    if c.is_cancelled() {
        Err(Fail::from(clex_core::Error::Cancelled))
    } else {
        Ok(())
    }
}

/// Tokenizes `text` (UTF-8) and evaluates it after what the session holds.
///
/// # Safety
/// `session` is a live handle; `text` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clex_session_prompt(session: *mut clex_session, text: *const c_char) -> clex_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_session(session, |s, c| {
            let text = str_arg(text, "text")?;
            check_cancel(c)?;
            s.prompt(text).map(drop).map_err(Fail::from)
        })
    }
}

/// One chat message: role ("system", "user", "assistant", …) and content, UTF-8.
#[repr(C)]
pub struct clex_message {
    pub role: *const c_char,
    pub content: *const c_char,
}

/// Makes the session hold the conversation `messages[0..n]` rendered with a chat template
/// and the opening of the assistant's reply, evaluating only what differs from what it
/// holds. `template_name`: NULL for the model's own template, else a built-in name
/// ("chatml", "llama3", …) or a Jinja file path.
///
/// # Safety
/// `session` is a live handle; `messages` points to `n` messages whose strings are
/// NUL-terminated; `template_name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clex_session_chat(session: *mut clex_session, messages: *const clex_message, n: usize, template_name: *const c_char) -> clex_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_session(session, |s, c| {
            if messages.is_null() || n == 0 {
                return Err(invalid("a chat needs at least one message"));
            }
            // SAFETY: `n` readable messages per the contract.
            let raw = std::slice::from_raw_parts(messages, n);
            let mut msgs = Vec::with_capacity(n);
            for (i, m) in raw.iter().enumerate() {
                let role = str_arg(m.role, &format!("messages[{i}].role"))?;
                let content = str_arg(m.content, &format!("messages[{i}].content"))?;
                msgs.push(ChatMessage::new(role, content));
            }
            let spec = opt_str_arg(template_name, "template_name")?;
            let format = s.model().chat_format(spec).map_err(Fail::from)?;
            check_cancel(c)?;
            s.chat_with(&format, &msgs).map(drop).map_err(Fail::from)
        })
    }
}

/// A handle that stops this session's running (or next) prompt, chat or generation from
/// any thread; free with `clex_free_cancel`. NULL for a NULL session.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn clex_session_cancel_handle(session: *const clex_session) -> *mut clex_cancel_handle {
    // SAFETY: NULL or live per the contract; the token is only cloned.
    match unsafe { session.as_ref() } {
        Some(s) => Box::into_raw(Box::new(clex_cancel_handle { token: s.cancel.clone() })),
        None => std::ptr::null_mut(),
    }
}

/// Stops the session's generation at its next token (the call in progress, or the next
/// one if none runs). Safe from any thread; NULL is ignored.
///
/// # Safety
/// `handle` is NULL or a live handle from `clex_session_cancel_handle`.
#[no_mangle]
pub unsafe extern "C" fn clex_cancel(handle: *const clex_cancel_handle) {
    // SAFETY: NULL or live per the contract; an atomic store only.
    if let Some(h) = unsafe { handle.as_ref() } {
        h.token.cancel();
    }
}

/// Frees a cancel handle (NULL is ignored).
///
/// # Safety
/// `handle` is NULL or a handle not yet freed, not used after.
#[no_mangle]
pub unsafe extern "C" fn clex_free_cancel(handle: *mut clex_cancel_handle) {
    if !handle.is_null() {
        // SAFETY: from Box::into_raw in clex_session_cancel_handle, freed once per the contract.
        let _ = catch(|| drop(unsafe { Box::from_raw(handle) }));
    }
}

/// Saves the session's state (tokens, KV cache, CLEX bucket) to `path`.
///
/// # Safety
/// `session` is a live handle; `path` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clex_session_save(session: *mut clex_session, path: *const c_char) -> clex_status {
    // SAFETY: forwarded contract.
    unsafe { with_session(session, |s, _| s.save(str_arg(path, "path")?).map_err(Fail::from)) }
}

/// Restores a state saved from a session of the same model and options
/// (CLEX_ERR_STATE names the difference otherwise).
///
/// # Safety
/// `session` is a live handle; `path` is NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn clex_session_restore(session: *mut clex_session, path: *const c_char) -> clex_status {
    // SAFETY: forwarded contract.
    unsafe { with_session(session, |s, _| s.restore(str_arg(path, "path")?).map_err(Fail::from)) }
}

/// Forgets everything the session holds.
///
/// # Safety
/// `session` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn clex_session_reset(session: *mut clex_session) -> clex_status {
    // SAFETY: forwarded contract.
    unsafe {
        with_session(session, |s, _| {
            s.reset();
            Ok(())
        })
    }
}

/// Tokens the session holds (0 for NULL or while another call runs).
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn clex_session_n_past(session: *const clex_session) -> usize {
    // SAFETY: NULL or live per the contract.
    unsafe { session.as_ref() }.and_then(|h| h.inner.try_lock().ok().map(|s| s.n_past())).unwrap_or(0)
}

/// Frees a session (NULL is ignored). Must not run while another call on it runs.
///
/// # Safety
/// `session` is NULL or a handle not yet freed, not used after.
#[no_mangle]
pub unsafe extern "C" fn clex_free_session(session: *mut clex_session) {
    if !session.is_null() {
        // SAFETY: from Box::into_raw in clex_session_new, freed once per the contract.
        let _ = catch(|| drop(unsafe { Box::from_raw(session) }));
    }
}
