#!/usr/bin/env bash
# Builds llama.cpp's `llama-perplexity` (CPU only) from the fetched llama.cpp tree and
# runs it with the given arguments — the oracle for `clex-run perplexity --llama-compat`.
#
#   scripts/llama-perplexity.sh -m MODEL.gguf -f TEXT -c 512 -t 2      # build if needed, run
#   scripts/llama-perplexity.sh --build-only                           # build, print the binary's path
#   CLEX_LLAMA_PERPLEXITY=$(scripts/llama-perplexity.sh --build-only) cargo test --release --test perplexity
#
# Source:  $LLAMA_CPP_SRC, default ~/.cache/clex-test-data/llama.cpp (fetch-test-data.sh).
# Build:   $CLEX_BUILD_DIR/llama.cpp, default ~/.cache/clex-build/llama.cpp (outside the repo,
#          kept between runs; delete it to rebuild). Only the llama-perplexity target is built.
set -euo pipefail

SRC=${LLAMA_CPP_SRC:-$HOME/.cache/clex-test-data/llama.cpp}
BUILD=${CLEX_BUILD_DIR:-$HOME/.cache/clex-build}/llama.cpp
BIN=$BUILD/bin/llama-perplexity

if [ ! -x "$BIN" ]; then
  if [ ! -f "$SRC/CMakeLists.txt" ]; then
    echo "llama-perplexity.sh: no llama.cpp tree at $SRC (run ../shared/scripts/fetch-test-data.sh or set LLAMA_CPP_SRC)" >&2
    exit 1
  fi
  command -v cmake >/dev/null || { echo "llama-perplexity.sh: cmake is needed (apt-get install cmake)" >&2; exit 1; }
  echo "llama-perplexity.sh: building llama-perplexity in $BUILD (CPU only; a few minutes)" >&2
  # Native ISA (as ggml-sys builds ggml: target-cpu=native) but no AMX: on machines that
  # report AMX without granting it (VMs, sandboxes) its tile kernels die with SIGILL.
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DCMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
    -DCMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_OPENCL=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON >&2
  cmake --build "$BUILD" --config Release --target llama-perplexity -j "$(nproc)" >&2
fi

if [ "${1:-}" = "--build-only" ]; then
  echo "$BIN"
  exit 0
fi
exec "$BIN" "$@"
