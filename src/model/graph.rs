//! The LLaMA forward graph on ggml: RMSNorm, RoPE with optional per-pair frequency
//! factors, causal attention over the KV cache (flash or not), SwiGLU.

use super::Model;
use crate::kv::KvCache;
use ggml_sys::safe::{row_size, Graph, RopeArgs, Tensor};
use ggml_sys::{GGML_TYPE_F16, GGML_TYPE_F32, GGML_TYPE_I32};

/// What one forward pass computes.
#[derive(Debug, Clone)]
pub struct ForwardSpec {
    /// Tokens in this batch.
    pub n_tokens: usize,
    /// Tokens already in the cache (the batch starts at this position).
    pub n_past: usize,
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
    pub logits: Tensor<'a>,
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

            // Store this batch's K and V at cells n_past..n_past+nt.
            let kc = kv.k(il);
            let k_row = row_size(kc.ty(), hd * nkv);
            let k_dst = g.view(kc, [hd * nkv, nt, 1, 1], [k_row, k_row * nt as usize, k_row * nt as usize], k_row * s.n_past);
            g.expand(g.cpy(g.reshape(k, &[hd * nkv, nt]), k_dst));
            let vc = kv.v(il);
            if kv.v_trans {
                let el = row_size(vc.ty(), 1);
                let stride = row_size(vc.ty(), kv.n_ctx as i64);
                let v_dst = g.view(vc, [nt, hd * nkv, 1, 1], [stride, stride * (hd * nkv) as usize, stride * (hd * nkv) as usize], el * s.n_past);
                g.expand(g.cpy(g.transpose(v), v_dst));
            } else {
                let v_row = row_size(vc.ty(), hd * nkv);
                let v_dst = g.view(vc, [hd * nkv, nt, 1, 1], [v_row, v_row * nt as usize, v_row * nt as usize], v_row * s.n_past);
                g.expand(g.cpy(v, v_dst));
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
        BatchInputs { tokens, pos, mask, freq_factors: ff, out_ids, logits }
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
