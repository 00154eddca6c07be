"""Reference logits of the final CLEX checkpoint for tests/trained_model.rs.

  python make_reference.py [--out ../../tests/data/trained/reference.json]

One full forward, no cache, over a held-out 1024-token window (window 1 of the Book of
Isaiah at n = 1024, i.e. its tokens 1024..2047 with the first replaced by BOS, as the
perplexity protocol cuts it), at the CLEX bucket the runtime uses, t = ceil(1024/256) = 4.

The reference computes with the weights exactly as the committed F16 GGUF stores them (the
matrices rounded to float16; norms and the CLEX tensors float32) and otherwise in float64
(activations, RoPE angles, the CLEX table), so that its own rounding is negligible. What
remains is the arithmetic of ggml's F16 matrix kernels, which differs by CPU:
  * ggml's AMX buffer type (CPUs with AMX; the default, weights repacked) multiplies F16
    weights with float32 activations, for a weight of out x in with out % 32 == 0 and
    in % 16 == 0; other F16 weights stay in a plain buffer;
  * the plain F16 kernel (any other CPU, `--no-repack`) first rounds the activations to f16.
So the file holds one variant per kernel assignment, each naming the matrices whose input
is rounded to f16 (`f16_inputs`, GGUF tensor kinds): "amx" (the rule above) and "generic"
(every matrix). The test picks the variant that matches where the runtime placed the weights.
The float32 forward of the unrounded checkpoint is recorded too (`f32_checkpoint_vs_amx`).
"""

import argparse
import hashlib
import json
import math
from pathlib import Path

import sentencepiece as spm
import torch
import torch.nn.functional as F

from train import load

HERE = Path(__file__).parent
POSITIONS = [0, 1, 100, 255, 256, 511, 512, 1023]
KINDS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
         "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down", "lm_head": "output"}


def f16_round_matrices(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "clex_layer" not in name:
                p.copy_(p.half().float())


def kind_of(model):
    """id(linear layer) -> GGUF tensor kind."""
    return {id(m): KINDS[name.rsplit(".", 1)[-1]] for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)}


def amx_takes(layer):
    out, k = layer.weight.shape
    return out % 32 == 0 and k % 16 == 0


def variant_linear(kinds, rounded):
    def lin(x, layer):
        if kinds[id(layer)] in rounded:
            x = x.half().to(x.dtype)
        return F.linear(x, layer.weight)
    return lin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=str(HERE / "out" / "ckpt" / "clex.pt"))
    ap.add_argument("--tokenizer", default=str(HERE / "out" / "tokenizer" / "tokenizer.model"))
    ap.add_argument("--text", default=str(HERE / "out" / "heldout" / "isaiah.txt"))
    ap.add_argument("--gguf", default=str(HERE.parent / "clex-llama-5m.gguf"))
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--window", type=int, default=1)
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

    # float32, unrounded: the checkpoint as trained (recorded for comparison only)
    model, _ = load(args.ckpt)
    model.eval().prepare_inference(float64_table=True)
    with torch.no_grad():
        f32_logits = model(x)[0][0].double()

    model, _ = load(args.ckpt)
    f16_round_matrices(model)
    model.double().eval().prepare_inference(float64_table=True)
    model.clex_table = model.clex_table.double()
    kinds = kind_of(model)
    all_kinds = sorted(set(kinds.values()))
    amx_rounded = sorted({kinds[id(m)] for m in model.modules()
                          if isinstance(m, torch.nn.Linear) and not amx_takes(m)})
    variants = {}
    for name, rounded in (("amx", amx_rounded), ("generic", all_kinds)):
        with torch.no_grad():
            logits, t = model(x, lin=variant_linear(kinds, set(rounded)))
        logits = logits[0]
        top2 = logits.topk(2, dim=-1)
        nll = F.cross_entropy(logits[:-1], x[0, 1:], reduction="none")
        variants[name] = {
            "f16_inputs": rounded,
            "logits": [[float(f"{v:.9g}") for v in logits[p].tolist()] for p in POSITIONS],
            "argmax": top2.indices[:, 0].tolist(),
            "max_logit": [float(f"{v:.9g}") for v in top2.values[:, 0].tolist()],
            "margin": [float(f"{v:.6g}") for v in (top2.values[:, 0] - top2.values[:, 1]).tolist()],
            "mean_nll": float(nll.mean()),
            "_logits": logits,
        }
    diffs = {
        "amx_vs_generic": float((variants["amx"]["_logits"] - variants["generic"]["_logits"]).abs().max()),
        "f32_checkpoint_vs_amx": float((f32_logits - variants["amx"]["_logits"]).abs().max()),
    }
    for v in variants.values():
        del v["_logits"]
    sent = "In the beginning God created the heaven and the earth.\nAnd God said, Let there be light: and there was light."
    gguf = Path(args.gguf)
    ref = {
        "description": "Logits of the final CLEX checkpoint (models/train/out/ckpt/clex.pt) on a held-out "
        f"{n}-token window: window {k} of the Book of Isaiah (tokens {k*n}..{(k+1)*n-1} of [BOS]+tokens, "
        "first replaced by BOS), one full forward without cache, CLEX bucket t = ceil(n/L). Matrices "
        "rounded to f16 as the GGUF stores them, everything else in float64; one variant per ggml F16 "
        "kernel assignment, naming the matrices whose input that kernel rounds to f16 "
        "(see models/train/make_reference.py).",
        "gguf": gguf.name,
        "gguf_sha256": hashlib.sha256(gguf.read_bytes()).hexdigest() if gguf.exists() else None,
        "n": n,
        "t": t,
        "L": model.cfg.max_position_embeddings,
        "log_scale": bool(model.cfg.log_scale),
        "ids": ids,
        "positions": POSITIONS,
        "variants": variants,
        "table_t": model.clex_table[t - 1].tolist(),
        "max_abs_diffs": diffs,
        "tokenizer_case": {"text": sent, "ids": [1] + sp.encode(sent)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size/1e3:.0f} kB): t = {t}, mean NLL "
          f"{variants['amx']['mean_nll']:.4f} (PPL {math.exp(variants['amx']['mean_nll']):.2f}), "
          f"f16 inputs under amx: {amx_rounded}, differences {json.dumps(diffs)}")


if __name__ == "__main__":
    main()
