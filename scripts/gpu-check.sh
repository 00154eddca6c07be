#!/usr/bin/env bash
# One short, prepared check for a machine with an NVIDIA GPU and a CUDA toolkit:
# builds the `cuda` feature, lists the devices, runs the GPU tests (offload vs CPU and
# vs llama.cpp on the same device), and benchmarks the Qwen file on the CPU and fully
# offloaded. Prints everything; exits non-zero on the first failure.
#
#   bash scripts/gpu-check.sh [MODEL.gguf]      (default: the fetched Qwen2.5 GGUF)
#
# Environment: CUDA_HOME / nvcc on PATH (tried: /usr/local/cuda/bin), CLEX_TEST_DATA.
# The build takes a while the first time (ggml's CUDA kernels); later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
command -v nvcc >/dev/null || { echo "gpu-check: nvcc not found (install the CUDA toolkit or set PATH)"; exit 1; }

data="${CLEX_TEST_DATA:-$HOME/.cache/clex-test-data}"
model="${1:-$data/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}"
if [ ! -f "$model" ] && [ -f ../shared/scripts/fetch-test-data.sh ]; then
  bash ../shared/scripts/fetch-test-data.sh "$data"
fi

# One build for tests and binary (cargo test builds target/release/clex-run too).
time cargo test --release --features cuda --test gpu -- --nocapture --test-threads 1
bin=target/release/clex-run
$bin devices

echo "== bench: CPU vs -ngl 99 ($model)"
$bin bench "$model" -p 512 -n 128 -r 3
$bin bench "$model" -p 512 -n 128 -r 3 -ngl 99
echo "== bench: CLEX-NTK at depth, fully offloaded"
$bin bench "$model" -p 512 -n 128 -r 3 -ngl 99 -d 4096,16384 --rope-scaling clex-ntk
echo "== generation"
$bin "$model" -ngl 99 -c 4096 -n 64 --temp 0 -p "fn fibonacci(n: u64) -> u64 {" -v
