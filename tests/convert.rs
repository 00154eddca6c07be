//! The Hugging Face → GGUF converter on the clex-tiny fixture (and models built from it),
//! checked against the source safetensors, the fixture's reference outputs and llama.cpp.
mod common;
use clex::convert::{self, ConvertOptions, ConvertReport, OutType};
use clex::gguf::{GgufFile, Value};
use safetensors::SafeTensors;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn hf_dir() -> PathBuf {
    common::fixtures().join("clex-tiny/hf")
}

fn reference() -> Json {
    let p = common::fixtures().join("clex-tiny/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A fresh, empty folder in the temp directory.
fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "clex-convert-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(src: &Path, out_dir: &Path, t: OutType) -> (PathBuf, ConvertReport) {
    let out = out_dir.join(format!("model-{t}.gguf"));
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let last = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let l2 = last.clone();
    let opts = ConvertOptions::new(src, &out, t).with_progress(move |p| {
        c2.fetch_add(1, Ordering::Relaxed);
        assert!(p.bytes_done <= p.bytes_total && p.index < p.n_tensors);
        *l2.lock().unwrap() = (p.bytes_done, p.bytes_total);
    });
    let rep = convert::convert(&opts).unwrap_or_else(|e| panic!("convert {t}: {e}"));
    assert!(calls.load(Ordering::Relaxed) >= rep.n_tensors);
    let (done, total) = *last.lock().unwrap();
    assert_eq!(done, total, "progress ends at 100%");
    eprintln!(
        "convert {} → {t}: {:.3} s, {} bytes, types {:?}",
        src.display(),
        rep.elapsed.as_secs_f64(),
        rep.file_bytes,
        rep.type_counts
    );
    (out, rep)
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// A source tensor as f32 plus its shape.
fn src_tensor(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap();
    let v = match t.dtype() {
        safetensors::Dtype::F32 => f32s(t.data()),
        safetensors::Dtype::F16 => {
            t.data().chunks_exact(2).map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        }
        safetensors::Dtype::BF16 => {
            t.data().chunks_exact(2).map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        }
        d => panic!("dtype {d:?}"),
    };
    (v, t.shape().to_vec())
}

/// llama.cpp's `permute` written as the reshape it is: [n_head, 2, hd/2, cols] → swap the
/// middle axes → [n_head, hd/2, 2, cols].
fn hand_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let half = rows / n_head / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let src = ((h * 2 + s) * half + i) * cols;
                let dst = ((h * half + i) * 2 + s) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

fn get<'a>(f: &'a GgufFile, key: &str) -> &'a Value {
    f.get(key).unwrap_or_else(|| panic!("missing key {key}"))
}

#[test]
fn clex_tiny_to_f32() {
    let out_dir = temp_dir("f32");
    let (path, rep) = run(&hf_dir(), &out_dir, OutType::F32);
    assert!(rep.clex && rep.arch == "llama" && rep.n_vocab == 32000 && rep.context_length == 512);
    let f = GgufFile::open(&path).unwrap();

    // Keys.
    let u = |k: &str| f.get_u32(k).unwrap().unwrap_or_else(|| panic!("{k}"));
    let fl = |k: &str| f.get_f32(k).unwrap().unwrap_or_else(|| panic!("{k}"));
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(u("llama.context_length"), 512, "L·T");
    assert_eq!(u("llama.embedding_length"), 128);
    assert_eq!(u("llama.block_count"), 2);
    assert_eq!(u("llama.feed_forward_length"), 344);
    assert_eq!(u("llama.attention.head_count"), 4);
    assert_eq!(u("llama.attention.head_count_kv"), 2);
    assert_eq!(u("llama.rope.dimension_count"), 32);
    assert_eq!(u("llama.vocab_size"), 32000);
    assert_eq!(fl("llama.rope.freq_base"), 10000.0);
    assert_eq!(fl("llama.attention.layer_norm_rms_epsilon"), 1e-5);
    assert_eq!(u("general.file_type"), 0);
    assert_eq!(u("general.quantization_version"), 2);
    assert_eq!(f.get_str("llama.rope.scaling.type").unwrap(), Some("clex"));
    assert_eq!(u("llama.rope.scaling.original_context_length"), 64);
    assert_eq!(get(&f, "llama.rope.clex.max_factor"), &Value::U32(8));
    assert_eq!(get(&f, "llama.rope.clex.param_factor"), &Value::U32(1));
    assert_eq!(get(&f, "llama.rope.clex.act"), &Value::String("tanh".into()));
    assert_eq!(get(&f, "llama.rope.clex.time_dt"), &Value::F32(0.01));
    assert_eq!(get(&f, "llama.rope.clex.log_scale"), &Value::Bool(false));
    assert_eq!(get(&f, "llama.rope.clex.ntk_base"), &Value::F32(10000.0));
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), Some("llama"));
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), Some("default"));
    assert_eq!(get(&f, "tokenizer.ggml.bos_token_id"), &Value::U32(1));
    assert_eq!(get(&f, "tokenizer.ggml.eos_token_id"), &Value::U32(2));
    assert_eq!(get(&f, "tokenizer.ggml.unknown_token_id"), &Value::U32(0));
    assert_eq!(get(&f, "tokenizer.ggml.add_bos_token"), &Value::Bool(true));
    assert_eq!(get(&f, "tokenizer.ggml.add_eos_token"), &Value::Bool(false));
    assert!(f.get("tokenizer.ggml.padding_token_id").is_none());

    // Tensors: names, ggml shapes, all F32, data equal to the source (Q/K permuted).
    let bytes = std::fs::read(hf_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(f.tensors().len(), 24);
    let mut expect: Vec<(&str, String, Vec<u64>)> = vec![
        ("model.embed_tokens.weight", "token_embd.weight".into(), vec![128, 32000]),
        ("model.norm.weight", "output_norm.weight".into(), vec![128]),
        ("lm_head.weight", "output.weight".into(), vec![128, 32000]),
        ("model.clex_layer.proj_func.ode_up_proj", "clex.ode_up_proj".into(), vec![32, 16]),
        ("model.clex_layer.proj_func.ode_down_proj", "clex.ode_down_proj".into(), vec![16, 32]),
        ("model.clex_layer.inv_freq", "clex.inv_freq".into(), vec![16]),
    ];
    let layer_names: [(&'static str, &'static str, [u64; 2]); 9] = [
        ("input_layernorm.weight", "attn_norm.weight", [128, 0]),
        ("self_attn.q_proj.weight", "attn_q.weight", [128, 128]),
        ("self_attn.k_proj.weight", "attn_k.weight", [128, 64]),
        ("self_attn.v_proj.weight", "attn_v.weight", [128, 64]),
        ("self_attn.o_proj.weight", "attn_output.weight", [128, 128]),
        ("post_attention_layernorm.weight", "ffn_norm.weight", [128, 0]),
        ("mlp.gate_proj.weight", "ffn_gate.weight", [128, 344]),
        ("mlp.up_proj.weight", "ffn_up.weight", [128, 344]),
        ("mlp.down_proj.weight", "ffn_down.weight", [344, 128]),
    ];
    let mut owned = Vec::new();
    for l in 0..2 {
        for (hf, gg, d) in layer_names {
            let dims: Vec<u64> = d.iter().copied().filter(|&x| x > 0).collect();
            owned.push((format!("model.layers.{l}.{hf}"), format!("blk.{l}.{gg}"), dims));
        }
    }
    for (hf, gg, dims) in &owned {
        expect.push((hf.as_str(), gg.clone(), dims.clone()));
    }
    for (hf, gg, dims) in &expect {
        let t = f.tensor(gg).unwrap_or_else(|| panic!("missing tensor {gg}"));
        assert_eq!(&t.dims, dims, "{gg} shape");
        assert_eq!(t.ty.name, "f32", "{gg} type");
        let (src, shape) = src_tensor(&st, hf);
        let got = f32s(f.tensor_data(t));
        let want = if gg.ends_with("attn_q.weight") {
            hand_permute(&src, shape[0], shape[1], 4)
        } else if gg.ends_with("attn_k.weight") {
            hand_permute(&src, shape[0], shape[1], 2)
        } else {
            src.clone()
        };
        assert!(got == want, "{gg} data differs from {hf}");
        if gg.ends_with("attn_q.weight") || gg.ends_with("attn_k.weight") {
            assert!(got != src, "{gg} was not permuted");
        }
    }

    // The runtime's CLEX loader accepts the file and solves the fixture's table.
    let hp = clex::model::HParams::from_gguf(&f).unwrap();
    let table = clex::model::load_clex(&f, &hp).unwrap().expect("a CLEX table");
    let r = reference();
    for (ti, row) in r["table"]["z"].as_array().unwrap().iter().enumerate().skip(1) {
        let z = table.z(ti as u32 + 1);
        for (j, want) in row.as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap() as f32;
            assert!(((z[j] - want) / want).abs() < 1e-4, "z({})[{j}] = {} vs {want}", ti + 1, z[j]);
        }
    }
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn sentencepiece_vocab_matches_llama_cpp_layout() {
    let out_dir = temp_dir("vocab");
    let (path, _) = run(&hf_dir(), &out_dir, OutType::F16);
    let f = GgufFile::open(&path).unwrap();
    let tokens = f.get_array("tokenizer.ggml.tokens").unwrap().unwrap().as_strings().unwrap().to_vec();
    let scores = f.get_array("tokenizer.ggml.scores").unwrap().unwrap().to_f32().unwrap();
    let types = f.get_array("tokenizer.ggml.token_type").unwrap().unwrap().to_i64().unwrap();
    assert_eq!((tokens.len(), scores.len(), types.len()), (32000, 32000, 32000));
    assert_eq!(&tokens[..3], ["<unk>", "<s>", "</s>"]);
    // llama.cpp's converter marks tokenizer_config.json's added_tokens_decoder entries
    // (special: true) as CONTROL with score -1000, <unk> included.
    assert_eq!(&types[..3], [3, 3, 3]);
    assert_eq!(&scores[..3], [-1000.0, -1000.0, -1000.0]);
    for b in 0..256 {
        assert_eq!(tokens[3 + b], format!("<0x{b:02X}>"));
        assert_eq!(types[3 + b], 6, "byte token {b}");
        assert_eq!(scores[3 + b], 0.0);
    }
    assert!(types[259..].iter().all(|&t| t == 1), "all other pieces NORMAL");
    assert_eq!(tokens[259], "▁▁");
    // Mistral's model gives its whitespace-run pieces a score of -1e9; the rest are the BPE
    // merge ranks, descending: -2 for "▁t" (id 261) … -31740 for the last piece.
    assert_eq!((scores[259], tokens[260].as_str(), scores[260]), (-1e9, "▁▁▁▁", -1e9));
    assert_eq!((tokens[261].as_str(), scores[261]), ("▁t", -2.0));
    assert_eq!(scores[31999], -31740.0);
    let ranked: Vec<f32> = scores[259..].iter().copied().filter(|&s| s > -1e9).collect();
    assert!(ranked.windows(2).all(|w| w[0] > w[1]), "SentencePiece BPE scores descend");
    assert_eq!(scores[259..].iter().filter(|&&s| s == -1e9).count(), 15);

    // Same layout as the LLaMA-2 vocabulary llama.cpp's converter wrote into the fixture (an
    // older converter: it kept SentencePiece's own types for ids 0..3).
    let l2 = GgufFile::open(&common::fixtures().join("llama-2-tiny-random.gguf")).unwrap();
    let l2_tokens = l2.get_array("tokenizer.ggml.tokens").unwrap().unwrap().as_strings().unwrap().to_vec();
    let l2_scores = l2.get_array("tokenizer.ggml.scores").unwrap().unwrap().to_f32().unwrap();
    let l2_types = l2.get_array("tokenizer.ggml.token_type").unwrap().unwrap().to_i64().unwrap();
    assert_eq!(&l2_types[..3], [2, 3, 3]);
    assert_eq!(&l2_tokens[..259], &tokens[..259]);
    assert_eq!(&l2_types[3..], &types[3..]);
    assert_eq!(&l2_scores[3..259], &scores[3..259]);
    assert!(l2_scores.iter().all(|s| s.is_finite() && *s <= 0.0));
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// A copy of clex-tiny whose config has no rope_scaling (a plain LLaMA), files symlinked.
fn plain_copy(dir: &Path) -> PathBuf {
    let d = dir.join("hf-plain");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["model.safetensors", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"] {
        std::os::unix::fs::symlink(hf_dir().join(f), d.join(f)).unwrap();
    }
    let mut cfg: serde_json::Map<String, Json> =
        serde_json::from_str(&std::fs::read_to_string(hf_dir().join("config.json")).unwrap()).unwrap();
    cfg.remove("rope_scaling");
    cfg.remove("log_scale");
    std::fs::write(d.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    d
}

/// llama.cpp's logits at the last of `prompt`, one forward, F32 KV cache (the default F16
/// cache alone moves this model's logits by ~2e-3).
fn llama_logits(model: &llama_cpp_2::model::LlamaModel, prompt: &[u32], n_ctx: u32) -> Vec<f32> {
    use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::token::LlamaToken;
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_threads(2)
        .with_n_threads_batch(2)
        .with_type_k(KvCacheType::F32)
        .with_type_v(KvCacheType::F32)
        .with_flash_attention_policy(ggml_sys::LLAMA_FLASH_ATTN_TYPE_DISABLED);
    let mut ctx = model.new_context(common::oracle::backend(), params).expect("context");
    let mut batch = LlamaBatch::new(prompt.len(), 1);
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(LlamaToken(t as i32), i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    ctx.decode(&mut batch).expect("decode");
    ctx.get_logits_ith(batch.n_tokens() - 1).to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn json_f32(v: &Json) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn json_u32(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn plain_conversion_runs_in_llama_cpp() {
    let out_dir = temp_dir("plain");
    let src = plain_copy(&out_dir);
    let (path, rep) = run(&src, &out_dir, OutType::F32);
    assert!(!rep.clex);
    assert_eq!(rep.n_tensors, 21);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.get_u32("llama.context_length").unwrap(), Some(64));
    assert!(f.get("llama.rope.scaling.type").is_none());
    assert!(f.tensor("clex.inv_freq").is_none());

    let model = common::oracle::load(&path);
    let r = reference();
    // The vocabulary tokenizes the fixture's text as Hugging Face's LlamaTokenizer does.
    let tc = &r["text_case"];
    let ids = common::oracle::tokenize(&model, tc["text"].as_str().unwrap(), true);
    assert_eq!(ids, json_u32(&tc["ids"]), "llama.cpp tokenization with the converted vocabulary");
    // Logits at n ≤ L (t = 1: plain RoPE) match the reference forward: the Q/K permutation
    // and every tensor are right.
    let case = &r["full_forward"][0];
    assert_eq!(case["name"], "L-1");
    let prompt = json_u32(&case["ids"]);
    let logits = llama_logits(&model, &prompt, 64);
    let want = json_f32(&case["last4_logits"][3]);
    let d = max_abs_diff(&logits, &want);
    assert!(d < 2e-3, "llama.cpp logits vs reference: max abs diff {d}");
    drop(model);
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn export_for_llama_cpp_freezes_a_clex_bucket() {
    let out_dir = temp_dir("export");
    let (clex_path, _) = run(&hf_dir(), &out_dir, OutType::F32);
    let r = reference();
    for (case_i, t) in [(0usize, 1u32), (1, 3), (2, 8)] {
        let case = &r["full_forward"][case_i];
        assert_eq!(case["t"].as_u64(), Some(t as u64));
        let out = out_dir.join(format!("export-t{t}.gguf"));
        let factors = convert::export_llamacpp(&clex_path, t, &out).unwrap();
        assert_eq!(factors.len(), 16);
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(f.get_str("llama.rope.scaling.type").unwrap(), Some("none"));
        assert_eq!(f.get_u32("llama.context_length").unwrap(), Some(64 * t));
        assert!(f.metadata().iter().all(|(k, _)| !k.contains(".clex.")));
        assert!(f.tensors().iter().all(|t| !t.name.starts_with("clex.")));
        let rf = f.tensor("rope_freqs.weight").unwrap();
        assert_eq!((rf.ty.name, rf.dims.as_slice()), ("f32", &[16u64][..]));
        assert_eq!(f32s(f.tensor_data(rf)), factors);
        if t == 1 {
            assert!(factors.iter().all(|&x| x == 1.0));
        }
        // θ_j / factor_j reproduces the reference table row z(t).
        let z = json_f32(&r["table"]["z"][t as usize - 1]);
        for j in 0..16 {
            let theta = 10000f64.powf(-((2 * j) as f64) / 32.0);
            let zz = theta / factors[j] as f64;
            assert!(((zz - z[j] as f64) / z[j] as f64).abs() < 1e-4, "t={t} j={j}: {zz} vs {}", z[j]);
        }
        // Stock llama.cpp runs it and matches the reference CLEX forward at that bucket.
        let model = common::oracle::load(&out);
        let prompt = json_u32(&case["ids"]);
        let logits = llama_logits(&model, &prompt, 64 * t);
        let d = max_abs_diff(&logits, &json_f32(&case["last4_logits"][3]));
        assert!(d < 2e-3, "t={t}: llama.cpp logits vs reference CLEX: max abs diff {d}");
    }
    assert!(convert::export_llamacpp(&clex_path, 9, &out_dir.join("x.gguf")).is_err());
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn quantized_outputs_load_with_expected_types() {
    let out_dir = temp_dir("quant");
    for t in [OutType::Q8_0, OutType::Q4KM, OutType::Q4_0, OutType::Bf16] {
        let (path, rep) = run(&hf_dir(), &out_dir, t);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.get_u32("general.file_type").unwrap(), Some(t.file_type()));
        let ty = |n: &str| f.tensor(n).unwrap_or_else(|| panic!("{n}")).ty.name;
        // Always F32: norms and the CLEX tensors.
        for n in [
            "blk.0.attn_norm.weight",
            "blk.1.ffn_norm.weight",
            "output_norm.weight",
            "clex.ode_up_proj",
            "clex.ode_down_proj",
            "clex.inv_freq",
        ] {
            assert_eq!(ty(n), "f32", "{t}: {n}");
        }
        // clex-tiny has 128-wide rows (not a multiple of 256) and a 344-wide ffn_down (not a
        // multiple of 32), so llama-quantize's fallbacks decide most types.
        let expect: &[(&str, &str)] = match t {
            OutType::Q8_0 => &[
                ("token_embd.weight", "q8_0"),
                ("output.weight", "q8_0"),
                ("blk.0.attn_q.weight", "q8_0"),
                ("blk.1.ffn_down.weight", "f16"),
            ],
            OutType::Q4KM => &[
                ("token_embd.weight", "q5_0"),
                ("output.weight", "q8_0"),
                ("blk.0.attn_q.weight", "q5_0"),
                ("blk.0.attn_v.weight", "q5_0"),
                ("blk.1.attn_v.weight", "q8_0"),
                ("blk.0.ffn_down.weight", "f16"),
                ("blk.1.ffn_up.weight", "q5_0"),
            ],
            OutType::Q4_0 => &[
                ("token_embd.weight", "q4_0"),
                ("output.weight", "q8_0"),
                ("blk.0.attn_k.weight", "q4_0"),
                ("blk.0.ffn_down.weight", "f16"),
            ],
            _ => &[("token_embd.weight", "bf16"), ("output.weight", "bf16"), ("blk.1.ffn_down.weight", "bf16")],
        };
        for (n, want) in expect {
            assert_eq!(ty(n), *want, "{t}: {n}");
        }
        // CLEX data stays exact.
        let f32_path = out_dir.join("ref-f32.gguf");
        if !f32_path.exists() {
            convert::convert(&ConvertOptions::new(hf_dir(), &f32_path, OutType::F32)).unwrap();
        }
        let g = GgufFile::open(&f32_path).unwrap();
        for n in ["clex.ode_up_proj", "clex.ode_down_proj", "clex.inv_freq"] {
            assert_eq!(f.tensor_data(f.tensor(n).unwrap()), g.tensor_data(g.tensor(n).unwrap()), "{t}: {n}");
        }
        // Quantized Q equals the permuted f32 Q up to quantization error.
        let q = f.tensor("blk.0.attn_q.weight").unwrap();
        let deq = ggml_sys::safe::dequantize(q.ty.id, f.tensor_data(q), q.n_elements() as usize).unwrap();
        let exact = f32s(g.tensor_data(g.tensor("blk.0.attn_q.weight").unwrap()));
        let scale = exact.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = max_abs_diff(&deq, &exact);
        assert!(d < 0.15 * scale, "{t}: attn_q max error {d} (scale {scale})");
        assert!(rep.n_tensors == 24);
    }
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// Writes a synthetic HF folder: `arch` ("MistralForCausalLM" / "Qwen2ForCausalLM"), weights
/// sharded in two files (F16 for Qwen2, BF16 otherwise), the clex-tiny SentencePiece tokenizer.
fn synthetic_model(
    dir: &Path,
    arch: &str,
    hidden: usize,
    ff: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
) -> PathBuf {
    let d = dir.join(format!("hf-{arch}"));
    std::fs::create_dir_all(&d).unwrap();
    for f in ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"] {
        std::os::unix::fs::symlink(hf_dir().join(f), d.join(f)).unwrap();
    }
    synthetic_weights(&d, arch, 32000, hidden, ff, layers, heads, kv_heads);
    d
}

/// Random weights in two shards plus config.json, into `d`: F16 for Qwen2, else BF16.
#[allow(clippy::too_many_arguments)]
fn synthetic_weights(
    d: &Path,
    arch: &str,
    vocab: usize,
    hidden: usize,
    ff: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
) {
    use safetensors::tensor::TensorView;
    let f16 = arch.starts_with("Qwen2");
    let dtype = if f16 { safetensors::Dtype::F16 } else { safetensors::Dtype::BF16 };
    let hd = hidden / heads;
    let mut names: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![vocab, hidden]), ("model.norm.weight".into(), vec![hidden])];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        names.push((format!("{p}.input_layernorm.weight"), vec![hidden]));
        names.push((format!("{p}.post_attention_layernorm.weight"), vec![hidden]));
        names.push((format!("{p}.self_attn.q_proj.weight"), vec![heads * hd, hidden]));
        names.push((format!("{p}.self_attn.k_proj.weight"), vec![kv_heads * hd, hidden]));
        names.push((format!("{p}.self_attn.v_proj.weight"), vec![kv_heads * hd, hidden]));
        names.push((format!("{p}.self_attn.o_proj.weight"), vec![hidden, heads * hd]));
        names.push((format!("{p}.mlp.gate_proj.weight"), vec![ff, hidden]));
        names.push((format!("{p}.mlp.up_proj.weight"), vec![ff, hidden]));
        names.push((format!("{p}.mlp.down_proj.weight"), vec![hidden, ff]));
        if arch.starts_with("Qwen2") {
            names.push((format!("{p}.self_attn.q_proj.bias"), vec![heads * hd]));
            names.push((format!("{p}.self_attn.k_proj.bias"), vec![kv_heads * hd]));
            names.push((format!("{p}.self_attn.v_proj.bias"), vec![kv_heads * hd]));
        }
    }
    let tied = arch.starts_with("Qwen2");
    if !tied {
        names.push(("lm_head.weight".into(), vec![vocab, hidden]));
    }
    let mut seed = 0x1234_5678u64;
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = names
        .into_iter()
        .map(|(n, shape)| {
            let count: usize = shape.iter().product();
            let norm = shape.len() == 1 && !n.ends_with(".bias");
            let b: Vec<u8> = (0..count)
                .flat_map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let x = ((seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * 0.08;
                    let x = if norm { 1.0 + x } else { x };
                    if f16 { half::f16::from_f32(x).to_bits() } else { half::bf16::from_f32(x).to_bits() }.to_le_bytes()
                })
                .collect();
            (n, shape, b)
        })
        .collect();
    let mut weight_map = serde_json::Map::new();
    let half_i = data.len() / 2;
    for (k, part) in [&data[..half_i], &data[half_i..]].into_iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", k + 1);
        let views: Vec<(String, TensorView)> =
            part.iter().map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &d.join(&file)).unwrap();
        for (n, _, _) in part {
            weight_map.insert(n.clone(), Json::String(file.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(d.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let cfg = serde_json::json!({
        "architectures": [arch],
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "hidden_act": "silu", "tie_word_embeddings": tied, "torch_dtype": if f16 { "float16" } else { "bfloat16" },
        "bos_token_id": 1, "eos_token_id": 2, "sliding_window": 4096
    });
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
}

#[test]
fn q4_k_m_mix_on_a_sharded_bf16_mistral() {
    let out_dir = temp_dir("mistral");
    let src = synthetic_model(&out_dir, "MistralForCausalLM", 256, 512, 8, 4, 2);
    let (path, rep) = run(&src, &out_dir, OutType::Q4KM);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(rep.arch, "llama");
    let ty = |n: &str| f.tensor(n).unwrap_or_else(|| panic!("{n}")).ty.name;
    assert_eq!(ty("token_embd.weight"), "q4_K");
    assert_eq!(ty("output.weight"), "q6_K");
    for l in 0..8 {
        // llama-quantize's use_more_bits(i, 8): i < 1, i >= 7, (i − 1) % 3 == 2.
        let more = l == 0 || l == 7 || l == 3 || l == 6;
        let want = if more { "q6_K" } else { "q4_K" };
        assert_eq!(ty(&format!("blk.{l}.attn_v.weight")), want, "layer {l} attn_v");
        assert_eq!(ty(&format!("blk.{l}.ffn_down.weight")), want, "layer {l} ffn_down");
        for n in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
            assert_eq!(ty(&format!("blk.{l}.{n}.weight")), "q4_K", "layer {l} {n}");
        }
        assert_eq!(ty(&format!("blk.{l}.attn_norm.weight")), "f32");
    }
    assert_eq!(f.get_u32("general.file_type").unwrap(), Some(15));
    assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), Some(1e6));
    // The permuted, quantized K is the hand-permuted bf16 source up to Q4_K error.
    let (k_src, shape) = {
        let idx: Json =
            serde_json::from_str(&std::fs::read_to_string(src.join("model.safetensors.index.json")).unwrap()).unwrap();
        let file = idx["weight_map"]["model.layers.5.self_attn.k_proj.weight"].as_str().unwrap().to_string();
        let bytes = std::fs::read(src.join(file)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        src_tensor(&st, "model.layers.5.self_attn.k_proj.weight")
    };
    let want = hand_permute(&k_src, shape[0], shape[1], 2);
    let k = f.tensor("blk.5.attn_k.weight").unwrap();
    assert_eq!(k.dims, vec![256, 128]);
    let got = ggml_sys::safe::dequantize(k.ty.id, f.tensor_data(k), k.n_elements() as usize).unwrap();
    let d = max_abs_diff(&got, &want);
    assert!(d < 0.02, "Q4_K attn_k vs permuted source: {d}");
    let unpermuted = max_abs_diff(&got, &k_src);
    assert!(unpermuted > 0.05, "attn_k looks unpermuted ({unpermuted})");
    // llama.cpp loads it.
    let model = common::oracle::load(&path);
    assert_eq!(model.n_vocab(), 32000i32);
    drop(model);
    std::fs::remove_dir_all(&out_dir).unwrap();
}

#[test]
fn qwen2_keeps_layout_and_biases() {
    let out_dir = temp_dir("qwen2");
    let src = synthetic_model(&out_dir, "Qwen2ForCausalLM", 128, 256, 2, 4, 2);
    let (path, rep) = run(&src, &out_dir, OutType::F32);
    assert_eq!(rep.arch, "qwen2");
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("qwen2"));
    assert_eq!(f.get_u32("qwen2.context_length").unwrap(), Some(256));
    assert!(f.tensor("output.weight").is_none(), "tied embeddings: no output tensor");
    for n in ["attn_q", "attn_k", "attn_v"] {
        let b = f.tensor(&format!("blk.1.{n}.bias")).unwrap();
        assert_eq!(b.ty.name, "f32");
    }
    // No permutation for NeoX RoPE: Q is the source as is.
    let idx: Json =
        serde_json::from_str(&std::fs::read_to_string(src.join("model.safetensors.index.json")).unwrap()).unwrap();
    for (hf, gg) in [
        ("model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight"),
        ("model.layers.1.self_attn.k_proj.bias", "blk.1.attn_k.bias"),
    ] {
        let file = idx["weight_map"][hf].as_str().unwrap().to_string();
        let bytes = std::fs::read(src.join(file)).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (want, _) = src_tensor(&st, hf);
        assert_eq!(f32s(f.tensor_data(f.tensor(gg).unwrap())), want, "{gg}");
    }
    // q4_k_m with tied embeddings: token_embd takes the output's Q6_K (Q8_0: 128-wide rows).
    let (qpath, _) = run(&src, &out_dir, OutType::Q4KM);
    let q = GgufFile::open(&qpath).unwrap();
    assert_eq!(q.tensor("token_embd.weight").unwrap().ty.name, "q8_0");
    let model = common::oracle::load(&path);
    assert_eq!(model.n_vocab(), 32000i32);
    drop(model);
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// Converts a copy of clex-tiny with `edit` applied to its config and returns the error.
fn bad_config(edit: impl FnOnce(&mut serde_json::Map<String, Json>)) -> String {
    let dir = temp_dir("bad");
    let d = dir.join("hf");
    std::fs::create_dir_all(&d).unwrap();
    for f in ["model.safetensors", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"] {
        std::os::unix::fs::symlink(hf_dir().join(f), d.join(f)).unwrap();
    }
    let mut cfg: serde_json::Map<String, Json> =
        serde_json::from_str(&std::fs::read_to_string(hf_dir().join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(d.join("config.json"), Json::Object(cfg).to_string()).unwrap();
    let out = dir.join("out.gguf");
    let err =
        convert::convert(&ConvertOptions::new(&d, &out, OutType::F32)).expect_err("a bad config must fail").to_string();
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
    err
}

#[test]
fn bad_configs_name_the_field() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, Json>)>;
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            Box::new(|c| {
                c.remove("head_dim");
                c.insert("num_attention_heads".into(), 3.into());
                c.insert("num_key_value_heads".into(), 3.into());
            }),
            &["hidden_size (128) is not divisible by num_attention_heads (3)"],
        ),
        (
            Box::new(|c| {
                c.insert("num_key_value_heads".into(), 3.into());
            }),
            &["num_attention_heads (4)", "num_key_value_heads (3)"],
        ),
        (
            Box::new(|c| {
                c.remove("hidden_size");
            }),
            &["hidden_size is missing"],
        ),
        (
            Box::new(|c| {
                c.insert("architectures".into(), serde_json::json!(["GPT2LMHeadModel"]));
            }),
            &["architectures", "GPT2LMHeadModel"],
        ),
        (
            Box::new(|c| {
                c.remove("architectures");
            }),
            &["architectures is missing"],
        ),
        (
            Box::new(|c| {
                c["rope_scaling"].as_object_mut().unwrap().remove("max_factor");
            }),
            &["rope_scaling.max_factor is missing"],
        ),
        (
            Box::new(|c| {
                c["rope_scaling"]["param_factor"] = 0.into();
            }),
            &["rope_scaling.param_factor must be > 0"],
        ),
        (
            Box::new(|c| {
                c["rope_scaling"]["act"] = "relu".into();
            }),
            &["rope_scaling.act", "relu"],
        ),
        (
            Box::new(|c| {
                c["rope_scaling"]["time_dt"] = 2.0.into();
            }),
            &["rope_scaling.time_dt"],
        ),
        (
            Box::new(|c| {
                c["rope_scaling"]["type"] = "dynamo".into();
            }),
            &["rope_scaling.type", "dynamo"],
        ),
        (
            Box::new(|c| {
                c["rope_scaling"]["rope_type"] = "linear".into();
            }),
            &["rope_scaling.type", "contradicts", "rope_scaling.rope_type"],
        ),
        (
            Box::new(|c| {
                c["rope_scaling"]["param_factor"] = 2.into();
            }),
            &["ode_up_proj", "shape"],
        ),
        (
            Box::new(|c| {
                c.insert("vocab_size".into(), 1000.into());
            }),
            &["vocab_size (1000)", "32000 rows"],
        ),
        (
            Box::new(|c| {
                c.insert("intermediate_size".into(), 300.into());
            }),
            &["mlp.gate_proj.weight", "intermediate_size"],
        ),
        (
            Box::new(|c| {
                c.insert("num_hidden_layers".into(), 1.into());
            }),
            &["model.layers.1", "num_hidden_layers (1)"],
        ),
        (
            Box::new(|c| {
                c.insert("num_hidden_layers".into(), 3.into());
            }),
            &["model.layers.2.input_layernorm.weight", "missing"],
        ),
        (
            Box::new(|c| {
                c.insert("hidden_act".into(), "gelu".into());
            }),
            &["hidden_act"],
        ),
        (
            Box::new(|c| {
                c.insert("max_position_embeddings".into(), "long".into());
            }),
            &["max_position_embeddings must be a non-negative integer"],
        ),
        (
            Box::new(|c| {
                c.insert("log_scale".into(), "yes".into());
            }),
            &["log_scale must be true or false"],
        ),
        (
            Box::new(|c| {
                c.remove("rope_scaling");
                c.insert("log_scale".into(), true.into());
            }),
            &["log_scale", "clex"],
        ),
    ];
    for (i, (edit, needles)) in cases.into_iter().enumerate() {
        let err = bad_config(edit);
        for n in needles {
            assert!(err.contains(n), "case {i}: error {err:?} does not mention {n:?}");
        }
    }
}

#[test]
fn missing_inputs_are_clear_errors() {
    let dir = temp_dir("missing");
    let err = convert::convert(&ConvertOptions::new(&dir, dir.join("o.gguf"), OutType::F32)).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    std::fs::copy(hf_dir().join("config.json"), dir.join("config.json")).unwrap();
    let err = convert::convert(&ConvertOptions::new(&dir, dir.join("o.gguf"), OutType::F32)).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    std::os::unix::fs::symlink(hf_dir().join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let err = convert::convert(&ConvertOptions::new(&dir, dir.join("o.gguf"), OutType::F32)).unwrap_err().to_string();
    assert!(err.contains("tokenizer.model") && err.contains("tokenizer.json"), "{err}");
    assert!(
        "q4_k_m".parse::<OutType>().unwrap() == OutType::Q4KM
            && "Q8_0".parse::<OutType>().is_ok()
            && "q3".parse::<OutType>().is_err()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Hugging Face `tokenizer.json` rebuilt from one of llama.cpp's vocab GGUFs (tokens, types,
/// merges), with the pre-tokenizer of the model family it came from.
fn tokenizer_json_from_vocab_gguf(v: &GgufFile, family: &str) -> Json {
    let tokens = v.get_array("tokenizer.ggml.tokens").unwrap().unwrap().as_strings().unwrap();
    let types = v.get_array("tokenizer.ggml.token_type").unwrap().unwrap().to_i64().unwrap();
    let merges = v.get_array("tokenizer.ggml.merges").unwrap().unwrap().as_strings().unwrap();
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
        match ty {
            1 => {
                vocab.insert(t.clone(), i.into());
            }
            3 | 4 => added.push(serde_json::json!({
                "id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": ty == 4, "special": ty == 3
            })),
            _ => {}
        }
    }
    let byte_level = |trim: bool| serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim, "use_regex": false});
    let (regex, normalizer, post, ignore_merges, merges_json) = match family {
        "qwen2" => (
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            serde_json::json!({"type": "NFC"}),
            byte_level(false),
            false,
            // The newer pair form of merges.
            Json::Array(
                merges
                    .iter()
                    .map(|m| {
                        let (a, b) = m.split_once(' ').unwrap();
                        serde_json::json!([a, b])
                    })
                    .collect(),
            ),
        ),
        _ => (
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            Json::Null,
            serde_json::json!({"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                          {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                 "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"]}}}
            ]}),
            true,
            Json::Array(merges.iter().map(|m| Json::String(m.clone())).collect()),
        ),
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(family != "qwen2")
        ]},
        "post_processor": post,
        "decoder": byte_level(true),
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                  "vocab": vocab, "merges": merges_json}
    })
}

/// llama.cpp's tokenizer test cases for a vocab GGUF: (text, ids without BOS).
fn vocab_cases(gguf: &Path) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(gguf.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(gguf.with_extension("gguf.out")).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let ids: Vec<Vec<u32>> = out.lines().map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect()).collect();
    texts.iter().zip(ids).map(|(t, i)| (t.to_string(), i)).collect()
}

#[test]
fn bpe_tokenizer_json_like_llama_cpp() {
    for (family, file, arch) in [
        ("qwen2", "vocab/ggml-vocab-qwen2.gguf", "Qwen2ForCausalLM"),
        ("llama-bpe", "vocab/ggml-vocab-llama-bpe.gguf", "LlamaForCausalLM"),
    ] {
        let Some(vpath) = common::test_file(file) else { return };
        let v = GgufFile::open(&vpath).unwrap();
        let n_vocab = v.get_array("tokenizer.ggml.tokens").unwrap().unwrap().len();
        let out_dir = temp_dir(family);
        let d = out_dir.join("hf");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tokenizer.json"), tokenizer_json_from_vocab_gguf(&v, family).to_string()).unwrap();
        let (bos, eos) =
            if family == "qwen2" { ("<|endoftext|>", "<|im_end|>") } else { ("<|begin_of_text|>", "<|end_of_text|>") };
        let template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}";
        let tc = serde_json::json!({"bos_token": if family == "qwen2" { Json::Null } else { bos.into() }, "eos_token": eos,
                                    "pad_token": bos, "chat_template": template, "tokenizer_class": "PreTrainedTokenizerFast"});
        std::fs::write(d.join("tokenizer_config.json"), tc.to_string()).unwrap();
        synthetic_weights(&d, arch, n_vocab, 64, 128, 1, 2, 1);

        let (path, rep) = run(&d, &out_dir, OutType::F16);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!((rep.vocab_model.as_str(), rep.vocab_pre.as_str()), ("gpt2", family));
        assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), Some(family));
        for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"] {
            assert_eq!(f.get(key), v.get(key), "{family}: {key} differs from llama.cpp's vocab file");
        }
        let id_of = |s: &str| {
            v.get_array("tokenizer.ggml.tokens")
                .unwrap()
                .unwrap()
                .as_strings()
                .unwrap()
                .iter()
                .position(|t| t == s)
                .unwrap() as u32
        };
        assert_eq!(get(&f, "tokenizer.ggml.eos_token_id"), &Value::U32(id_of(eos)), "{family} eos");
        assert_eq!(get(&f, "tokenizer.ggml.padding_token_id"), &Value::U32(id_of(bos)), "{family} pad");
        let want_bos = if family == "qwen2" { 1 } else { id_of(bos) }; // qwen2: config.json's bos_token_id
        assert_eq!(get(&f, "tokenizer.ggml.bos_token_id"), &Value::U32(want_bos), "{family} bos");
        assert_eq!(get(&f, "tokenizer.ggml.add_bos_token"), &Value::Bool(family != "qwen2"), "{family} add_bos");
        assert_eq!(f.get_str("tokenizer.chat_template").unwrap(), Some(template));

        // llama.cpp loads it and tokenizes its own test texts as its reference says.
        let model = common::oracle::load(&path);
        for (text, want) in vocab_cases(&vpath) {
            let got = common::oracle::tokenize(&model, &text, false);
            assert_eq!(got, want, "{family}: {text:?}");
        }
        drop(model);
        std::fs::remove_dir_all(&out_dir).unwrap();
    }
}
