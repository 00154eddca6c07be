//! llama.cpp itself (through llama-cpp-2, on the same ggml build) as the oracle.
#![allow(dead_code)]
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

/// llama.cpp's backend may be initialised once per process.
pub fn backend() -> &'static LlamaBackend {
    static B: OnceLock<LlamaBackend> = OnceLock::new();
    B.get_or_init(|| {
        let mut b = LlamaBackend::init().expect("llama backend init");
        b.void_logs();
        b
    })
}

pub fn load(path: &Path) -> LlamaModel {
    load_ngl(path, 0)
}

/// [`load`] with `n_gpu_layers` offloaded (llama.cpp's `-ngl`; 0 = CPU only).
pub fn load_ngl(path: &Path, n_gpu_layers: u32) -> LlamaModel {
    let params = LlamaModelParams::default().with_n_gpu_layers(n_gpu_layers);
    LlamaModel::load_from_file(backend(), path, &params).expect("llama.cpp loads the model")
}

/// llama.cpp's tokenization of `text`.
pub fn tokenize(model: &LlamaModel, text: &str, add_special: bool) -> Vec<u32> {
    model.vocab().tokenize(text.as_bytes(), add_special, true).into_iter().map(|t| t.0 as u32).collect()
}

/// Greedy generation with llama.cpp: returns `n` tokens after `prompt` and the
/// logits of the prompt's last position.
pub fn greedy(model: &LlamaModel, prompt: &[u32], n: usize, n_ctx: u32, flash: bool) -> (Vec<u32>, Vec<f32>) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(512)
        .with_n_threads(2)
        .with_n_threads_batch(2)
        .with_flash_attention_policy(if flash {
            ggml_sys::LLAMA_FLASH_ATTN_TYPE_ENABLED
        } else {
            ggml_sys::LLAMA_FLASH_ATTN_TYPE_DISABLED
        });
    let mut ctx = model.new_context(backend(), params).expect("context");
    let mut batch = LlamaBatch::new(prompt.len().max(1), 1);
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(LlamaToken(t as i32), i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    ctx.decode(&mut batch).expect("decode");
    let first = ctx.get_logits_ith(batch.n_tokens() - 1).to_vec();
    let mut out = Vec::new();
    let mut logits = first.clone();
    let mut pos = prompt.len() as i32;
    for _ in 0..n {
        let tok = argmax(&logits);
        out.push(tok);
        batch.clear();
        batch.add(LlamaToken(tok as i32), pos, &[0], true).unwrap();
        pos += 1;
        ctx.decode(&mut batch).expect("decode");
        logits = ctx.get_logits_ith(0).to_vec();
    }
    (out, first)
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Logits of the last token after feeding `toks` in batches of `ub` (non-FA).
pub fn logits_batched(model: &LlamaModel, toks: &[u32], ub: usize, n_ctx: u32, flash: bool) -> Vec<f32> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(ub as u32)
        .with_n_threads(2)
        .with_n_threads_batch(2)
        .with_flash_attention_policy(if flash { ggml_sys::LLAMA_FLASH_ATTN_TYPE_ENABLED } else { ggml_sys::LLAMA_FLASH_ATTN_TYPE_DISABLED });
    let mut ctx = model.new_context(backend(), params).expect("context");
    let mut pos = 0;
    let mut last = Vec::new();
    for chunk in toks.chunks(ub) {
        let mut batch = LlamaBatch::new(chunk.len(), 1);
        for (i, &t) in chunk.iter().enumerate() {
            batch.add(LlamaToken(t as i32), pos, &[0], i + 1 == chunk.len()).unwrap();
            pos += 1;
        }
        ctx.decode(&mut batch).expect("decode");
        last = ctx.get_logits_ith(batch.n_tokens() - 1).to_vec();
    }
    last
}
