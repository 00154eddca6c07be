"""Steps 2 and 3: pre-train a small LLaMA with plain RoPE at L = 256, then fine-tune it
with CLEX (as the reference trains) or, as the control, with plain RoPE again.

  python train.py pretrain  --steps N --out out/ckpt/pretrain.pt
  python train.py finetune  --init out/ckpt/pretrain.pt --clex --steps M --out out/ckpt/clex.pt
  python train.py finetune  --init out/ckpt/pretrain.pt --steps M --out out/ckpt/rope.pt

Every step is one forward over a batch of random 256-token windows of the training stream
(--seq-len n for the CLEX fine-tune: n-token windows), the first token of each window
replaced by BOS (as the perplexity protocol does). With --clex every forward draws one
integer t' in 1..T and sorted random positions spread over [0, 256 t') (n tokens at steps
of 256/n; clexlm.ClexLayer.train_positions), and the ODE is solved with gradients, so U and
D are learned jointly with the model. Losses go to a CSV, one row per step.
"""

import argparse
import csv
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clexlm import Config, LlamaLM, ClexLayer

HERE = Path(__file__).parent
MODEL = dict(
    vocab_size=4096,
    hidden_size=256,
    intermediate_size=704,  # a multiple of 32: every product takes the same ggml F16 kernel (models/README.md)
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
)
CLEX = dict(max_factor=16, param_factor=1, act="tanh", time_dt=0.01)


def batches(data, n, batch, seed):
    g = np.random.default_rng(seed)
    while True:
        starts = g.integers(0, len(data) - n, size=batch)
        x = np.stack([data[s : s + n] for s in starts]).astype(np.int64)
        x[:, 0] = 1  # BOS
        yield torch.from_numpy(x)


def lr_at(step, steps, peak, warmup, floor):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * p))


@torch.no_grad()
def heldout_ppl(model, data, n, max_windows):
    """Perplexity over non-overlapping n-token windows of the held-out stream (BOS first),
    every prediction after the first token, at the model's inference RoPE."""
    model.eval()
    model.prepare_inference(float64_table=False)
    nll, cnt = 0.0, 0
    k = min(len(data) // n, max_windows)
    for w in range(k):
        x = torch.from_numpy(data[w * n : (w + 1) * n].astype(np.int64))[None]
        x[0, 0] = 1
        logits, _ = model(x)
        l = F.cross_entropy(logits[0, :-1].double(), x[0, 1:], reduction="sum")
        nll += l.item()
        cnt += n - 1
    model.train()
    return math.exp(nll / cnt)


def save(model, path, extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "cfg": model.cfg.to_dict(), **extra}, path)


def load(path):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = LlamaLM(Config(**ck["cfg"]))
    model.load_state_dict(ck["model"])
    return model, ck


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["pretrain", "finetune"])
    ap.add_argument("--init", help="checkpoint to fine-tune")
    ap.add_argument("--clex", action="store_true", help="fine-tune with CLEX")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--ode-lr", type=float, default=None, help="learning rate of U and D (default: --lr)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=str(HERE / "out" / "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", required=True, help="CSV of per-step losses")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=None,
                    help="tokens per window of the CLEX fine-tune (default L = 256). As the reference "
                    "trains its 16K model (train_len 4L): n > L real tokens placed over [0, L t') "
                    "at positions that are multiples of L/n")
    ap.add_argument("--fp32", action="store_true", help="train in float32 (default: bfloat16 autocast, "
                    "which AMX/AVX512-BF16 CPUs run about 1.5x faster; master weights stay float32)")
    ap.add_argument("--no-compile", action="store_true", help="do not torch.compile the decoder blocks "
                    "(compiling needs a C++ compiler and saves about a quarter of the step time)")
    ap.add_argument("--model-json", help="JSON object overriding the model shape (pretrain only)")
    ap.add_argument("--eval-at", default="", help="comma-separated steps at which to print held-out "
                    "PPL at 256 and 2048 (diagnostics)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    data = np.fromfile(Path(args.data) / "train.u16", dtype=np.uint16)
    held = np.fromfile(Path(args.data) / "heldout.u16", dtype=np.uint16)
    L = MODEL["max_position_embeddings"]  # 256 whatever the shape
    seq_len = args.seq_len or L  # tokens per training window
    if seq_len != L and not args.clex:
        ap.error("--seq-len other than 256 is for the CLEX fine-tune (plain RoPE trains at L)")

    if args.phase == "pretrain":
        shape = dict(MODEL, **json.loads(args.model_json)) if args.model_json else MODEL
        model = LlamaLM(Config(**shape))
        lr = args.lr or 2e-3
        warmup = args.warmup if args.warmup is not None else 100
        floor = lr * 0.05
    else:
        model, _ = load(args.init)
        if args.clex:
            model.cfg.clex = dict(CLEX)
            model.model.clex_layer = ClexLayer(model.cfg)  # reference init: U kaiming, D zero
        lr = args.lr or 5e-4
        warmup = args.warmup if args.warmup is not None else 10
        floor = lr * 0.1
    ode_lr = args.ode_lr or lr
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.phase}{' clex' if args.clex else ''}: {n_params/1e6:.3f} M parameters, "
          f"{args.steps} steps x {args.batch} x {seq_len} tokens, lr {lr}, ode lr {ode_lr}", flush=True)

    decay, no_decay, ode = [], [], []
    for name, p in model.named_parameters():
        if "clex_layer" in name:
            ode.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": decay, "weight_decay": 0.1, "base": lr},
        {"params": no_decay, "weight_decay": 0.0, "base": lr},
    ]
    if ode:
        groups.append({"params": ode, "weight_decay": 0.0, "base": ode_lr})
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)

    if not args.no_compile:
        model.compile_blocks()
    # the same window order for the CLEX fine-tune and its control (same seed)
    it = batches(data, seq_len, args.batch, seed=args.seed + (0 if args.phase == "pretrain" else 1))
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    logf = open(args.log, "w", newline="")
    w = csv.writer(logf)
    w.writerow(["step", "tokens", "loss", "lr", "t", "seconds"])
    model.train()
    t0 = time.time()
    for step in range(args.steps):
        x = next(it)
        scale = lr_at(step, args.steps, 1.0, warmup, floor / lr)
        for g in opt.param_groups:
            g["lr"] = g["base"] * scale
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32):
            logits, t = model(x, train=True)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        el = time.time() - t0
        w.writerow([step + 1, (step + 1) * args.batch * seq_len, f"{loss.item():.4f}", f"{lr * scale:.3g}", t, f"{el:.1f}"])
        if str(step + 1) in args.eval_at.split(","):
            e = {n: round(heldout_ppl(model, held, n, 16384 // n), 3) for n in (256, 2048)}
            print(f"step {step+1}: held-out PPL {e}, ratio 2048/256 {e[2048]/e[256]:.3f}", flush=True)
        if step % 10 == 0 or step + 1 == args.steps:
            logf.flush()
            print(f"step {step+1}/{args.steps} loss {loss.item():.3f} t {t} lr {lr*scale:.2e} "
                  f"{el:.0f}s ({el/(step+1):.2f} s/step)", flush=True)
    logf.close()
    train_s = time.time() - t0

    evals = {"ppl_256": heldout_ppl(model, held, 256, 64)}
    if args.clex:
        for n in (1024, 4096):
            evals[f"ppl_{n}"] = heldout_ppl(model, held, n, max(1, 16384 // n))
        z = model.model.clex_layer.table()
        evals["z_T_over_theta"] = (z[-1] / model.model.clex_layer.inv_freq).tolist()
    print("held-out (PyTorch):", json.dumps(evals), flush=True)
    save(model, Path(args.out), {"phase": args.phase, "clex": args.clex, "steps": args.steps,
                                 "train_seconds": train_s, "evals": evals, "args": vars(args)})
    print(f"done in {train_s:.0f}s of training, {time.time()-t0:.0f}s with evaluation", flush=True)


if __name__ == "__main__":
    main()
