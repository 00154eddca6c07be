"""Reference logits of the final CLEX checkpoint for tests/trained_model.rs.

  python make_reference.py [--mode f16wa] [--out ../../tests/data/trained/reference.json]

One full forward, no cache, over a held-out 1024-token window (window 1 of the Book of
Isaiah at n = 1024, i.e. its tokens 1024..2047 with the first replaced by BOS, as the
perplexity protocol cuts it), at the CLEX bucket the runtime uses, t = ceil(1024/256) = 4,
with the table z(t) solved in float64 (the runtime solves in f64 too).

--mode says which weights/arithmetic the reference uses:
  f32    the float32 checkpoint as trained;
  f16w   the matrices rounded to float16, as the committed F16 GGUF stores them (norms and
         the CLEX tensors stay float32, as in the GGUF);
  f16wa  f16w, and the input of every matrix product rounded to float16 as well (what
         ggml's generic F16 dot product would do; not what our runtime measures as).
Every mode is computed and the differences between them are recorded; the saved logits
are those of --mode. Measured against clex-run on this window (tests/trained_model.rs) for
the 5 M model: f16w 1.97e-3, f16wa 5.9e-3 max |delta logit| (the 3 M model before it:
f16w 2.6e-5, f16wa 1.2e-3, f32 1.8e-3); so the default is f16w: the runtime computes with
exactly the stored f16 weights and float32 activations.
"""

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

from clexlm import f16_activation_linear, plain_linear
from train import load

HERE = Path(__file__).parent
POSITIONS = [0, 1, 100, 255, 256, 511, 512, 1023]


def f16_round_matrices(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "clex_layer" not in name:
                p.copy_(p.half().float())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=str(HERE / "out" / "ckpt" / "clex.pt"))
    ap.add_argument("--tokenizer", default=str(HERE / "out" / "tokenizer" / "tokenizer.model"))
    ap.add_argument("--text", default=str(HERE / "out" / "heldout" / "isaiah.txt"))
    ap.add_argument("--gguf", default=str(HERE.parent / "clex-llama-5m.gguf"))
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--mode", default="f16w", choices=["f32", "f16w", "f16wa"])
    ap.add_argument("--out", default=str(HERE.parent.parent / "tests" / "data" / "trained" / "reference.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    text = Path(args.text).read_text(encoding="utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    toks = [1] + sp.encode(text)
    n, k = args.n, args.window
    ids = toks[k * n : (k + 1) * n]
    ids[0] = 1
    x = torch.tensor(ids)[None]

    runs = {}
    for mode in ("f32", "f16w", "f16wa"):
        model, ck = load(args.ckpt)
        if mode != "f32":
            f16_round_matrices(model)
        model.eval().prepare_inference(float64_table=True)
        lin = f16_activation_linear if mode == "f16wa" else plain_linear
        with torch.no_grad():
            logits, t = model(x, lin=lin)
        runs[mode] = (logits[0].float(), t, model)
    logits, t, model = runs[args.mode]
    diffs = {
        f"{a}_vs_{b}": float((runs[a][0] - runs[b][0]).abs().max())
        for a, b in (("f32", "f16w"), ("f32", "f16wa"), ("f16w", "f16wa"))
    }
    top2 = logits.topk(2, dim=-1)
    nll = F.cross_entropy(logits[:-1].double(), x[0, 1:], reduction="none")
    sent = "In the beginning God created the heaven and the earth.\nAnd God said, Let there be light: and there was light."
    gguf = Path(args.gguf)
    ref = {
        "description": "Logits of the final CLEX checkpoint (models/train/out/ckpt/clex.pt) on a held-out "
        f"{n}-token window: window {k} of the Book of Isaiah (tokens {k*n}..{(k+1)*n-1} of [BOS]+tokens, "
        "first replaced by BOS), one full forward without cache, CLEX bucket t = ceil(n/L), table solved "
        f"in float64. Weights/arithmetic: mode {args.mode!r} (see models/train/make_reference.py).",
        "mode": args.mode,
        "gguf": gguf.name,
        "gguf_sha256": hashlib.sha256(gguf.read_bytes()).hexdigest() if gguf.exists() else None,
        "n": n,
        "t": t,
        "L": model.cfg.max_position_embeddings,
        "log_scale": bool(model.cfg.log_scale),
        "ids": ids,
        "positions": POSITIONS,
        "logits": [[float(f"{v:.8g}") for v in logits[p].tolist()] for p in POSITIONS],
        "argmax": top2.indices[:, 0].tolist(),
        "max_logit": [float(f"{v:.8g}") for v in top2.values[:, 0].tolist()],
        "margin": [float(f"{v:.6g}") for v in (top2.values[:, 0] - top2.values[:, 1]).tolist()],
        "mean_nll": float(nll.mean()),
        "table_t": model.clex_table[t - 1].tolist(),
        "mode_max_abs_diffs": diffs,
        "tokenizer_case": {"text": sent, "ids": [1] + sp.encode(sent)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size/1e3:.0f} kB): t = {t}, mean NLL {ref['mean_nll']:.4f} "
          f"(PPL {math.exp(ref['mean_nll']):.2f}), mode differences {json.dumps(diffs)}")


if __name__ == "__main__":
    main()
