"""PyTorch-side perplexity vs window length on the evaluation texts (eval_set.py), same
protocol as clex-run perplexity (non-overlapping windows, first token -> BOS, every
prediction after the first). Used to choose log_scale before exporting.

  python eval_torch.py out/ckpt/clex.pt [--log-scale both|on|off] [--lens 256,1024,4096]
"""
import argparse
import math
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

from train import load

HERE = Path(__file__).parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--log-scale", default="both", choices=["both", "on", "off"])
    ap.add_argument("--lens", default="256,512,1024,2048,4096")
    args = ap.parse_args()
    torch.set_num_threads(2)
    sp = spm.SentencePieceProcessor(model_file=str(HERE / "out" / "tokenizer" / "tokenizer.model"))
    docs = []
    for p in sorted((HERE / "out" / "eval" / "texts").glob("*.txt")):
        t = p.read_text(encoding="utf-8")
        docs.append([1] + sp.encode(t[:-1] if t.endswith("\n") else t))
    model, _ = load(args.ckpt)
    model.eval().prepare_inference(float64_table=True)
    settings = {"both": [False, True], "on": [True], "off": [False]}[args.log_scale]
    for ls in settings:
        model.cfg.log_scale = ls
        out = []
        for n in map(int, args.lens.split(",")):
            nll, cnt = 0.0, 0
            for ids in docs:
                for k in range(len(ids) // n):
                    x = torch.tensor(ids[k * n:(k + 1) * n])[None]
                    x[0, 0] = 1
                    with torch.no_grad():
                        lg, t = model(x)
                    nll += F.cross_entropy(lg[0, :-1].double(), x[0, 1:], reduction="sum").item()
                    cnt += n - 1
            out.append(f"{n}: {math.exp(nll/cnt):.3f}")
            print(f"log_scale {ls}: n {n} t {t} PPL {math.exp(nll/cnt):.3f}", flush=True)
        print(f"log_scale {ls}: " + ", ".join(out), flush=True)


if __name__ == "__main__":
    main()
