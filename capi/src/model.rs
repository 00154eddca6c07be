//! Models: loading, sharing, freeing.

use crate::{check_size, guard, invalid, str_arg, clex_status, Fail};
use clex_core::{LoadProgress, Model, ModelOptions};
use std::ffi::{c_char, c_void};
use std::path::Path;
use std::sync::Arc;

/// A loaded model (opaque). Thread-safe: any number of sessions, on any threads, may use
/// one model at once. Sessions keep their model alive: freeing the handle while sessions
/// exist is fine.
pub struct clex_model {
    pub(crate) inner: Arc<Model>,
}

/// Load progress: `fraction` in 0..1 (0 first, 1 last); return false to abandon the
/// load (`clex_model_load` then fails with CLEX_ERR_CANCELLED). Called on the loading
/// thread, during `clex_model_load` only.
pub type clex_progress_callback = Option<unsafe extern "C" fn(fraction: f32, user_data: *mut c_void) -> bool>;

/// How a model loads. Initialise with `clex_model_options_default()`, then change fields.
#[repr(C)]
pub struct clex_model_options {
    /// `sizeof(clex_model_options)`, set by `clex_model_options_default()`.
    pub struct_size: u32,
    /// Layers to run on a GPU (builds with a GPU backend); 0: CPU only.
    pub n_gpu_layers: u32,
    /// Repack weights for the CPU's fastest kernels (default true).
    pub repack: bool,
    /// Load progress (may be NULL).
    pub progress: clex_progress_callback,
    /// Passed to `progress` as is.
    pub progress_user_data: *mut c_void,
}

/// Fills `opts` with the defaults. NULL is ignored.
///
/// # Safety
/// `opts` is NULL or points to writable memory for a `clex_model_options`.
#[no_mangle]
pub unsafe extern "C" fn clex_model_options_default(opts: *mut clex_model_options) {
    if opts.is_null() {
        return;
    }
    let d = clex_model_options {
        struct_size: std::mem::size_of::<clex_model_options>() as u32,
        n_gpu_layers: 0,
        repack: true,
        progress: None,
        progress_user_data: std::ptr::null_mut(),
    };
    // SAFETY: non-NULL and writable per the contract; `write` does not read the old value.
    unsafe { opts.write(d) };
}

/// The C progress callback and its user data, as a Rust closure's capture.
struct CProgress {
    f: unsafe extern "C" fn(f32, *mut c_void) -> bool,
    user_data: *mut c_void,
}

impl CProgress {
    fn call(&self, fraction: f32) -> bool {
        // SAFETY: a C function from the caller with its own user data, called on the
        // loading thread during clex_model_load only (see the Send/Sync impls below).
        unsafe { (self.f)(fraction, self.user_data) }
    }
}

// SAFETY: the callback is only ever called on the thread that called `clex_model_load`,
// while that call runs (LoadProgress is dropped with the options before it returns); the
// pointer is never dereferenced by us, only handed back to the caller's function.
unsafe impl Send for CProgress {}
// SAFETY: as above; no shared access happens from other threads.
unsafe impl Sync for CProgress {}

/// Loads a GGUF model from `path` (UTF-8). `opts` may be NULL (defaults). On success
/// `*out` is a new handle to free with `clex_free_model`; on failure `*out` is NULL.
///
/// # Safety
/// `path` is a NUL-terminated string; `opts` is NULL or a valid `clex_model_options`
/// (its `progress_user_data` stays valid during the call); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn clex_model_load(path: *const c_char, opts: *const clex_model_options, out: *mut *mut clex_model) -> clex_status {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: NUL-terminated per the contract.
        let path = unsafe { str_arg(path, "path") }?;
        let mut mo = ModelOptions::default();
        // SAFETY: NULL or a valid struct per the contract.
        if let Some(o) = unsafe { opts.as_ref() } {
            check_size(o.struct_size, std::mem::size_of::<clex_model_options>(), "clex_model_options")?;
            mo.n_gpu_layers = o.n_gpu_layers as usize;
            mo.repack = o.repack;
            if let Some(f) = o.progress {
                let cp = CProgress { f, user_data: o.progress_user_data };
                mo.progress = Some(LoadProgress::new(move |x| cp.call(x)));
            }
        }
        let model = Model::load_with(Path::new(path), &mo).map_err(Fail::from)?;
        let h = Box::into_raw(Box::new(clex_model { inner: Arc::new(model) }));
        // SAFETY: as above.
        unsafe { out.write(h) };
        Ok(())
    })
}

/// The model's training context length (0 for NULL).
///
/// # Safety
/// `model` is NULL or a live handle from `clex_model_load`.
#[no_mangle]
pub unsafe extern "C" fn clex_model_n_ctx_train(model: *const clex_model) -> u32 {
    // SAFETY: NULL or live per the contract; only read.
    unsafe { model.as_ref() }.map_or(0, |m| m.inner.hparams.n_ctx_train as u32)
}

/// Frees a model handle (NULL is ignored). Sessions made from it stay usable.
///
/// # Safety
/// `model` is NULL or a handle from `clex_model_load` not yet freed; it is not used after.
#[no_mangle]
pub unsafe extern "C" fn clex_free_model(model: *mut clex_model) {
    if !model.is_null() {
        // SAFETY: a pointer from Box::into_raw in clex_model_load, freed once per the contract.
        let _ = catch(|| drop(unsafe { Box::from_raw(model) }));
    }
}

/// Runs `f` without letting a panic out (for functions that return nothing).
pub(crate) fn catch(f: impl FnOnce()) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok()
}
