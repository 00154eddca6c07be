#!/usr/bin/env bash
# The whole recipe: data + tokenizer, pre-training, the CLEX fine-tune and its plain-RoPE
# control, Hugging Face export. Wall time per phase goes to out/timings.csv.
#   bash models/train/run_all.sh            (from the repository root or from here)
# Then: bash evaluate.sh (perplexity table and plot) and python make_reference.py (the data
# of tests/trained_model.rs). Step counts: PRE_STEPS, PRE_BATCH, FT_STEPS, FT_BATCH, CLEX_SEQ, ODE_LR.
# Environment: LOG_SCALE=1 (log_scale true in the CLEX config; it measured worse), PY
# (default /root/.venvs/clex-train/bin/python, else python3), TEXTS (the fetched texts,
# default ~/.cache/clex-test-data/texts), BIN (clex-run, default ../../target/release/clex-run).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-/root/.venvs/clex-train/bin/python}
[ -x "$PY" ] || PY=python3
TEXTS=${TEXTS:-$HOME/.cache/clex-test-data/texts}
PRE_STEPS=${PRE_STEPS:-12000}
PRE_BATCH=${PRE_BATCH:-16}
FT_STEPS=${FT_STEPS:-1200}
FT_BATCH=${FT_BATCH:-16}
CLEX_SEQ=${CLEX_SEQ:-1024}   # CLEX windows: FT_BATCH*256/CLEX_SEQ of them per step, the same tokens as the control
ODE_LR=${ODE_LR:-1e-4}
# held-out PPL at 256 and 2048 during pre-training: step 400, then every sixth of the run
EVAL_AT=${EVAL_AT:-400,$(seq -s, $(( PRE_STEPS / 6 )) $(( PRE_STEPS / 6 )) $PRE_STEPS)}
mkdir -p out/logs out/ckpt
T=out/timings.csv
[ -f $T ] || echo "phase,seconds,started" > $T
phase() {  # name, command...
    local name=$1; shift
    local t0=$(date +%s)
    echo "== $name: $*"
    "$@" 2>&1 | tee out/logs/$name.log
    echo "$name,$(( $(date +%s) - t0 )),$(date -d @$t0 -Iseconds)" >> $T
}
[ -f out/data/train.u16 ] || phase data "$PY" data.py --texts "$TEXTS"
[ -f out/ckpt/pretrain.pt ] || phase pretrain "$PY" train.py pretrain --steps $PRE_STEPS --batch $PRE_BATCH \
    --out out/ckpt/pretrain.pt --log out/logs/pretrain.csv --eval-at $EVAL_AT
[ -f out/ckpt/clex.pt ] || phase finetune-clex "$PY" train.py finetune --init out/ckpt/pretrain.pt --clex \
    --steps $FT_STEPS --seq-len $CLEX_SEQ --batch $(( FT_BATCH * 256 / CLEX_SEQ )) --ode-lr $ODE_LR --out out/ckpt/clex.pt --log out/logs/finetune-clex.csv
[ -f out/ckpt/rope.pt ] || phase finetune-rope "$PY" train.py finetune --init out/ckpt/pretrain.pt \
    --steps $FT_STEPS --batch $FT_BATCH --out out/ckpt/rope.pt --log out/logs/finetune-rope.csv
phase export "$PY" export.py ${LOG_SCALE:+--log-scale}
# GGUF (F16) with clex's converter; the CLEX model is the one shipped as models/clex-llama-5m.gguf
BIN=${BIN:-../../target/release/clex-run}
mkdir -p out/gguf
phase convert bash -c "$BIN convert out/hf/clex-llama-5m -o out/gguf/clex-llama-5m.gguf --outtype f16 && \
    $BIN convert out/hf/rope-llama-5m -o out/gguf/rope-llama-5m.gguf --outtype f16 && \
    cp out/gguf/clex-llama-5m.gguf ../clex-llama-5m.gguf"
"$PY" plot_losses.py
cat $T
