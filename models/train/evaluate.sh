#!/usr/bin/env bash
# Perplexity vs window length with clex-run: the CLEX model (its own scaling, and forced
# plain RoPE) and the plain-RoPE control (none, linear, yarn, dynamic-ntk, clex-ntk), on the
# 4 x 8192-token evaluation texts (eval_set.py). JSON per run in out/eval/results/, then
# plot_eval.py writes eval-ppl.md / eval-ppl.csv / eval-ppl.png here.
#   bash models/train/evaluate.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-/root/.venvs/clex-train/bin/python}
[ -x "$PY" ] || PY=python3
BIN=${BIN:-../../target/release/clex-run}
M=${MODEL:-../clex-llama-5m.gguf}
C=${CONTROL:-out/gguf/rope-llama-5m.gguf}
LENS=${LENS:-256 512 1024 2048 4096}
R=out/eval/results
mkdir -p $R
[ -f out/eval/texts/isaiah.txt ] || "$PY" eval_set.py
F=()
for f in isaiah sotu-1907 sotu-1946 sotu-1981; do F+=(-f out/eval/texts/$f.txt); done
CS=$(echo $LENS | tr ' ' ',')
ppl() { echo "+ clex-run perplexity $*" >&2; "$BIN" perplexity "$@" -t 2 --no-progress; }
t0=$(date +%s)
ppl "$M" "${F[@]}" -c "$CS" --rope-scaling clex,none --json=$R/clex.json
ppl "$C" "${F[@]}" -c "$CS" --rope-scaling none,dynamic-ntk,clex-ntk --json=$R/control.json
for n in $LENS; do
    # as a llama.cpp user runs a 256-token model at n tokens: --rope-scale n/256
    s=$(awk "BEGIN{print 256/$n}")
    ppl "$C" "${F[@]}" -c $n --rope-scaling linear --rope-freq-scale $s --json=$R/control-linear-$n.json
    ppl "$C" "${F[@]}" -c $n --rope-scaling yarn --rope-freq-scale $s --yarn-orig-ctx 256 --json=$R/control-yarn-$n.json
done
echo "evaluation wall time: $(( $(date +%s) - t0 )) s"
"$PY" plot_eval.py
