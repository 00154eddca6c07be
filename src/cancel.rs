//! Cancelling a generation from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that stops a generation ([`crate::GenerateOptions::cancel`]) or a prompt
/// evaluation from another thread. Clones share the flag; `Send + Sync`, cheap to clone.
///
/// The flag is sticky: once [`CancelToken::cancel`] is called, every generation that
/// watches it stops at its next token until [`CancelToken::reset`]. A generation checks it
/// before each token, so at most the token being produced when the cancel arrives is
/// still delivered.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every generation watching this token to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called (since the last reset).
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Clears the flag, so the token can watch another generation.
    pub fn reset(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_across_threads() {
        let t = CancelToken::new();
        assert!(!t.is_cancelled());
        let c = t.clone();
        std::thread::spawn(move || c.cancel()).join().unwrap();
        assert!(t.is_cancelled());
        t.reset();
        assert!(!t.is_cancelled());
    }
}
