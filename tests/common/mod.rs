//! Where tests find their material.
#![allow(dead_code)]
use std::path::PathBuf;

/// `../shared/fixtures` beside the repository, or `$CLEX_FIXTURES`.
pub fn fixtures() -> PathBuf {
    std::env::var_os("CLEX_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
}

/// The fetched test-data cache (`fetch-test-data.sh`), if present.
pub fn test_data() -> Option<PathBuf> {
    let dir = std::env::var_os("CLEX_TEST_DATA")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/clex-test-data")))?;
    dir.is_dir().then_some(dir)
}

/// A file from the fetched test data, or `None` after saying loudly that it is missing.
pub fn test_file(rel: &str) -> Option<PathBuf> {
    let p = test_data().map(|d| d.join(rel));
    match p {
        Some(p) if p.exists() => Some(p),
        _ => {
            eprintln!("SKIPPED: {rel} not found; run ../shared/scripts/fetch-test-data.sh (or set CLEX_TEST_DATA)");
            None
        }
    }
}

/// The Qwen2.5-Coder-0.5B Q4_K_M file, if fetched.
pub fn qwen() -> Option<PathBuf> {
    test_file("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
}
pub mod oracle;

/// A fresh path in the temp folder, unique to this process.
pub fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clex-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Converts a Hugging Face folder to GGUF with our converter.
pub fn convert_hf(hf: &std::path::Path, out: &std::path::Path, outtype: &str) {
    let opts = clex::convert::ConvertOptions::new(hf, out, outtype.parse().unwrap());
    clex::convert::convert(&opts).expect("conversion");
}
