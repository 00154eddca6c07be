"""Collects evaluate.sh's JSON into eval-ppl.csv, eval-ppl.md (the table) and eval-ppl.png."""

import csv
import json
from pathlib import Path

HERE = Path(__file__).parent
R = HERE / "out" / "eval" / "results"

SERIES = [  # (label, file prefix, scaling)
    ("CLEX model, clex", "clex", "clex"),
    ("CLEX model, none (t = 1 forced)", "clex", "none"),
    ("control, none", "control", "none"),
    ("control, linear (n/256)", "control-linear", "linear"),
    ("control, yarn (n/256)", "control-yarn", "yarn"),
    ("control, dynamic-ntk", "control", "dynamic-ntk"),
    ("control, clex-ntk", "control", "clex-ntk"),
]


def rows():
    out = []
    for f in sorted(R.glob("*.json")):
        d = json.loads(f.read_text())
        prefix = f.stem.rsplit("-", 1)[0] if f.stem[-1].isdigit() else f.stem
        for r in d["results"]:
            if r.get("skipped"):
                continue
            out.append({"file": prefix, "scaling": r["rope_scaling"], "n_ctx": r["n_ctx"], "t": r["bucket"],
                        "windows": r["windows"], "tokens": r["tokens"], "ppl": r["ppl"], "ppl_error": r["ppl_error"],
                        "mean_nll": r["mean_nll"], "seconds": r["seconds"]})
    return out


def main():
    rs = rows()
    get = {(r["file"], r["scaling"], r["n_ctx"]): r for r in rs}
    lens = sorted({r["n_ctx"] for r in rs})
    with open(HERE / "eval-ppl.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "scaling", "n_ctx", "t", "windows", "tokens", "ppl", "ppl_error", "mean_nll", "seconds"])
        for label, pre, sc in SERIES:
            for n in lens:
                r = get.get((pre, sc, n))
                if r:
                    w.writerow(["clex" if pre == "clex" else "control", sc, n, r["t"], r["windows"], r["tokens"],
                                f"{r['ppl']:.4f}", f"{r['ppl_error']:.4f}", f"{r['mean_nll']:.5f}", f"{r['seconds']:.1f}"])
    lines = ["| n_ctx | " + " | ".join(l for l, _, _ in SERIES) + " |", "|---:|" + "---:|" * len(SERIES)]
    for n in lens:
        cells = []
        for _, pre, sc in SERIES:
            r = get.get((pre, sc, n))
            cells.append(f"{r['ppl']:.2f} ± {r['ppl_error']:.2f}" if r else "–")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    base = get.get(("clex", "clex", 256))
    if base:
        lines.append("")
        lines.append("CLEX model, clex, PPL(n) / PPL(256): " + ", ".join(
            f"{n}: {get[('clex', 'clex', n)]['ppl'] / base['ppl']:.3f}" for n in lens if ("clex", "clex", n) in get))
    c256 = get.get(("control", "none", 256))
    if c256:
        lines.append("control, none, PPL(n) / PPL(256): " + ", ".join(
            f"{n}: {get[('control', 'none', n)]['ppl'] / c256['ppl']:.3f}" for n in lens if ("control", "none", n) in get))
    (HERE / "eval-ppl.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.6), dpi=110)
    styles = ["-o", "--o", "-s", "-^", "-v", "-d", "-x"]
    for (label, pre, sc), st in zip(SERIES, styles):
        pts = [(n, get[(pre, sc, n)]) for n in lens if (pre, sc, n) in get]
        if not pts:
            continue
        xs = [n for n, _ in pts]
        ys = [r["ppl"] for _, r in pts]
        es = [r["ppl_error"] for _, r in pts]
        lw = 2.6 if (pre, sc) == ("clex", "clex") else 1.4
        ax.errorbar(xs, ys, yerr=es, fmt=st, label=label, lw=lw, ms=5, capsize=2)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(lens)
    ax.set_xticklabels([str(n) for n in lens])
    ax.axvline(256, color="grey", lw=0.8, ls=":")
    ax.text(262, ax.get_ylim()[0] * 1.05, "trained at 256", color="grey", fontsize=8)
    ax.set_xlabel("window length n (tokens)")
    ax.set_ylabel("perplexity (held-out, 4 × 8192 tokens)")
    ax.set_title("clex-llama-5m: train at 256, test up to 4096 (16×)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "eval-ppl.png")
    print("wrote eval-ppl.csv, eval-ppl.md, eval-ppl.png")


if __name__ == "__main__":
    main()
