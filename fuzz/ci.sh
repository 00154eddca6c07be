#!/usr/bin/env bash
# A short fuzz run for CI: every cargo-fuzz target for ~30 s (FUZZ_SECONDS) on its seeds
# plus whatever corpus is already there. Fails (exit 1) on a crash, a timeout, a leak or
# an out-of-memory; the input that did it is left in fuzz/artifacts/TARGET/.
#
#     bash fuzz/ci.sh                 # all targets
#     bash fuzz/ci.sh tokenizer       # some targets
#
# Needs a nightly toolchain and cargo-fuzz; without them it prints a SKIP line and exits 0
# (the stable-only CI then skips it). The tokenizer target needs the fetched vocab files
# (~/.cache/clex-test-data/vocab or $CLEX_TEST_DATA/vocab) and is skipped without them.
# The first build compiles llama.cpp and the crate with AddressSanitizer (tens of minutes
# on a small machine); later runs rebuild only what changed. Runs under `nice -n 19`.
set -u -o pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
ALL=(gguf_header gguf_model tokenizer chat_template safetensors)
TARGETS=("${@:-${ALL[@]}}")

skip() { echo "fuzz/ci.sh: SKIP: $*"; exit 0; }
command -v rustup >/dev/null 2>&1 || skip "rustup not found (a nightly toolchain is needed)"
rustup run nightly rustc --version >/dev/null 2>&1 || skip "no nightly toolchain (rustup toolchain install nightly)"
cargo +nightly fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz not installed (cargo install cargo-fuzz)"

python3 make_seeds.py >/dev/null || { echo "fuzz/ci.sh: make_seeds.py failed"; exit 1; }
if ! nice -n 19 cargo +nightly fuzz build >build-ci.log 2>&1; then
    tail -20 build-ci.log
    echo "fuzz/ci.sh: FAIL: the fuzz targets do not build (fuzz/build-ci.log)"
    exit 1
fi

# target → seeds folder, dictionary, max input length
declare -A SEEDS=([gguf_header]=seeds [gguf_model]=seeds [tokenizer]=seeds_tokenizer
                  [chat_template]=seeds_chat_template [safetensors]=seeds_safetensors)
declare -A DICT=([gguf_header]=gguf.dict [gguf_model]=gguf.dict [tokenizer]=tokenizer.dict
                 [chat_template]=jinja.dict [safetensors]=safetensors.dict)
declare -A MAXLEN=([gguf_header]=16384 [gguf_model]=16384 [tokenizer]=1024
                   [chat_template]=4096 [safetensors]=16384)

status=0
for t in "${TARGETS[@]}"; do
    if [[ -z "${SEEDS[$t]:-}" ]]; then
        echo "fuzz/ci.sh: unknown target $t (${ALL[*]})"; exit 2
    fi
    if [[ "$t" == tokenizer ]]; then
        data="${CLEX_TEST_DATA:-$HOME/.cache/clex-test-data}/vocab"
        if ! compgen -G "$data/*.gguf" >/dev/null; then
            echo "fuzz/ci.sh: SKIP tokenizer: no vocab files in $data"; continue
        fi
    fi
    mkdir -p "corpus/$t" "artifacts/$t"
    log="ci-$t.log"
    nice -n 19 cargo +nightly fuzz run "$t" "corpus/$t" "corpus/${SEEDS[$t]}" -- \
        -dict="${DICT[$t]}" -max_len="${MAXLEN[$t]}" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    if [[ $rc -ne 0 ]]; then
        echo "fuzz/ci.sh: FAIL $t (exit $rc; see fuzz/$log and fuzz/artifacts/$t/):"
        grep -E 'ERROR: libFuzzer|SUMMARY|panicked|Test unit written' "$log" | head -5
        status=1
    else
        echo "fuzz/ci.sh: ok $t: ${runs:-?} executions in ${SECONDS_PER_TARGET} s"
    fi
done
exit $status
