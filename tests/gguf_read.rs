//! The reader on real files that llama.cpp's converter wrote.
mod common;
use clex::gguf::{GgufFile, Value};

#[test]
fn reads_llama2_tiny_random() {
    let f = GgufFile::open(&common::fixtures().join("llama-2-tiny-random.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    let toks = f.get_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(toks.len(), 32000);
    assert_eq!(toks.as_strings().unwrap()[1], "<s>");
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims[1], 32000);
    assert_eq!(f.tensor_data(emb).len() as u64, emb.size);
    assert!(f.is_mapped());
    // Tensors are laid out back to back after the header.
    let end = f.tensors().iter().map(|t| t.offset + t.size).max().unwrap();
    assert!(f.data_offset() + end <= f.bytes().len() as u64);
}

#[test]
fn reads_qwen_q4_k_m() {
    let Some(p) = common::qwen() else { return };
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("qwen2"));
    assert_eq!(f.get_u32("qwen2.block_count").unwrap(), Some(24));
    assert!(matches!(f.get("tokenizer.ggml.pre"), Some(Value::String(_))));
    let types: std::collections::BTreeSet<_> = f.tensors().iter().map(|t| t.ty.name).collect();
    assert!(types.contains("q4_K"), "{types:?}");
}
