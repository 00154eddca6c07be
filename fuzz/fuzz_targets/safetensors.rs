//! The converter's readers on arbitrary bytes: `config.json` text → `HfConfig`, a
//! safetensors file → `Checkpoint` (header, offsets, dtypes), every tensor read as f32,
//! then the converter's checks of the checkpoint against the config (tensor names,
//! shapes, leftovers, the CLEX ODE solve). An error naming the problem, never a panic, an
//! allocation beyond the input's size or an unbounded solve.
//!
//! Input: a little-endian u16 n, then n bytes of `config.json`, then the safetensors file.
#![no_main]
use clex::convert::hf::{check_checkpoint, Checkpoint, HfConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let n = (u16::from_le_bytes([*a, *b]) as usize).min(rest.len());
    let (cfg_bytes, st) = rest.split_at(n);
    let cfg = HfConfig::from_json_text(&String::from_utf8_lossy(cfg_bytes));
    if let Ok(c) = &cfg {
        std::hint::black_box((c.clex_params(), c.token_id("bos_token_id"), c.token_id("eos_token_id")));
    }
    let ck = Checkpoint::from_bytes("model.safetensors", st.to_vec());
    if let Ok(ck) = &ck {
        for t in ck.tensors().values() {
            assert!(t.start <= t.end && t.end <= st.len(), "{t:?} outside {} bytes", st.len());
            assert_eq!(ck.bytes(t).len(), t.end - t.start);
            if Checkpoint::check_dtype(t).is_ok() {
                let v = ck.to_f32(t).expect("a checked dtype reads");
                assert_eq!(v.len(), t.n_elements());
            }
        }
    }
    if let (Ok(cfg), Ok(ck)) = (&cfg, &ck) {
        if let Ok(n_vocab) = check_checkpoint(cfg, ck) {
            assert!(n_vocab > 0 || cfg.vocab_size.is_none());
        }
    }
});
