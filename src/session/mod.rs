//! A session: one sequence, its KV cache and the scheduler that runs the model on
//! it. Prompts are evaluated in micro-batches; RoPE scaling that works in buckets
//! (CLEX and its kin) is applied per bucket, re-rotating the cache on a change.

use crate::kv::KvCache;
use crate::model::{v_trans_idxs, BatchInputs, ForwardSpec, Model};
mod chat;
mod plan;
mod shift;
mod state;

pub use plan::{BucketPolicy, RopePlan, RopeSettings};
pub use state::STATE_VERSION;
use crate::{Error, Result};
use ggml_sys::safe::{Backend, Graph, RopeArgs, Sched};
use std::sync::Arc;

/// Which logits a forward returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's (perplexity).
    All,
}

/// How a session runs.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Context size in tokens (0: the model's training context).
    pub n_ctx: usize,
    /// Tokens per forward pass (llama.cpp's `-ub`).
    pub n_ubatch: usize,
    /// CPU threads.
    pub n_threads: usize,
    /// Flash attention.
    pub flash_attn: bool,
    /// K cache type (ggml type id).
    pub type_k: u32,
    /// V cache type (ggml type id).
    pub type_v: u32,
    /// RoPE scaling and CLEX policy.
    pub rope: RopeSettings,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            n_ctx: 0,
            n_ubatch: 512,
            n_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(4),
            flash_attn: false,
            type_k: ggml_sys::GGML_TYPE_F16,
            type_v: ggml_sys::GGML_TYPE_F16,
            rope: RopeSettings::default(),
        }
    }
}

/// A saved copy of a session's cache ([`Session::save_state`]).
pub struct SessionState {
    tokens: Vec<u32>,
    bucket: u32,
    kv: Vec<u8>,
}

impl SessionState {
    /// Tokens in the saved cache.
    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }
}

/// The state of one conversation with a model.
pub struct Session {
    model: Arc<Model>,
    opts: SessionOptions,
    kv: KvCache,
    sched: Sched,
    rope: RopePlan,
    /// Tokens in the cache, in order.
    tokens: Vec<u32>,
    /// Bucket whose basis the cached keys are in (0: none yet).
    cur_bucket: u32,
    /// Number of cache re-rotations done (bucket changes with a non-empty cache).
    pub rerotations: usize,
    /// The last forward graph and what it computes: the next batch of the same shape
    /// (every generated token, until n_kv grows by a pad step) reuses it, skipping the
    /// graph build and the scheduler's split and allocation.
    last_graph: Option<(ForwardSpec, Graph)>,
}

const PAD: usize = 256;

impl Session {
    /// A new session on `model`.
    pub fn new(model: Arc<Model>, mut opts: SessionOptions) -> Result<Self> {
        let hp = &model.hparams;
        if opts.n_ctx == 0 {
            opts.n_ctx = hp.n_ctx_train;
        }
        if opts.n_ubatch == 0 {
            return Err(Error::Other("batch size must be at least 1".into()));
        }
        let rope = RopePlan::new(&model, &opts.rope, opts.n_ctx).map_err(Error::Context)?;
        opts.n_ubatch = opts.n_ubatch.min(opts.n_ctx);
        let backend = Backend::cpu().map_err(Error::Ggml)?;
        backend.set_threads(opts.n_threads);
        // An offloaded model runs on [device, CPU]; the scheduler falls back to the last.
        let device = model.offload.as_ref().map(|o| o.backend()).transpose()?;
        let kv = KvCache::new_split(
            hp,
            opts.n_ctx,
            opts.type_k,
            opts.type_v,
            opts.flash_attn,
            &backend,
            device.as_ref().zip(model.offload.as_ref()).map(|(d, o)| (d, o.n_layers)),
        )?;
        let graph_size = (model.n_tensors() * 8).max(2048);
        let backends = device.into_iter().chain(std::iter::once(backend)).collect();
        let sched = Sched::new(backends, graph_size).map_err(Error::Ggml)?;
        let mut s = Self { model, opts, kv, sched, rope, tokens: Vec::new(), cur_bucket: 0, rerotations: 0, last_graph: None };
        s.reserve()?;
        Ok(s)
    }

    fn graph_size(&self) -> usize {
        (self.model.n_tensors() * 8).max(2048)
    }

    /// Reserves compute memory for the largest batch over the full context.
    fn reserve(&mut self) -> Result<()> {
        let g = Graph::new(self.graph_size());
        let spec = self.spec(self.opts.n_ubatch, self.opts.n_ctx, None, self.rope.args(), true, 1.0);
        let _ = self.model.build_forward(&self.kv, &g, &spec);
        self.sched.reserve(&g).map_err(Error::Ggml)
    }

    fn spec(&self, n_tokens: usize, n_kv: usize, out_rows: Option<usize>, rope: RopeArgs, ff: bool, q_scale: f32) -> ForwardSpec {
        ForwardSpec { n_tokens, n_kv, out_rows, flash_attn: self.opts.flash_attn, q_scale, rope, has_freq_factors: ff }
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    /// The options in force (n_ctx resolved).
    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }
    /// Tokens in the cache.
    pub fn n_past(&self) -> usize {
        self.tokens.len()
    }
    /// The tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// Context size.
    pub fn n_ctx(&self) -> usize {
        self.opts.n_ctx
    }
    /// The RoPE plan (scaling kind, CLEX table).
    pub fn rope(&self) -> &RopePlan {
        &self.rope
    }
    /// The bucket the cache is in (1 = plain RoPE; 0 before the first token).
    pub fn bucket(&self) -> u32 {
        self.cur_bucket
    }
    /// KV cache bytes.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// Forgets every token.
    pub fn reset(&mut self) {
        self.tokens.clear();
        self.cur_bucket = 0;
        self.kv.clear();
    }

    /// A copy of the cache and the tokens in it, to come back to with
    /// [`Session::restore_state`] (e.g. a benchmark's prefilled context).
    pub fn save_state(&self) -> SessionState {
        SessionState { tokens: self.tokens.clone(), bucket: self.cur_bucket, kv: self.kv.snapshot() }
    }

    /// Puts back a state saved from this session (or one with the same options).
    pub fn restore_state(&mut self, st: &SessionState) -> Result<()> {
        if st.tokens.len() > self.opts.n_ctx {
            return Err(Error::Context(format!("a saved state of {} tokens does not fit in -c {}", st.tokens.len(), self.opts.n_ctx)));
        }
        self.kv.restore(&st.kv)?;
        self.tokens.clone_from(&st.tokens);
        self.cur_bucket = st.bucket;
        Ok(())
    }

    /// Keeps only the first `n` tokens (the rest of the cache is masked out).
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
        if self.tokens.is_empty() {
            self.cur_bucket = 0;
        }
    }

    /// Evaluates `tokens` after those already in the cache and returns logits:
    /// `n_vocab` values for [`Logits::Last`], `tokens.len() × n_vocab` for [`Logits::All`].
    pub fn eval(&mut self, tokens: &[u32], want: Logits) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.eval_into(tokens, want, &mut out)?;
        Ok(out)
    }

    /// [`Session::eval`] into `out` (cleared first), whose memory is reused from call to call.
    pub fn eval_into(&mut self, tokens: &[u32], want: Logits, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        if tokens.is_empty() {
            return Err(Error::Other("nothing to evaluate (empty token list)".into()));
        }
        let n_vocab = self.model.hparams.n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::Other(format!("token id {bad} is outside the vocabulary ({n_vocab})")));
        }
        let total = self.tokens.len() + tokens.len();
        if total > self.opts.n_ctx {
            return Err(Error::Context(format!(
                "{total} tokens do not fit in the context of {} ({} cached + {} new); raise -c",
                self.opts.n_ctx,
                self.tokens.len(),
                tokens.len()
            )));
        }
        // One bucket for the whole evaluation: the reference's t of the full length.
        let bucket = self.rope.bucket(total).map_err(Error::Context)?;
        if bucket != self.cur_bucket {
            if !self.tokens.is_empty() {
                self.rerotate(self.cur_bucket, bucket)?;
            }
            self.cur_bucket = bucket;
        }
        let ff = self.rope.freq_factors(bucket);
        out.reserve(if want == Logits::All { tokens.len() * n_vocab } else { n_vocab });
        let n_chunks = tokens.len().div_ceil(self.opts.n_ubatch);
        for (ci, chunk) in tokens.chunks(self.opts.n_ubatch).enumerate() {
            let last_chunk = ci + 1 == n_chunks;
            let rows = match want {
                Logits::All => Some(chunk.len()),
                Logits::Last if last_chunk => Some(1),
                Logits::Last => None,
            };
            self.forward(chunk, rows, ff.as_deref(), total, out)?;
            self.tokens.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// One forward pass of `chunk` at position `n_past`; appends the logits of the last
    /// `rows` tokens (all when rows == chunk.len()) to `out`, or nothing.
    fn forward(&mut self, chunk: &[u32], rows: Option<usize>, ff: Option<&[f32]>, total: usize, out: &mut Vec<f32>) -> Result<()> {
        let n_past = self.tokens.len();
        let nt = chunk.len();
        let n_kv = (n_past + nt).div_ceil(PAD).saturating_mul(PAD).min(self.opts.n_ctx);
        let want_rows = rows.unwrap_or(1);
        // All rows: no selection needed.
        let out_rows = if want_rows == nt { None } else { Some(want_rows) };
        let q_scale = self.rope.q_scale(total);
        let spec = self.spec(nt, n_kv, out_rows, self.rope.args(), ff.is_some(), q_scale);
        if self.last_graph.as_ref().map_or(true, |(s, _)| *s != spec) {
            // Drop the old graph first: its scheduler allocation goes with the new one.
            self.last_graph = None;
            let g = Graph::new(self.graph_size());
            let _ = self.model.build_forward(&self.kv, &g, &spec);
            self.last_graph = Some((spec, g));
        }
        let Self { sched, last_graph, kv, opts, model, .. } = self;
        let g = &last_graph.as_ref().expect("set above").1;
        if !sched.is_allocated(g) {
            sched.alloc(g).map_err(Error::Ggml)?;
        }
        let inp = BatchInputs::find(g).ok_or_else(|| Error::Ggml("forward graph without its inputs".into()))?;

        let toks: Vec<i32> = chunk.iter().map(|&t| t as i32).collect();
        inp.tokens.set_i32(&toks);
        let pos: Vec<i32> = (n_past..n_past + nt).map(|p| p as i32).collect();
        inp.pos.set_i32(&pos);
        let cells: Vec<i64> = (n_past..n_past + nt).map(|p| p as i64).collect();
        inp.k_idxs.set_i64(&cells);
        if kv.v_trans {
            inp.v_idxs.set_i64(&v_trans_idxs(n_past, nt, model.hparams.n_embd_kv(), kv.n_ctx));
        } else {
            inp.v_idxs.set_i64(&cells);
        }
        if let (Some(t), Some(ff)) = (inp.freq_factors, ff) {
            t.set_f32(ff);
        }
        if let Some(t) = inp.out_ids {
            let ids: Vec<i32> = (nt - want_rows..nt).map(|i| i as i32).collect();
            t.set_i32(&ids);
        }
        fill_mask(&inp.mask, n_past, nt, n_kv, opts.flash_attn);
        sched.compute(g).map_err(Error::Ggml)?;
        if rows.is_none() {
            return Ok(());
        }
        let n_vocab = model.hparams.n_vocab;
        let start = out.len();
        out.resize(start + want_rows * n_vocab, 0.0);
        inp.logits.get_f32(0, &mut out[start..]);
        Ok(())
    }

    /// Brings every cached key from bucket `from`'s basis to bucket `to`'s.
    fn rerotate(&mut self, from: u32, to: u32) -> Result<()> {
        let Some(delta) = self.rope.delta_factors(from, to) else { return Ok(()) };
        let n = self.tokens.len();
        // The re-rotation graph takes the scheduler; the kept forward graph is rebuilt after.
        self.last_graph = None;
        let g = Graph::new(self.graph_size());
        let inp = self.model.build_rerotate(&self.kv, &g, n, &self.rope.delta_args());
        self.sched.alloc(&g).map_err(Error::Ggml)?;
        let pos: Vec<i32> = (0..n as i32).collect();
        inp.pos.set_i32(&pos);
        inp.freq_factors.set_f32(&delta);
        self.sched.compute(&g).map_err(Error::Ggml)?;
        self.rerotations += 1;
        Ok(())
    }
}

fn fill_mask(mask: &ggml_sys::safe::Tensor<'_>, n_past: usize, nt: usize, n_kv: usize, f16: bool) {
    // Row i (position n_past + i) sees cells 0..=n_past + i.
    if f16 {
        const NEG_INF: u16 = 0xFC00;
        let mut m = vec![NEG_INF; n_kv * nt];
        for i in 0..nt {
            m[i * n_kv..i * n_kv + n_past + i + 1].fill(0);
        }
        mask.set_f16_bits(&m);
    } else {
        let mut m = vec![f32::NEG_INFINITY; n_kv * nt];
        for i in 0..nt {
            m[i * n_kv..i * n_kv + n_past + i + 1].fill(0.0);
        }
        mask.set_f32(&m);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("n_ctx", &self.opts.n_ctx).field("n_past", &self.tokens.len()).field("bucket", &self.cur_bucket).finish_non_exhaustive()
    }
}
