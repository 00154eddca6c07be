#!/usr/bin/env bash
# clex vs llama.cpp, side by side: `clex-run bench` and llama.cpp's `llama-bench` run
# alternately on the same model file with the same arguments; prints, per test, each
# tool's median t/s over every sample of every round and the ratio clex / llama.cpp, and the
# paired ratio: the median over rounds of the two tools' ratio within a round.
#
#   scripts/bench-vs-llamacpp.sh MODEL.gguf [llama-bench args…]
#   scripts/bench-vs-llamacpp.sh models/clex-tiny-random.gguf -p 512 -n 128 -t 2
#   scripts/bench-vs-llamacpp.sh M.gguf -p 0 -n 128 -d 4096,16384 -r 3 --clex-args "--rope-scaling clex-ntk --yarn-orig-ctx 2048"
#   scripts/bench-vs-llamacpp.sh --build-only          # build llama-bench (and llama-simple,
#                                                      # llama-completion), print the folder
#   scripts/bench-vs-llamacpp.sh --summarize OUT_DIR…  # the table again, from kept raw results
#                                                      # (several folders: their rounds pooled)
#   scripts/bench-vs-llamacpp.sh --ttft MODEL.gguf [-t N] [--runs N] [--prompt TEXT]
#                                                      # wall time from process start to the
#                                                      # first generated token, both tools
#
# The args go to both tools unchanged (clex-run bench takes llama-bench's flags: -p -n -pg -d
# -t -r -b -ub -ctk -ctv -fa -o); `--clex-args "…"` adds flags for clex-run only (RoPE
# scaling, --no-repack, …), `--llama-args "…"` for llama-bench only.
#
# Environment:
#   ROUNDS=3           alternations (each runs both tools once, order swapped every round)
#   LLAMA_CPP_SRC      llama.cpp source tree (default ~/.cache/clex-test-data/llama.cpp)
#   CLEX_BENCH_DIR     build folder, outside the repo (default ~/.cache/clex-bench); the
#                      build is kept and reused while its configuration is unchanged
#   LLAMA_BUILD_TYPE   CMake build type of llama.cpp (default: the one our ggml was built with)
#   CLEX_RUN           the clex-run binary (default target/release/clex-run; built if missing)
#   OUT_DIR            where raw JSON results are kept (default $CLEX_BENCH_DIR/results/<time>)
#
# Fairness: llama.cpp is configured with the ggml CPU settings of *our* build, read from the
# CMakeCache.txt that llama-cpp-sys-2 left under target/release/build (GGML_NATIVE, OpenMP,
# llamafile, CPU repack, AMX/AVX options, build type and C flags), so both run the same
# kernels compiled the same way. `clex-run bench` and llama-bench both print ggml's CPU
# feature list (with -v / in the header) and the script refuses to compare when they differ.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=${LLAMA_CPP_SRC:-$HOME/.cache/clex-test-data/llama.cpp}
BENCH_DIR=${CLEX_BENCH_DIR:-$HOME/.cache/clex-bench}
ROUNDS=${ROUNDS:-3}
CLEX_RUN=${CLEX_RUN:-$HERE/target/release/clex-run}

die() { echo "bench-vs-llamacpp.sh: $*" >&2; exit 1; }
say() { echo "bench-vs-llamacpp.sh: $*" >&2; }

# --- our ggml build's CMake settings ---------------------------------------------------
# The newest CPU-only llama-cpp-sys-2 build under target/release (the one clex-run links).
our_cache() {
  local best="" bt=0 f t
  for f in "$HERE"/target/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt; do
    [ -f "$f" ] || continue
    grep -q '^GGML_VULKAN:BOOL=ON\|^GGML_CUDA:BOOL=ON' "$f" && continue
    t=$(stat -c %Y "$f")
    if [ "$t" -gt "$bt" ]; then bt=$t; best=$f; fi
  done
  echo "$best"
}
cache_get() { grep -m1 "^$2:" "$1" | cut -d= -f2-; }

configure_args() {
  local cache=$1 k v
  local args=(-DBUILD_SHARED_LIBS=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF
    -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_OPENCL=OFF
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON)
  if [ -n "$cache" ]; then
    local bt
    bt=$(cache_get "$cache" CMAKE_BUILD_TYPE)
    args+=("-DCMAKE_BUILD_TYPE=${LLAMA_BUILD_TYPE:-${bt:-Release}}")
    args+=("-DCMAKE_C_FLAGS=$(cache_get "$cache" CMAKE_C_FLAGS)" "-DCMAKE_CXX_FLAGS=$(cache_get "$cache" CMAKE_CXX_FLAGS)")
    args+=("-DCMAKE_C_COMPILER=$(cache_get "$cache" CMAKE_C_COMPILER)" "-DCMAKE_CXX_COMPILER=$(cache_get "$cache" CMAKE_CXX_COMPILER)")
    for k in GGML_NATIVE GGML_OPENMP GGML_LLAMAFILE GGML_CPU_REPACK GGML_CPU_KLEIDIAI GGML_SSE42 GGML_AVX GGML_AVX2 \
      GGML_AVX_VNNI GGML_AVX512 GGML_AVX512_VBMI GGML_AVX512_VNNI GGML_AVX512_BF16 GGML_AMX_TILE GGML_AMX_INT8 \
      GGML_AMX_BF16 GGML_FMA GGML_F16C GGML_BMI2 GGML_CPU_HBM; do
      v=$(grep -m1 "^$k:BOOL=" "$cache" | cut -d= -f2- || true)
      [ -n "$v" ] && args+=("-D$k=$v")
    done
  else
    say "warning: no llama-cpp-sys-2 CMakeCache.txt under target/release (build clex first); using GGML_NATIVE=ON Release"
    args+=("-DCMAKE_BUILD_TYPE=${LLAMA_BUILD_TYPE:-Release}" -DGGML_NATIVE=ON -DGGML_OPENMP=ON)
  fi
  printf '%s\n' "${args[@]}"
}

build_llama() {
  [ -f "$SRC/CMakeLists.txt" ] || die "no llama.cpp tree at $SRC (run ../shared/scripts/fetch-test-data.sh or set LLAMA_CPP_SRC)"
  command -v cmake >/dev/null || die "cmake is needed (apt-get install cmake)"
  local cache
  cache=$(our_cache)
  mapfile -t CFG < <(configure_args "$cache")
  local key
  key=$( (printf '%s\n' "$SRC" "${CFG[@]}") | sha256sum | cut -c1-12)
  BUILD=$BENCH_DIR/build-$key
  LLAMA_BENCH=$BUILD/bin/llama-bench
  if [ ! -x "$LLAMA_BENCH" ] || [ ! -x "$BUILD/bin/llama-simple" ] || [ ! -x "$BUILD/bin/llama-completion" ]; then
    say "building llama-bench, llama-simple, llama-completion in $BUILD (CPU only; several minutes)"
    say "mirroring our ggml build ${cache:-(none)}:"
    printf '   %s\n' "${CFG[@]}" >&2
    mkdir -p "$BUILD"
    printf '%s\n' "$SRC" "${CFG[@]}" > "$BUILD/clex-config.txt"
    cmake -S "$SRC" -B "$BUILD" "${CFG[@]}" > "$BUILD/configure.log" 2>&1 || { tail -30 "$BUILD/configure.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD" --target llama-bench llama-simple llama-completion -j "$(nproc)" > "$BUILD/build.log" 2>&1 \
      || { tail -30 "$BUILD/build.log" >&2; die "build failed (log: $BUILD/build.log)"; }
  fi
}

# --- a bigger LLaMA-architecture test model ----------------------------------------------
# Random weights (a fixed seed) in a Hugging Face LLaMA layout, with clex-tiny's SentencePiece
# tokenizer, converted by `clex-run convert --outtype q8_0`: 16 layers, 1024 wide, GQA 16/4,
# FFN 2816, vocab 32000, training context 2048 (≈ 245 M parameters, 260 MB as Q8_0). The text it
# writes is gibberish; its speed is that of any LLaMA of this shape.
if [ "${1:-}" = "--make-llama" ]; then
  OUT=${2:-$BENCH_DIR/models/llama-245m-random-q8_0.gguf}
  FIX=${CLEX_FIXTURES:-$HERE/../shared/fixtures}/clex-tiny/hf
  [ -f "$FIX/tokenizer.model" ] || die "no tokenizer at $FIX (the shared fixtures)"
  [ -x "$CLEX_RUN" ] || (cd "$HERE" && cargo build --release >&2)
  python3 -c "import numpy" 2>/dev/null ||
    die "--make-llama needs NumPy for python3 (pip install numpy, or put a venv that has it first on PATH)"
  HF=$(mktemp -d); trap 'rm -rf "$HF"' EXIT
  cp "$FIX"/tokenizer.model "$FIX"/tokenizer_config.json "$FIX"/special_tokens_map.json "$HF"/
  python3 - "$HF" <<'PY'
import json, sys, numpy as np
out = sys.argv[1]
V, E, L, H, HKV, FF, CTX = 32000, 1024, 16, 16, 4, 2816, 2048
D = E // H
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": E,
       "intermediate_size": FF, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": HKV,
       "head_dim": D, "hidden_act": "silu", "max_position_embeddings": CTX, "rms_norm_eps": 1e-5,
       "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False, "mlp_bias": False,
       "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False, "torch_dtype": "float16"}
json.dump(cfg, open(f"{out}/config.json", "w"), indent=1)
rng = np.random.default_rng(8)
shapes = {"model.embed_tokens.weight": (V, E), "model.norm.weight": (E,), "lm_head.weight": (V, E)}
for i in range(L):
    p = f"model.layers.{i}."
    shapes.update({p + "input_layernorm.weight": (E,), p + "post_attention_layernorm.weight": (E,),
                   p + "self_attn.q_proj.weight": (E, E), p + "self_attn.k_proj.weight": (HKV * D, E),
                   p + "self_attn.v_proj.weight": (HKV * D, E), p + "self_attn.o_proj.weight": (E, E),
                   p + "mlp.gate_proj.weight": (FF, E), p + "mlp.up_proj.weight": (FF, E), p + "mlp.down_proj.weight": (E, FF)})
header, off = {}, 0
for k, sh in shapes.items():
    n = int(np.prod(sh)) * 2
    header[k] = {"dtype": "F16", "shape": list(sh), "data_offsets": [off, off + n]}
    off += n
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(f"{out}/model.safetensors", "wb") as f:
    f.write(len(h).to_bytes(8, "little")); f.write(h)
    for k, sh in shapes.items():
        a = np.ones(sh, np.float16) if k.endswith("norm.weight") else (rng.standard_normal(sh, np.float32) * 0.02).astype(np.float16)
        f.write(a.tobytes())
PY
  mkdir -p "$(dirname "$OUT")"
  "$CLEX_RUN" convert "$HF" -o "$OUT" --outtype q8_0 >&2
  echo "$OUT"
  exit 0
fi

build_llama
if [ "${1:-}" = "--build-only" ]; then
  echo "$BUILD"
  exit 0
fi

[ -x "$CLEX_RUN" ] || { say "building clex-run (cargo build --release)"; (cd "$HERE" && cargo build --release >&2); }
LLAMA_COMPLETION=$BUILD/bin/llama-completion

# ggml's CPU feature list as each tool sees it ("SSE3 = 1 | … | AMX_INT8 = 1 | REPACK = 1").
features_llama() {
  "$LLAMA_COMPLETION" -m "$1" -p "x" -n 0 -t 1 -c 64 --no-warmup -no-cnv 2>&1 </dev/null \
    | grep -m1 'system_info' | sed 's/.*CPU : //; s/ *|* *$//' || true
}
features_clex() {
  "$CLEX_RUN" bench "$1" -p 1 -n 0 -r 1 -t 1 --no-warmup -v 2>&1 >/dev/null \
    | grep -m1 'system_info' | sed 's/.*CPU : //; s/ *|* *$//' || true
}
check_features() {
  local fl fc
  fl=$(features_llama "$1"); fc=$(features_clex "$1")
  say "ggml CPU features, llama.cpp: $fl"
  say "ggml CPU features, clex:      $fc"
  if [ "$fl" != "$fc" ]; then
    [ -n "${ALLOW_FEATURE_MISMATCH:-}" ] || die "the two builds differ in ggml CPU features (set ALLOW_FEATURE_MISMATCH=1 to compare anyway)"
    say "warning: the builds differ in ggml CPU features"
  fi
}

# --- time to first token ------------------------------------------------------------------
if [ "${1:-}" = "--ttft" ]; then
  shift
  MODEL=${1:?usage: bench-vs-llamacpp.sh --ttft MODEL.gguf [-t N] [--runs N] [--prompt TEXT]}; shift
  T=$(nproc); RUNS=7; PROMPT="The quick brown fox jumps over the lazy dog. Once upon a time, in a land far away,"
  while [ $# -gt 0 ]; do
    case $1 in
      -t) T=$2; shift 2 ;;
      --runs) RUNS=$2; shift 2 ;;
      --prompt) PROMPT=$2; shift 2 ;;
      *) die "--ttft: unknown argument $1" ;;
    esac
  done
  check_features "$MODEL"
  # Both: load the file, tokenize, evaluate the prompt, produce one token greedily, exit.
  # llama-completion without its warm-up decode (clex-run has none), both with -c 512.
  python3 - "$RUNS" "$LLAMA_COMPLETION" "$CLEX_RUN" "$MODEL" "$T" "$PROMPT" <<'PY'
import statistics, subprocess, sys, time
runs, llama, clex, model, t, prompt = int(sys.argv[1]), *sys.argv[2:]
cmds = {
    "llama.cpp": [llama, "-m", model, "-p", prompt, "-n", "1", "-t", t, "-c", "512", "--temp", "0",
                  "--no-warmup", "-no-cnv", "--no-display-prompt"],
    "clex": [clex, model, "-p", prompt, "-n", "1", "-t", t, "-c", "512", "--temp", "0", "--no-display-prompt"],
}
times = {k: [] for k in cmds}
for r in range(runs):
    order = list(cmds) if r % 2 == 0 else list(cmds)[::-1]
    for k in order:
        t0 = time.perf_counter()
        p = subprocess.run(cmds[k], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"{k} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
        times[k].append(dt)
print(f"time from process start to the first generated token (exit included), -t {t}, {runs} alternated runs, medians:")
for k, v in times.items():
    print(f"  {k:10s} {statistics.median(v)*1e3:8.0f} ms   (min {min(v)*1e3:.0f}, max {max(v)*1e3:.0f})")
ratio = statistics.median(times["clex"]) / statistics.median(times["llama.cpp"])
print(f"  clex / llama.cpp time ratio: {ratio:.3f} (≤ 1 is as fast or faster)")
PY
  exit 0
fi

# --- the summary table of result folders (also: --summarize OUT_DIR…) ----------------------
summarize() {  # OUT_DIR…
python3 - "$@" <<'PY'
import glob, json, os, re, statistics, sys
out_dirs = sys.argv[1:]
def load(tool):
    """{(folder, round): rows} from each OUT_DIR/{tool}-{round}.json"""
    per = {}
    for i, d in enumerate(out_dirs):
        files = glob.glob(os.path.join(d, f"{tool}-*.json"))
        if not files:
            sys.exit(f"bench-vs-llamacpp.sh: no {tool}-N.json results in {d}")
        for f in files:
            per[(i, int(re.search(r"-(\d+)\.json$", f).group(1)))] = json.load(open(f))
    return per
def name(r):
    p, g, d = r["n_prompt"], r["n_gen"], r["n_depth"]
    s = f"pp{p}" if g == 0 else f"tg{g}" if p == 0 else f"pp{p}+tg{g}"
    return s + (f" @ d{d}" if d else "")
def key(r):
    fa = {-1: "auto", 0: "off", 1: "on"}.get(int(r["flash_attn"]), str(r["flash_attn"]))
    if fa == "auto": fa = "on"   # both tools: auto = on for the CPU
    return (name(r), r["n_threads"], r["n_batch"], r["n_ubatch"], r["type_k"], r["type_v"], fa)
def by_key(runs, key_of):
    """key_of(row) -> {round: samples}"""
    out = {}
    for rnd, rows in runs.items():
        for r in rows:
            out.setdefault(key_of(r), {}).setdefault(rnd, []).extend(r["samples_ts"])
    return out
llama_runs, clex_runs = load("llama"), load("clex")
llama = by_key(llama_runs, key)
clex = by_key(clex_runs, lambda r: (key(r), r.get("rope_scaling", "")))
rounds = len(clex_runs)
model = next(iter(clex_runs.values()), [{}])[0].get("model_type", "?")
where = f" from {len(out_dirs)} result folders" if len(out_dirs) > 1 else ""
print(f"\n{model}: {rounds} alternated rounds{where}. Pooled: the median t/s over every repetition")
print("of every round, and their ratio. Paired: the median over rounds of (clex median / llama.cpp")
print("median in the same round), with its range; it cancels the machine's drift between rounds.")
print("Ahead: the rounds in which clex's median was higher.\n")
hdr = "| test | threads | ub | K/V | fa | clex rope | llama.cpp t/s | clex t/s | clex / llama.cpp | paired (min–max) | ahead |"
print(hdr); print("|" + "---|" * (hdr.count("|") - 1))
for (k, rope), per in clex.items():
    test, t, b, ub, tk, tv, fa = k
    c = statistics.median([x for v in per.values() for x in v])
    lper = llama.get(k, {})
    l = statistics.median([x for v in lper.values() for x in v]) if lper else float("nan")
    pr = [statistics.median(per[r]) / statistics.median(lper[r]) for r in sorted(per) if r in lper]
    paired = f"{statistics.median(pr):.3f} ({min(pr):.3f}–{max(pr):.3f})" if pr else "n/a"
    ahead = f"{sum(x > 1 for x in pr)}/{len(pr)}" if pr else "n/a"
    print(f"| {test} | {t} | {ub} | {tk}/{tv} | {fa} | {rope or 'model'} | {l:.2f} | {c:.2f} | {c / l:.3f} | {paired} | {ahead} |")
PY
}
if [ "${1:-}" = "--summarize" ]; then
  shift; [ $# -gt 0 ] || die "usage: bench-vs-llamacpp.sh --summarize OUT_DIR [OUT_DIR…]"
  summarize "$@"; exit 0
fi

# --- throughput: alternate llama-bench and clex-run bench ---------------------------------
MODEL=${1:?usage: bench-vs-llamacpp.sh MODEL.gguf [llama-bench args…] [--clex-args "…"] [--llama-args "…"]}; shift
[ -f "$MODEL" ] || die "no model file $MODEL"
COMMON=(); CLEX_EXTRA=(); LLAMA_EXTRA=()
while [ $# -gt 0 ]; do
  case $1 in
    --clex-args) read -r -a a <<< "$2"; CLEX_EXTRA+=("${a[@]}"); shift 2 ;;
    --llama-args) read -r -a a <<< "$2"; LLAMA_EXTRA+=("${a[@]}"); shift 2 ;;
    -o|--output) shift 2 ;;   # both write JSON here
    *) COMMON+=("$1"); shift ;;
  esac
done
check_features "$MODEL"
OUT_DIR=${OUT_DIR:-$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"
say "raw results in $OUT_DIR"
say "llama-bench: ${COMMON[*]} ${LLAMA_EXTRA[*]}"
say "clex-run bench: ${COMMON[*]} ${CLEX_EXTRA[*]}"
run_llama() { "$LLAMA_BENCH" -m "$MODEL" "${COMMON[@]}" "${LLAMA_EXTRA[@]}" -o json > "$OUT_DIR/llama-$1.json"; }
run_clex() { "$CLEX_RUN" bench -m "$MODEL" "${COMMON[@]}" "${CLEX_EXTRA[@]}" -o json > "$OUT_DIR/clex-$1.json"; }
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then
    say "round $r/$ROUNDS: llama-bench"; run_llama "$r"; say "round $r/$ROUNDS: clex-run bench"; run_clex "$r"
  else
    say "round $r/$ROUNDS: clex-run bench"; run_clex "$r"; say "round $r/$ROUNDS: llama-bench"; run_llama "$r"
  fi
done

summarize "$OUT_DIR"
