//! Routing ggml's log lines to a Rust function.

use crate::*;
use std::ffi::{c_void, CStr};
use std::sync::{Mutex, OnceLock};

/// Log levels as ggml reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

type Sink = fn(LogLevel, &str);
static SINK: OnceLock<Sink> = OnceLock::new();
static PENDING: Mutex<(Option<LogLevel>, String)> = Mutex::new((None, String::new()));

unsafe extern "C" fn trampoline(level: ggml_log_level, text: *const std::os::raw::c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: ggml passes a NUL-terminated string valid for the call.
    let s = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let Some(sink) = SINK.get() else { return };
    let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    let lvl = match level {
        GGML_LOG_LEVEL_DEBUG => Some(LogLevel::Debug),
        GGML_LOG_LEVEL_INFO => Some(LogLevel::Info),
        GGML_LOG_LEVEL_WARN => Some(LogLevel::Warn),
        GGML_LOG_LEVEL_ERROR => Some(LogLevel::Error),
        _ => None, // CONT / NONE: continues the previous line
    };
    if let Some(l) = lvl {
        p.0 = Some(l);
    }
    p.1.push_str(&s);
    // ggml emits lines in pieces; forward whole lines only.
    while let Some(nl) = p.1.find('\n') {
        let line: String = p.1.drain(..=nl).collect();
        sink(p.0.unwrap_or(LogLevel::Info), line.trim_end());
    }
}

/// Sends ggml's (and llama.cpp's) log lines to `sink` instead of stderr. The first
/// call wins; later calls only re-install the hook.
pub fn set_log_sink(sink: Sink) {
    let _ = SINK.set(sink);
    // SAFETY: the trampoline is a valid `extern "C"` fn for the process lifetime.
    unsafe {
        ggml_log_set(Some(trampoline), std::ptr::null_mut());
        llama_log_set(Some(trampoline), std::ptr::null_mut());
    }
}
