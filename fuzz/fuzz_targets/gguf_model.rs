//! Bytes → `GgufFile::from_bytes` → (if accepted) a temp file → `Model::load`: an error
//! or a model, never a panic or an abort inside ggml.
#![no_main]
use clex::gguf::GgufFile;
use clex::model::Model;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn temp() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() { shm } else { std::env::temp_dir() };
        dir.join(format!("clex-fuzz-model-{}.gguf", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    if GgufFile::from_bytes(data.to_vec()).is_err() {
        return;
    }
    std::fs::write(temp(), data).expect("write the temp file");
    if let Ok(m) = Model::load(temp()) {
        std::hint::black_box((m.n_params(), m.weights_bytes(), m.n_tensors()));
    }
});
