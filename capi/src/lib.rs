//! The C ABI of clex (`include/clex.h`, generated from this crate by cbindgen).
//!
//! Every function returns a [`clex_status`] (or a value with a documented failure value),
//! never unwinds into C (each body runs under `catch_unwind`), and leaves a message for
//! [`clex_last_error`] on failure. Strings are UTF-8, NUL-terminated on the way in,
//! pointer + length (and NUL-terminated too) on the way out. This crate and `ggml-sys`
//! are the only places in the workspace with `unsafe`: here it is needed to read the raw
//! pointers C hands over; each block says why it is sound.
#![allow(non_camel_case_types)]

mod generate;
mod model;
mod session;

pub use generate::*;
pub use model::*;
pub use session::*;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The version of this ABI. Raised on every incompatible change; compare it with
/// `clex_abi_version()` at run time to catch a header/library mismatch.
pub const CLEX_ABI_VERSION: u32 = 1;

/// What a call returned.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum clex_status {
    /// Success.
    CLEX_OK = 0,
    /// A NULL pointer, a string that is not UTF-8, an option out of range.
    CLEX_ERR_INVALID_ARGUMENT = 1,
    /// A file could not be read or written.
    CLEX_ERR_IO = 2,
    /// The model file is not a valid or supported model.
    CLEX_ERR_MODEL = 3,
    /// The context is too small for the prompt or the conversation.
    CLEX_ERR_CONTEXT = 4,
    /// Stopped by a cancel handle or a progress callback.
    CLEX_ERR_CANCELLED = 5,
    /// A saved session state that does not fit this session (or is corrupt).
    CLEX_ERR_STATE = 6,
    /// The session is in use by another thread.
    CLEX_ERR_BUSY = 7,
    /// An internal error (a bug in clex); the message says what.
    CLEX_ERR_INTERNAL = 8,
    /// Any other failure (ggml, a device, a chat template).
    CLEX_ERR_OTHER = 9,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The message of the last failed call on this thread; an empty string after a call
/// that succeeded. Never NULL. Valid until the next clex call on this thread.
#[no_mangle]
pub extern "C" fn clex_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library's version, e.g. "0.1.0" (static, never freed).
#[no_mangle]
pub extern "C" fn clex_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI version the library was built with (`CLEX_ABI_VERSION` of its header).
#[no_mangle]
pub extern "C" fn clex_abi_version() -> u32 {
    CLEX_ABI_VERSION
}

/// An error on the way out: a status and its message.
pub(crate) struct Fail(pub clex_status, pub String);

impl From<clex_core::Error> for Fail {
    fn from(e: clex_core::Error) -> Self {
        use clex_core::Error as E;
        let status = match &e {
            E::Io { .. } | E::Gguf(clex_core::gguf::GgufError::Io(_)) => clex_status::CLEX_ERR_IO,
            E::Gguf(_) | E::Model(_) | E::Tokenizer(_) | E::Clex(_) => clex_status::CLEX_ERR_MODEL,
            E::Context(_) => clex_status::CLEX_ERR_CONTEXT,
            E::Cancelled => clex_status::CLEX_ERR_CANCELLED,
            E::State(_) => clex_status::CLEX_ERR_STATE,
            E::InvalidArgument(_) => clex_status::CLEX_ERR_INVALID_ARGUMENT,
            _ => clex_status::CLEX_ERR_OTHER,
        };
        Fail(status, e.to_string())
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> Fail {
    Fail(clex_status::CLEX_ERR_INVALID_ARGUMENT, msg.into())
}

/// Runs `f`, turning an error or a panic into a status and the thread's last error.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Fail>) -> clex_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error("");
            clex_status::CLEX_OK
        }
        Ok(Err(Fail(status, msg))) => {
            set_last_error(&msg);
            status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error: {what}"));
            clex_status::CLEX_ERR_INTERNAL
        }
    }
}

/// A UTF-8 string from C; `what` names the argument in errors.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| invalid(format!("{what} is not UTF-8: {e}")))
}

/// [`str_arg`] where NULL means "not given".
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { str_arg(p, what) }.map(Some)
    }
}

/// Checks the `struct_size` of an options struct against this library's.
pub(crate) fn check_size(got: u32, want: usize, what: &str) -> Result<(), Fail> {
    if got as usize == want {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what}.struct_size is {got}, this library's is {want}: initialise it with {what}_default() \
             (a header from another clex version?)"
        )))
    }
}
