//! The LLaMA forward graph on ggml: RMSNorm, RoPE with optional per-pair frequency
//! factors, causal attention over the KV cache (flash or not), SwiGLU.

use super::Model;
use crate::kv::KvCache;
use ggml_sys::safe::{row_size, Graph, RopeArgs, Tensor};
use ggml_sys::{GGML_TYPE_F16, GGML_TYPE_F32, GGML_TYPE_I32, GGML_TYPE_I64};

/// What one forward pass computes. The graph depends on these values only, not on
/// where in the cache the batch goes (positions, cache cells and the mask are inputs), so
/// a graph built for one spec can be computed again for the next batch of the same spec.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardSpec {
    /// Tokens in this batch.
    pub n_tokens: usize,
    /// Cache cells the attention reads (≥ n_past + n_tokens, padded).
    pub n_kv: usize,
    /// Rows of the batch whose logits are wanted (`None`: all).
    pub out_rows: Option<usize>,
    pub flash_attn: bool,
    /// Extra factor on the attention scores (CLEX log_scale), 1 otherwise.
    pub q_scale: f32,
    pub rope: RopeArgs,
    /// Whether a frequency-factor tensor is fed.
    pub has_freq_factors: bool,
}

/// Input tensors to fill after the scheduler allocates the graph.
pub struct BatchInputs<'a> {
    pub tokens: Tensor<'a>,
    pub pos: Tensor<'a>,
    pub mask: Tensor<'a>,
    pub freq_factors: Option<Tensor<'a>>,
    pub out_ids: Option<Tensor<'a>>,
    /// Cache cells the batch's K rows go to (I64, one per token).
    pub k_idxs: Tensor<'a>,
    /// Where the batch's V values go (I64): cells as `k_idxs` for a row-major V cache;
    /// for a transposed one, one index per element (see [`v_trans_idxs`]).
    pub v_idxs: Tensor<'a>,
    pub logits: Tensor<'a>,
}

impl<'a> BatchInputs<'a> {
    /// The inputs of a graph made by [`Model::build_forward`], found by name (for a kept
    /// graph that is computed again).
    pub fn find(g: &'a Graph) -> Option<Self> {
        Some(Self {
            tokens: g.find("inp_tokens")?,
            pos: g.find("inp_pos")?,
            mask: g.find("kq_mask")?,
            freq_factors: g.find("rope_freq_factors"),
            out_ids: g.find("out_ids"),
            k_idxs: g.find("k_idxs")?,
            v_idxs: g.find("v_idxs")?,
            logits: g.find("logits")?,
        })
    }
}

/// The element indices of a transposed V cache ([n_ctx, n_embd_kv], element (e, cell) at
/// e·n_ctx + cell) that a batch of `nt` tokens at cells `n_past..` writes, in the order of
/// the batch's V values ([n_embd_kv, nt] row-major: token t, element e at t·n_embd_kv + e).
pub fn v_trans_idxs(n_past: usize, nt: usize, n_embd_kv: usize, n_ctx: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(nt * n_embd_kv);
    for t in 0..nt {
        out.extend((0..n_embd_kv).map(|e| (e * n_ctx + n_past + t) as i64));
    }
    out
}

impl Model {
    /// Builds the forward graph of one batch into `g`.
    pub fn build_forward<'a>(&'a self, kv: &'a KvCache, g: &'a Graph, s: &ForwardSpec) -> BatchInputs<'a> {
        let hp = &self.hparams;
        let w = |i: usize| self.store.get(i);
        let nt = s.n_tokens as i64;
        let (hd, nh, nkv) = (hp.head_dim as i64, hp.n_head as i64, hp.n_head_kv as i64);
        let n_kv = s.n_kv as i64;

        let tokens = g.input("inp_tokens", GGML_TYPE_I32, &[nt]);
        let pos = g.input("inp_pos", GGML_TYPE_I32, &[nt]);
        let mask_ty = if s.flash_attn { GGML_TYPE_F16 } else { GGML_TYPE_F32 };
        let mask = g.input("kq_mask", mask_ty, &[n_kv, nt]);
        let ff = s.has_freq_factors.then(|| g.input("rope_freq_factors", GGML_TYPE_F32, &[hp.n_rot as i64 / 2]));
        let out_ids = s.out_rows.map(|n| g.input("out_ids", GGML_TYPE_I32, &[n as i64]));
        let k_idxs = g.input("k_idxs", GGML_TYPE_I64, &[nt]);
        let v_idxs = g.input("v_idxs", GGML_TYPE_I64, &[if kv.v_trans { nt * hd * nkv } else { nt }]);
        let kq_scale = s.q_scale / (hp.head_dim as f32).sqrt();

        let mut x = g.get_rows(w(self.w.tok_embd), tokens);
        let n_layer = self.w.layers.len();
        for (il, l) in self.w.layers.iter().enumerate() {
            let inp = x;
            let cur = g.mul(g.rms_norm(inp, hp.rms_eps), w(l.attn_norm));
            let proj = |wi: usize, bi: Option<usize>| {
                let t = g.mul_mat(w(wi), cur);
                bi.map_or(t, |b| g.add(t, w(b)))
            };
            let q = g.reshape(proj(l.wq, l.bq), &[hd, nh, nt]);
            let k = g.reshape(proj(l.wk, l.bk), &[hd, nkv, nt]);
            let v = proj(l.wv, l.bv);
            let q = g.rope(q, pos, ff, &s.rope);
            let k = g.rope(k, pos, ff, &s.rope);

            // Store this batch's K and V in the cells named by the index inputs.
            let kc = kv.k(il);
            let k_row = row_size(kc.ty(), hd * nkv);
            g.expand(g.set_rows(kc, g.reshape(k, &[hd * nkv, nt]), k_idxs));
            let vc = kv.v(il);
            if kv.v_trans {
                // One-element rows: the [n_ctx, n_embd_kv] cache as n_ctx·n_embd_kv rows.
                let cells = g.reshape(vc, &[1, kv.n_ctx as i64 * hd * nkv]);
                g.expand(g.set_rows(cells, g.reshape(v, &[1, hd * nkv * nt]), v_idxs));
            } else {
                g.expand(g.set_rows(vc, v, v_idxs));
            }

            // Attention over cells 0..n_kv.
            let q = g.permute(q, [0, 2, 1, 3]); // [hd, nt, nh]
            let k_head = row_size(kc.ty(), hd);
            let k_all = g.view(kc, [hd, nkv, n_kv, 1], [k_head, k_row, k_row * s.n_kv], 0);
            let k_all = g.permute(k_all, [0, 2, 1, 3]); // [hd, n_kv, nkv]
            let attn = if s.flash_attn {
                let v_row = row_size(vc.ty(), hd * nkv);
                let v_head = row_size(vc.ty(), hd);
                let v_all = g.view(vc, [hd, nkv, n_kv, 1], [v_head, v_row, v_row * s.n_kv], 0);
                let v_all = g.permute(v_all, [0, 2, 1, 3]);
                let o = g.flash_attn(q, k_all, v_all, mask, kq_scale); // [hd, nh, nt]
                g.reshape(o, &[hd * nh, nt])
            } else {
                let kq = g.mul_mat(k_all, q); // [n_kv, nt, nh]
                g.set_f32_acc(kq);
                let kq = g.soft_max(kq, Some(mask), kq_scale);
                let el = row_size(vc.ty(), 1);
                let stride = row_size(vc.ty(), kv.n_ctx as i64);
                // V^T view: [n_kv, hd, nkv]
                let v_t = g.view(vc, [n_kv, hd, nkv, 1], [stride, stride * hd as usize, stride * (hd * nkv) as usize], 0);
                let _ = el;
                let kqv = g.mul_mat(v_t, kq); // [hd, nt, nh]
                let o = g.permute(kqv, [0, 2, 1, 3]); // [hd, nh, nt]
                g.reshape(g.cont(o), &[hd * nh, nt])
            };
            let mut attn = g.mul_mat(w(l.wo), attn);
            let mut inp = inp;
            if il + 1 == n_layer {
                // Only the wanted rows go through the last feed-forward and the output.
                if let Some(ids) = out_ids {
                    attn = g.get_rows(attn, ids);
                    inp = g.get_rows(inp, ids);
                }
            }
            let h = g.add(attn, inp);
            let cur = g.mul(g.rms_norm(h, hp.rms_eps), w(l.ffn_norm));
            let act = g.swiglu(g.mul_mat(w(l.gate), cur), g.mul_mat(w(l.up), cur));
            x = g.add(g.mul_mat(w(l.down), act), h);
        }
        let x = g.mul(g.rms_norm(x, hp.rms_eps), w(self.w.output_norm));
        let logits = g.mul_mat(w(self.w.output.unwrap_or(self.w.tok_embd)), x);
        g.name(logits, "logits");
        g.output(logits);
        BatchInputs { tokens, pos, mask, freq_factors: ff, out_ids, k_idxs, v_idxs, logits }
    }
}

/// Inputs of a cache re-rotation graph.
pub struct RerotateInputs<'a> {
    pub pos: Tensor<'a>,
    pub freq_factors: Tensor<'a>,
}

impl Model {
    /// A graph that rotates the first `n` cached keys of every layer by the frequency
    /// factors fed in (positions 0..n), in place. Quantized caches go through F32.
    pub fn build_rerotate<'a>(&'a self, kv: &'a KvCache, g: &'a Graph, n: usize, rope: &RopeArgs) -> RerotateInputs<'a> {
        let hp = &self.hparams;
        let (hd, nkv) = (hp.head_dim as i64, hp.n_head_kv as i64);
        let pos = g.input("shift_pos", GGML_TYPE_I32, &[n as i64]);
        let ff = g.input("shift_freq_factors", GGML_TYPE_F32, &[hp.n_rot as i64 / 2]);
        for il in 0..hp.n_layer {
            let kc = kv.k(il);
            let k_row = row_size(kc.ty(), hd * nkv);
            let k_head = row_size(kc.ty(), hd);
            let view = g.view(kc, [hd, nkv, n as i64, 1], [k_head, k_row, k_row * n], 0);
            let src = if kc.ty() == GGML_TYPE_F32 || kc.ty() == GGML_TYPE_F16 { view } else { g.cast(view, GGML_TYPE_F32) };
            let rotated = g.rope(src, pos, Some(ff), rope);
            g.expand(g.cpy(rotated, view));
        }
        RerotateInputs { pos, freq_factors: ff }
    }
}

/// Inputs of a context-shift graph ([`Model::build_shift`]).
pub struct ShiftInputs<'a> {
    /// The rotation of every moved key, as a position (I32, one per moved cell: −n_discard).
    pub pos: Tensor<'a>,
    /// The current bucket's frequency factors, when the forward uses them.
    pub freq_factors: Option<Tensor<'a>>,
}

impl Model {
    /// A graph that moves the `n` cached cells at `from..from + n` down to `to..to + n`
    /// (`to < from`) in every layer, rotating the keys by the positions fed in (the same
    /// rope as the forward: `rope` and, with `has_ff`, the frequency factors), as
    /// llama.cpp's context shift does. Sources are copied out before the destinations are
    /// written, so the ranges may overlap. Quantized keys go through F32.
    #[allow(clippy::too_many_arguments)]
    pub fn build_shift<'a>(
        &'a self,
        kv: &'a KvCache,
        g: &'a Graph,
        from: usize,
        to: usize,
        n: usize,
        has_ff: bool,
        rope: &RopeArgs,
    ) -> ShiftInputs<'a> {
        let hp = &self.hparams;
        let (hd, nkv) = (hp.head_dim as i64, hp.n_head_kv as i64);
        let n_embd_kv = hd * nkv;
        let pos = g.input("shift_pos", GGML_TYPE_I32, &[n as i64]);
        let ff = has_ff.then(|| g.input("shift_freq_factors", GGML_TYPE_F32, &[hp.n_rot as i64 / 2]));
        for il in 0..hp.n_layer {
            let kc = kv.k(il);
            let k_row = row_size(kc.ty(), n_embd_kv);
            let k_head = row_size(kc.ty(), hd);
            let k_at = |cell: usize| g.view(kc, [hd, nkv, n as i64, 1], [k_head, k_row, k_row * n], k_row * cell);
            let src = k_at(from);
            let src = if kc.ty() == GGML_TYPE_F32 || kc.ty() == GGML_TYPE_F16 { src } else { g.cast(src, GGML_TYPE_F32) };
            let rotated = g.rope(src, pos, ff, rope);
            g.expand(g.cpy(rotated, k_at(to)));

            let vc = kv.v(il);
            let v_at = |cell: usize| {
                if kv.v_trans {
                    // [n_ctx, n_embd_kv]: the moved cells are a column block of each row.
                    let stride = row_size(vc.ty(), kv.n_ctx as i64);
                    g.view(vc, [n as i64, n_embd_kv, 1, 1], [stride, stride * n_embd_kv as usize, stride * n_embd_kv as usize], row_size(vc.ty(), 1) * cell)
                } else {
                    let v_row = row_size(vc.ty(), n_embd_kv);
                    g.view(vc, [n_embd_kv, n as i64, 1, 1], [v_row, v_row * n, v_row * n], v_row * cell)
                }
            };
            // A copy in compute memory first: source and destination may overlap.
            let moved = g.cont(v_at(from));
            g.expand(g.cpy(moved, v_at(to)));
        }
        ShiftInputs { pos, freq_factors: ff }
    }
}
