//! `clex-run devices`: the compute devices ggml sees in this build.

use clex::model::{gpu_features, list_devices};
use clex::Result;

pub fn run() -> Result<()> {
    let feats = gpu_features();
    println!(
        "GPU backends in this build: {}",
        if feats.is_empty() { "none (CPU only; rebuild with --features vulkan or cuda)".to_string() } else { feats.join(", ") }
    );
    println!("{:<3} {:<12} {:<10} {:>12} {:>12}  description", "#", "name", "kind", "free MiB", "total MiB");
    for d in list_devices() {
        println!(
            "{:<3} {:<12} {:<10} {:>12} {:>12}  {}",
            d.index,
            d.name,
            format!("{:?}", d.kind).to_lowercase(),
            d.memory_free / 1048576,
            d.memory_total / 1048576,
            d.description
        );
    }
    Ok(())
}
