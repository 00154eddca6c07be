"""Collects the per-step training losses into losses.csv and plots them (losses.png)."""

import csv
from pathlib import Path

HERE = Path(__file__).parent
PHASES = ["pretrain", "finetune-clex", "finetune-rope"]


def read(phase):
    p = HERE / "out" / "logs" / f"{phase}.csv"
    with open(p) as f:
        return [dict(r, phase=phase) for r in csv.DictReader(f)]


def ema(xs, a=0.9):
    out, m = [], None
    for x in xs:
        m = x if m is None else a * m + (1 - a) * x
        out.append(m)
    return out


def main():
    data = {ph: read(ph) for ph in PHASES}
    with open(HERE / "losses.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["phase", "step", "tokens", "loss", "lr", "t", "seconds"])
        for ph in PHASES:
            for r in data[ph]:
                w.writerow([ph, r["step"], r["tokens"], r["loss"], r["lr"], r["t"], r["seconds"]])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    pre = data["pretrain"]
    n_pre = int(pre[-1]["tokens"])
    x = [int(r["tokens"]) / 1e6 for r in pre]
    y = [float(r["loss"]) for r in pre]
    a1.plot(x, y, color="C0", alpha=0.25, lw=0.8)
    a1.plot(x, ema(y), color="C0", label="pre-training, plain RoPE (L = 256)")
    for ph, col, lab in (("finetune-clex", "C3", "fine-tune, CLEX (t' in 1..16)"),
                         ("finetune-rope", "C2", "fine-tune, plain RoPE (control)")):
        x = [(n_pre + int(r["tokens"])) / 1e6 for r in data[ph]]
        y = [float(r["loss"]) for r in data[ph]]
        a1.plot(x, y, color=col, alpha=0.25, lw=0.8)
        a1.plot(x, ema(y), color=col, label=lab)
    a1.set_xlabel("training tokens (millions)")
    a1.set_ylabel("training loss (nats/token), EMA 0.9 over the raw steps")
    a1.set_ylim(top=min(8.5, a1.get_ylim()[1]))
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    a1.set_title("Training loss")

    cl = data["finetune-clex"]
    ts = [int(r["t"]) for r in cl]
    sc = a2.scatter([int(r["step"]) for r in cl], [float(r["loss"]) for r in cl], c=ts, cmap="viridis", s=14)
    rp = data["finetune-rope"]
    a2.plot([int(r["step"]) for r in rp], ema([float(r["loss"]) for r in rp]), color="C2", label="control (EMA)")
    fig.colorbar(sc, ax=a2, label="CLEX scale t' of the step (positions over 256 t')")
    a2.set_xlabel("fine-tuning step")
    a2.set_ylabel("training loss")
    a2.set_title("Fine-tuning: CLEX steps by t', control")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "losses.png")
    print("wrote losses.csv, losses.png")


if __name__ == "__main__":
    main()
