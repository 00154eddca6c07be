//! Context shift: dropping a range of cached tokens and moving the later ones down, so a
//! conversation can go on past a full context without evaluating again what it keeps.
//!
//! The cache stores keys already rotated to their positions, in the basis of the current
//! bucket ([`Session::bucket`]). Removing `n_discard` cells moves every later token
//! `n_discard` positions back, so its key is rotated by −`n_discard` positions with the
//! forward's own rope (arguments and the bucket's frequency factors): RoPE angles are linear
//! in the position, so the result is the key the token would have at its new position, in
//! the same basis. Values carry no position and are only moved. A later evaluation whose
//! length falls in another CLEX bucket re-rotates the whole cache as usual.
//!
//! As with llama.cpp's context shift, the kept tokens' keys and values still reflect the
//! dropped text they attended to when first evaluated; only their positions change.

use super::Session;
use crate::{Error, Result};
use ggml_sys::safe::{Graph, RopeArgs};

impl Session {
    /// Removes the cached tokens `n_keep..n_keep + n_discard` and moves those after them
    /// down by `n_discard` positions (keys re-rotated). The tokens before `n_keep` (e.g. a
    /// system prompt) are untouched. Returns the number of tokens moved.
    pub fn shift(&mut self, n_keep: usize, n_discard: usize) -> Result<usize> {
        let n = self.tokens.len();
        let end = n_keep.checked_add(n_discard).filter(|&e| e <= n).ok_or_else(|| {
            Error::Other(format!(
                "context shift: cannot drop tokens {n_keep}..{} of a cache of {n} tokens",
                n_keep.saturating_add(n_discard)
            ))
        })?;
        if n_discard == 0 {
            return Ok(0);
        }
        let n_move = n - end;
        if n_move > 0 {
            if i32::try_from(n_discard).is_err() {
                return Err(Error::Context(format!("context shift by {n_discard} positions is too large")));
            }
            let ff = self.rope.freq_factors(self.cur_bucket.max(1));
            let args = shift_args(self.rope.args());
            // The shift graph takes the scheduler; the kept forward graph is rebuilt after.
            self.last_graph = None;
            let g = Graph::new(self.graph_size());
            let inp = self.model.build_shift(&self.kv, &g, end, n_keep, n_move, ff.is_some(), &args);
            self.sched.alloc(&g).map_err(Error::Ggml)?;
            inp.pos.set_i32(&vec![-(n_discard as i32); n_move]);
            if let (Some(t), Some(ff)) = (inp.freq_factors, ff.as_deref()) {
                t.set_f32(ff);
            }
            self.sched.compute(&g).map_err(Error::Ggml)?;
        }
        self.tokens.drain(n_keep..end);
        if self.tokens.is_empty() {
            self.cur_bucket = 0;
        }
        Ok(n_move)
    }
}

/// The forward's rope arguments as a pure rotation: YaRN's magnitude correction (which
/// ggml applies on every call with `ext_factor ≠ 0`) is cancelled, so shifted keys keep
/// their length; the angles (interpolation, ramp, frequency factors) are the forward's.
fn shift_args(a: RopeArgs) -> RopeArgs {
    let attn_factor = if a.ext_factor != 0.0 { 1.0 / (1.0 + 0.1 * (1.0 / a.freq_scale).ln()) } else { 1.0 };
    RopeArgs { attn_factor, ..a }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_args_cancel_yarn_magnitude() {
        let a = RopeArgs {
            n_dims: 64,
            mode: 0,
            n_ctx_orig: 4096,
            freq_base: 10000.0,
            freq_scale: 0.25,
            ext_factor: 1.0,
            attn_factor: 1.3,
            beta_fast: 32.0,
            beta_slow: 1.0,
        };
        let s = shift_args(a);
        // ggml's magnitude: attn_factor · (1 + 0.1·ln(1/freq_scale)) must be 1.
        assert!((s.attn_factor * (1.0 + 0.1 * (1.0f32 / 0.25).ln()) - 1.0).abs() < 1e-6);
        assert_eq!((s.freq_scale, s.ext_factor, s.n_dims), (0.25, 1.0, 64));
        let plain = shift_args(RopeArgs { ext_factor: 0.0, attn_factor: 0.9, ..a });
        assert_eq!(plain.attn_factor, 1.0);
    }
}
