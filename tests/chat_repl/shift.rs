//! Context shift ([`Session::shift`]) against two oracles:
//!
//! - a fresh session: in a one-layer model a token's key and value depend only on the
//!   token, its position and the RoPE basis, so after dropping a range, the shifted cache
//!   must equal a new session evaluating the kept tokens at their new positions — with
//!   plain RoPE, with a bucketed scaling whose bucket changes across the shift (the cache
//!   is re-rotated after being shifted), for every cache layout (V transposed or not) and
//!   for quantized caches;
//! - llama.cpp's own context shift (`llama_memory_seq_rm` + `llama_memory_seq_add`) on
//!   the Qwen2.5 GGUF, and on the CLEX fixture exported with bucket 3 frozen into
//!   `rope_freqs` (so the rotation goes through frequency factors) against our CLEX
//!   session in bucket 3.
use super::common;
use clex::model::Model;
use clex::rope::RopeScaling;
use clex::session::{BucketPolicy, Logits, RopeSettings, Session, SessionOptions};
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::sync::Arc;

/// Deterministic token ids in `lo..hi`.
fn ids(n: usize, seed: u64, lo: u32, hi: u32) -> Vec<u32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + ((x >> 33) % (hi - lo) as u64) as u32
        })
        .collect()
}

/// Largest |a − b| relative to the largest |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn tiny() -> Arc<Model> {
    Arc::new(Model::load(&common::fixtures().join("llama-2-tiny-random.gguf")).unwrap())
}

/// The same one-layer model as a Qwen2 (NEOX RoPE: pairs (i, i + d/2)), with zero biases.
fn tiny_neox() -> Arc<Model> {
    use clex::gguf::{GgufFile, GgufWriter, Value};
    let out = common::temp_path("tiny-neox.gguf");
    let f = GgufFile::open(&common::fixtures().join("llama-2-tiny-random.gguf")).unwrap();
    let mut w = GgufWriter::from_gguf(&f).unwrap();
    let renamed: Vec<(String, Value)> = w.metadata().iter().filter(|(k, _)| k.starts_with("llama.")).cloned().collect();
    for (k, v) in renamed {
        w.remove_kv(&k);
        w.set_kv(k.replacen("llama.", "qwen2.", 1), v).unwrap();
    }
    w.set_kv("general.architecture", Value::String("qwen2".into())).unwrap();
    let n_old = w.tensors().len();
    for b in ["attn_q", "attn_k", "attn_v"] {
        w.add_tensor(&format!("blk.0.{b}.bias"), ggml_sys::GGML_TYPE_F32, &[8]).unwrap();
    }
    let names: Vec<String> = w.tensors().iter().map(|t| t.name.clone()).collect();
    w.write(&out, |i, o| if i < n_old { o.write_all(f.tensor_data(f.tensor(&names[i]).unwrap())) } else { o.write_all(&[0u8; 32]) })
        .unwrap();
    let m = Model::load(&out).unwrap();
    assert_eq!(m.hparams.arch.rope_mode(), 2, "NEOX");
    Arc::new(m)
}

fn opts(n_ctx: usize, flash: bool, ty: u32, rope: RopeSettings) -> SessionOptions {
    SessionOptions { n_ctx, n_threads: 2, flash_attn: flash, type_k: ty, type_v: ty, rope, ..Default::default() }
}

/// Evaluates `n` tokens, drops `keep..keep + drop`, evaluates `extra` more; returns their
/// logits and those of a fresh session fed the kept tokens and `extra`.
fn shifted_and_fresh(model: &Arc<Model>, o: &SessionOptions, n: usize, keep: usize, drop: usize) -> (Vec<f32>, Vec<f32>, Session) {
    let toks = ids(n, 7, 3, 32000);
    let extra = ids(6, 11, 3, 32000);
    let mut s = Session::new(Arc::clone(model), o.clone()).unwrap();
    s.eval(&toks, Logits::Last).unwrap();
    let moved = s.shift(keep, drop).unwrap();
    assert_eq!(moved, n - keep - drop);
    let kept: Vec<u32> = toks[..keep].iter().chain(&toks[keep + drop..]).copied().collect();
    assert_eq!(s.tokens(), &kept[..]);
    let got = s.eval(&extra, Logits::All).unwrap();
    let mut fresh = Session::new(Arc::clone(model), o.clone()).unwrap();
    let all: Vec<u32> = kept.iter().chain(&extra).copied().collect();
    let want = fresh.eval(&all, Logits::All).unwrap();
    let nv = model.hparams.n_vocab;
    (got, want[(all.len() - extra.len()) * nv..].to_vec(), s)
}

#[test]
fn shift_equals_fresh_evaluation_in_every_cache_layout() {
    // Tolerances: an F32 cache gives the fresh evaluation's logits to rounding (the
    // rotations compose to 1e-7): this is where the rotation is checked. An F16 cache
    // rounds the shifted keys once more (one F16 ulp, as llama.cpp's shift does), which
    // moves these logits by up to ~3e-4: the F16 cases check that path for gross errors.
    // One token more in front moves them by ~1e-3 (the control below).
    let cases = [
        (false, ggml_sys::GGML_TYPE_F32, 1e-5),
        (true, ggml_sys::GGML_TYPE_F32, 1e-5),
        (false, ggml_sys::GGML_TYPE_F16, 6e-4),
        (true, ggml_sys::GGML_TYPE_F16, 6e-4),
    ];
    for (name, model) in [("llama (normal RoPE)", tiny()), ("qwen2 (NEOX RoPE)", tiny_neox())] {
        // The control: one more token in front, so every kept token sits one position later.
        let control = front_control(&model, &opts(512, false, ggml_sys::GGML_TYPE_F32, RopeSettings::default()));
        eprintln!("{name}: one token more in front moves the last logits by {control:.2e}");
        assert!(control > 8e-4, "the model must tell positions apart for this test to mean anything");
        layouts(&model, name, &cases);
    }
}

fn layouts(model: &Arc<Model>, name: &str, cases: &[(bool, u32, f32)]) {
    for &(flash, ty, tol) in cases {
        let o = opts(512, flash, ty, RopeSettings::default());
        // A drop shorter and one longer than what moves (overlapping and disjoint ranges).
        for (n, keep, drop) in [(300, 8, 40), (300, 5, 200), (100, 0, 30)] {
            let (got, want, _) = shifted_and_fresh(model, &o, n, keep, drop);
            let d = rel_diff(&got, &want);
            eprintln!("{name} fa={flash} type={ty} n={n} keep={keep} drop={drop}: max |Δlogit| / max|logit| = {d:.2e} (≤ {tol:.0e})");
            assert!(d <= tol, "shifted cache differs from a fresh evaluation: {d:.3e} > {tol:.0e}");
        }
    }
}

#[test]
fn shift_then_bucket_change_equals_fresh_evaluation() {
    // clex-ntk with L = 32: buckets t = ⌈n/32⌉ with per-pair frequency factors. 140 tokens
    // (t = 5) shifted down to 88 (+6: t = 3): the shift rotates in bucket 5's basis, the
    // next evaluation re-rotates to bucket 3's.
    let model = tiny();
    let mut rope = RopeSettings { scaling: Some(RopeScaling::ClexNtk), ..Default::default() };
    rope.overrides.yarn_orig_ctx = Some(32);
    for ty in [ggml_sys::GGML_TYPE_F32, ggml_sys::GGML_TYPE_F16] {
        let o = opts(256, false, ty, rope.clone());
        let (got, want, s) = shifted_and_fresh(&model, &o, 140, 4, 52);
        assert_eq!((s.bucket(), s.rerotations), (3, 1), "one re-rotation, 5 → 3, after the shift");
        let d = rel_diff(&got, &want);
        let tol = if ty == ggml_sys::GGML_TYPE_F32 { 1e-5 } else { 6e-4 };
        eprintln!("clex-ntk type={ty}: shift in t = 5, re-rotation to t = 3: {d:.2e} (≤ {tol:.0e})");
        assert!(d <= tol, "{d:.3e}");
    }
    // A fixed bucket: the shift alone, in a basis with frequency factors.
    let o = opts(256, true, ggml_sys::GGML_TYPE_F32, RopeSettings { bucket: BucketPolicy::Fixed(4), ..rope });
    let (got, want, s) = shifted_and_fresh(&model, &o, 140, 4, 52);
    assert_eq!((s.bucket(), s.rerotations), (4, 0));
    assert!(rel_diff(&got, &want) <= 1e-5);
}

#[test]
fn bad_shift_ranges_are_errors() {
    let model = tiny();
    let mut s = Session::new(model, opts(64, false, ggml_sys::GGML_TYPE_F16, RopeSettings::default())).unwrap();
    s.eval(&ids(10, 1, 3, 100), Logits::Last).unwrap();
    let e = s.shift(4, 7).unwrap_err().to_string();
    assert!(e.contains("cannot drop tokens 4..11 of a cache of 10"), "{e}");
    assert_eq!(s.shift(3, 0).unwrap(), 0);
    assert_eq!(s.shift(3, 7).unwrap(), 0, "dropping the tail moves nothing");
    assert_eq!(s.n_past(), 3);
}

/// llama.cpp: decode `toks`, remove positions keep..keep+drop, move the rest down, decode
/// `extra`; the logits of every `extra` token.
#[allow(clippy::too_many_arguments)]
fn llama_cpp_shifted(lm: &LlamaModel, toks: &[u32], keep: usize, drop: usize, extra: &[u32], n_ctx: u32, flash: bool, ty: u32, rotate: bool) -> Vec<f32> {
    let kv_ty = match ty {
        ggml_sys::GGML_TYPE_F32 => KvCacheType::F32,
        ggml_sys::GGML_TYPE_Q8_0 => KvCacheType::Q8_0,
        _ => KvCacheType::F16,
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(512)
        .with_n_threads(2)
        .with_n_threads_batch(2)
        .with_type_k(kv_ty)
        .with_type_v(kv_ty)
        .with_flash_attention_policy(if flash { ggml_sys::LLAMA_FLASH_ATTN_TYPE_ENABLED } else { ggml_sys::LLAMA_FLASH_ATTN_TYPE_DISABLED });
    let mut ctx = lm.new_context(common::oracle::backend(), params).expect("context");
    let mut batch = LlamaBatch::new(toks.len(), 1);
    for (i, &t) in toks.iter().enumerate() {
        batch.add(LlamaToken(t as i32), i as i32, &[0], false).unwrap();
    }
    ctx.decode(&mut batch).expect("decode");
    let (k, d, n) = (keep as u32, drop as u32, toks.len() as u32);
    ctx.kv_cache_seq_rm(0, Some(k), Some(k + d)).expect("seq_rm");
    // rotate = false: the control, a drop that leaves a gap in the positions.
    let first = if rotate {
        ctx.kv_cache_seq_add(0, Some(k + d), Some(n), -(drop as i32)).expect("seq_add");
        toks.len() - drop
    } else {
        toks.len()
    };
    let mut batch = LlamaBatch::new(extra.len(), 1);
    for (i, &t) in extra.iter().enumerate() {
        batch.add(LlamaToken(t as i32), (first + i) as i32, &[0], true).unwrap();
    }
    ctx.decode(&mut batch).expect("decode after the shift");
    (0..extra.len() as i32).flat_map(|i| ctx.get_logits_ith(i).to_vec()).collect()
}

fn ours_shifted(model: Arc<Model>, o: SessionOptions, toks: &[u32], keep: usize, drop: usize, extra: &[u32]) -> Vec<f32> {
    let mut s = Session::new(model, o).unwrap();
    s.eval(toks, Logits::Last).unwrap();
    s.shift(keep, drop).unwrap();
    s.eval(extra, Logits::All).unwrap()
}

/// A fixed text for the real model (the README changes).
const TEXT: &str = "The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the wick, \
    polished the great lens, and wrote the weather in a leather book. Ships passed far out on the grey water, and some \
    nights he counted their lights until the fog rolled in from the cape. In winter the storms came one after another, \
    and the waves broke against the rocks so hard that the whole tower hummed. His daughter, who lived in the village \
    across the bay, rowed out on calm Sundays with bread, apples and news. She told him about the new school, the \
    harbour master's quarrel with the fishermen, and the strange machine that could send words along a wire.";

/// The real 24-layer model, Q4_K_M, against llama.cpp's shift. A coarse check: a Q4_K
/// matmul first rounds its input to 8 bits, so the smallest change in the order of the
/// attention sums (llama.cpp writes the new tokens into the freed cells, we keep cells in
/// position order) can flip roundings, and the logits then differ by up to ~3e-2 of their
/// size — as much as between an F16 and an F32 cache on the same text. What this catches is
/// a broken shift on a real model (values not moved, a wrong layer or head layout), which
/// moves them by far more; the rotation itself is checked exactly above.
#[test]
fn shift_matches_llama_cpp_on_qwen() {
    let Some(path) = common::qwen() else { return };
    let model = Arc::new(Model::load(&path).unwrap());
    let all = model.tokenizer.encode(TEXT, true, false);
    assert!(all.len() >= 126, "{} tokens", all.len());
    let (toks, extra) = (&all[..120], &all[120..126]);
    let lm = common::oracle::load(&path);
    // (Quantized caches are not compared: llama.cpp stores quantized keys Hadamard-rotated,
    // so its logits differ from ours by ~5e-2 before any shift.)
    for (flash, ty) in [(false, ggml_sys::GGML_TYPE_F16), (true, ggml_sys::GGML_TYPE_F16)] {
        let want = llama_cpp_shifted(&lm, toks, 12, 50, extra, 256, flash, ty, true);
        let o = SessionOptions { n_ctx: 256, n_threads: 2, flash_attn: flash, type_k: ty, type_v: ty, ..Default::default() };
        let got = ours_shifted(Arc::clone(&model), o.clone(), toks, 12, 50, extra);
        let d = rel_diff(&got, &want);
        eprintln!("qwen fa={flash} type={ty}: shifted 58 tokens by −50: max |Δlogit| / max|logit| = {d:.2e}");
        assert!(d <= 5e-2, "our shift differs from llama.cpp's: {d:.3e}");
    }
}

/// The CLEX fixture converted to an F32 GGUF (once per test process).
fn clex_tiny_f32() -> std::path::PathBuf {
    static P: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let p = common::temp_path("shift-clex-tiny-f32.gguf");
        common::convert_hf(&common::fixtures().join("clex-tiny/hf"), &p, "f32");
        p
    })
    .clone()
}

/// Quantized caches (head_dim 32 allows q8_0/q4_0) on the CLEX fixture cut to its first
/// layer: the shift dequantizes, rotates and quantizes again, so it differs from a fresh
/// evaluation by the quantization error of one more rounding; checked against the control.
#[test]
fn quantized_cache_shift_is_within_quantization_error() {
    use clex::gguf::{GgufFile, GgufWriter, Value};
    let one = common::temp_path("clex-tiny-1layer.gguf");
    let f = GgufFile::open(&clex_tiny_f32()).unwrap();
    let mut w = GgufWriter::from_gguf(&f).unwrap();
    w.set_kv("llama.block_count", Value::U32(1)).unwrap();
    let drop: Vec<String> = w.tensors().iter().map(|t| t.name.clone()).filter(|n| n.starts_with("blk.1.")).collect();
    for n in drop {
        w.remove_tensor(&n);
    }
    let names: Vec<String> = w.tensors().iter().map(|t| t.name.clone()).collect();
    w.write(&one, |i, o| o.write_all(f.tensor_data(f.tensor(&names[i]).unwrap()))).unwrap();
    let model = Arc::new(Model::load(&one).unwrap());
    let rope = RopeSettings { bucket: BucketPolicy::Fixed(2), ..Default::default() };
    let f32 = opts(512, true, ggml_sys::GGML_TYPE_F32, rope.clone());
    let (got, want, _) = shifted_and_fresh(&model, &f32, 300, 8, 100);
    let exact = rel_diff(&got, &want);
    let control = front_control(&model, &f32);
    eprintln!("CLEX 1 layer, t = 2, F32 cache: {exact:.2e} (one token more in front: {control:.2e})");
    assert!(exact <= 1e-5 && control > 1e-3, "{exact:.3e} / {control:.3e}");
    for ty in [ggml_sys::GGML_TYPE_Q8_0, ggml_sys::GGML_TYPE_Q4_0] {
        let (got, fresh, _) = shifted_and_fresh(&model, &opts(512, true, ty, rope.clone()), 300, 8, 100);
        let d = rel_diff(&got, &fresh);
        let own = rel_diff(&fresh, &want);
        eprintln!("type {ty}: shifted vs fresh {d:.2e} (the cache type's own error against F32: {own:.2e})");
        assert!(d <= 2.0 * own, "type {ty}: {d:.3e}");
    }
}

/// How much one more token in front (every later token one position on) moves the last
/// logits: what a test of positions can resolve.
fn front_control(model: &Arc<Model>, o: &SessionOptions) -> f32 {
    let (kept, extra) = (ids(260, 7, 3, 32000), ids(6, 11, 3, 32000));
    let last = |front: &[u32]| {
        let all: Vec<u32> = front.iter().chain(&kept).chain(&extra).copied().collect();
        Session::new(Arc::clone(model), o.clone()).unwrap().eval(&all, Logits::Last).unwrap()
    };
    rel_diff(&last(&[5]), &last(&[]))
}

#[test]
fn clex_shift_matches_llama_cpp_with_the_bucket_frozen() {
    let dir = common::temp_path("shift-clex");
    std::fs::create_dir_all(&dir).unwrap();
    let f32_path = clex_tiny_f32();
    let frozen = dir.join("clex-tiny-t3.gguf");
    clex::convert::export_llamacpp(&f32_path, 3, &frozen).unwrap();
    let toks = ids(150, 5, 3, 32000);
    let extra = ids(4, 9, 3, 32000);
    let lm = common::oracle::load(&frozen);
    let want = llama_cpp_shifted(&lm, &toks, 4, 50, &extra, 256, false, ggml_sys::GGML_TYPE_F16, true);
    let model = Arc::new(Model::load(&f32_path).unwrap());
    let rope = RopeSettings { bucket: BucketPolicy::Fixed(3), ..Default::default() };
    let got = ours_shifted(model, opts(256, false, ggml_sys::GGML_TYPE_F16, rope), &toks, 4, 50, &extra);
    let d = rel_diff(&got, &want);
    // The control: llama.cpp dropping the same tokens without moving the rest (a gap).
    let gap = rel_diff(&llama_cpp_shifted(&lm, &toks, 4, 50, &extra, 256, false, ggml_sys::GGML_TYPE_F16, false), &want);
    eprintln!("CLEX t = 3: shifted 96 tokens by −50: max |Δlogit| / max|logit| = {d:.2e} (leaving a gap instead: {gap:.2e})");
    assert!(d <= 1e-5, "{d:.3e}");
    assert!(gap > 1e-3, "the test must tell a shift from a gap: {gap:.2e}");
    let _ = std::fs::remove_dir_all(&dir);
}

