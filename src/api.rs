//! Pieces of the embedding API that belong to no one module: where ggml's log goes, and
//! the load progress callback. See docs/LIBRARY.md for the whole API.

use crate::{Error, Result};
use std::sync::{Arc, Once};

/// Routes ggml's (and llama.cpp's) own log lines into `tracing` (target `ggml`): errors
/// and warnings as such, ggml's info lines as `debug`, its debug lines as `trace`.
///
/// The library calls this itself, once, on the first [`crate::Model::load_with`]; calling
/// it again does nothing. With no `tracing` subscriber installed nothing is printed, so a
/// program embedding clex is silent unless it asks for logs.
pub fn route_ggml_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        ggml_sys::safe::set_log_sink(|level, line| match level {
            ggml_sys::safe::LogLevel::Error => tracing::error!(target: "ggml", "{line}"),
            ggml_sys::safe::LogLevel::Warn => tracing::warn!(target: "ggml", "{line}"),
            ggml_sys::safe::LogLevel::Info => tracing::debug!(target: "ggml", "{line}"),
            ggml_sys::safe::LogLevel::Debug => tracing::trace!(target: "ggml", "{line}"),
        });
    });
}

/// A load progress callback ([`crate::model::ModelOptions::progress`]): called with a
/// fraction in 0..=1 on the loading thread as the model loads (0 first, 1 last, never
/// decreasing). Returning `false` abandons the load, which then fails with
/// [`Error::Cancelled`].
#[derive(Clone)]
pub struct LoadProgress(Arc<dyn Fn(f32) -> bool + Send + Sync>);

impl LoadProgress {
    /// Wraps a callback.
    pub fn new(f: impl Fn(f32) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Reports `fraction`; `Err(Cancelled)` when the callback asks to stop.
    pub(crate) fn report(&self, fraction: f32) -> Result<()> {
        if (self.0)(fraction.clamp(0.0, 1.0)) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
}

impl std::fmt::Debug for LoadProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadProgress(..)")
    }
}

/// Reports `fraction` to an optional callback.
pub(crate) fn report(p: Option<&LoadProgress>, fraction: f32) -> Result<()> {
    p.map_or(Ok(()), |p| p.report(fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_false_is_cancelled() {
        let p = LoadProgress::new(|f| f < 0.5);
        assert!(report(Some(&p), 0.2).is_ok());
        assert!(matches!(report(Some(&p), 0.7), Err(Error::Cancelled)));
        assert!(report(None, 0.7).is_ok());
    }
}
