"""`unift theory`: sweep heights and branchings, print a table, write JSON and a PNG.

unift theory --heights 2..10 --branching 2,3 --seeds 5 --out runs/theory
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from unift.theory.simulate import METHODS, SimConfig, sweep


def parse_ints(text: str) -> list[int]:
    """'2..10' -> [2, ..., 10]; '2,3,5' -> [2, 3, 5]; '4' -> [4]."""
    if ".." in text:
        lo, hi = text.split("..")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",") if x]


def build_parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="unift theory",
        description="RFT vs UFT leaf visits to reach pass@1 >= target on a search tree "
        "(Liu, Farina, Ozdaglar 2025, theory section).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--heights", default="2..10", help="tree heights H, '2..10' or '2,4,6'")
    p.add_argument("--branching", default="2,3", help="branching factors B, comma-separated")
    p.add_argument("--seeds", type=int, default=5, help="seeds per point (0..n-1)")
    p.add_argument("--methods", default=",".join(METHODS), help="subset of rft,uft")
    p.add_argument("--correct-leaves", type=int, default=d.correct_leaves, help="K, correct leaves per tree")
    p.add_argument("--schedule", choices=("uniform", "cosine"), default=d.schedule, help="UFT's hint schedule")
    p.add_argument("--hint-iters", type=int, default=d.hint_iters, help="cosine T_hint; 0 = 40*H")
    p.add_argument("--eta", type=float, default=d.eta, help="mirror-ascent step size")
    p.add_argument("--beta", type=float, default=d.beta, help="hint log-lik. and KL weight")
    p.add_argument("--groups", type=int, default=d.groups, help="groups (hint draws) per step")
    p.add_argument("--group-size", type=int, default=d.group_size, help="rollouts per group")
    p.add_argument("--target", type=float, default=d.target, help="pass@1 to reach")
    p.add_argument("--max-visits", type=int, default=d.max_visits, help="cap per run")
    p.add_argument("--out", default="runs/theory", help="output directory")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p


def lower_bound(b: int, h: int, k: int) -> float:
    """The paper's RFT lower bound on leaf visits: B^H / (4K)."""
    return b**h / (4 * k)


def table(results: dict, heights: list[int], k: int) -> str:
    """Markdown table of mean visits (capped points starred), one row per (B, H)."""
    methods = list(next(iter(results.values())).keys())
    head = "| B | H | B^H/(4K) | " + " | ".join(f"{m.upper()} mean (min-max)" for m in methods)
    lines = [head + " |", "|" + "---|" * (3 + len(methods))]
    for b, per_method in results.items():
        for i, h in enumerate(heights):
            cells = []
            for m in methods:
                row = per_method[m]["rows"][i]
                star = f" *{row['capped_seeds']} capped*" if row["capped_seeds"] else ""
                cells.append(f"{row['mean']:.0f} ({min(row['visits'])}-{max(row['visits'])}){star}")
            lb = lower_bound(int(b), h, k)
            lines.append(f"| {b} | {h} | {lb:.4g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fits_text(results: dict) -> str:
    """Two lines per (B, method): fitted slope on all heights and on the upper half."""
    lines = []
    for b, per_method in results.items():
        for m, res in per_method.items():
            for key in ("fit", "fit_top"):
                f = res[key]
                hs = f["heights_used"]
                span = f"H={hs[0]}..{hs[-1]}" if hs else "no uncapped heights"
                if m == "rft":
                    what = f"slope in H {f['slope']:.3f} (log B = {math.log(int(b)):.3f})"
                else:
                    what = f"degree in H {f['slope']:.2f}"
                lines.append(f"B={b} {m.upper()} {span}: log(visits) fit, {what}")
    return "\n".join(lines)


def plot(results: dict, heights: list[int], k: int, max_visits: int, path: Path) -> None:
    """Visits vs H (log scale), one panel per B: means, seed range, fits, paper's lower bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.5), squeeze=False)
    colors = {"rft": "tab:red", "uft": "tab:blue"}
    hs = np.array(heights, dtype=float)
    for ax, (b, per_method) in zip(axes[0], results.items(), strict=True):
        for m, res in per_method.items():
            rows = res["rows"]
            mean = np.array([r["mean"] for r in rows])
            lo = mean - np.array([min(r["visits"]) for r in rows])
            hi = np.array([max(r["visits"]) for r in rows]) - mean
            capped = np.array([r["capped_seeds"] > 0 for r in rows])
            c = colors.get(m, "k")
            ax.errorbar(
                hs[~capped],
                mean[~capped],
                yerr=[lo[~capped], hi[~capped]],
                fmt="o",
                color=c,
                capsize=3,
                label=f"{m.upper()} mean (seed range)",
            )
            if capped.any():
                ax.plot(
                    hs[capped],
                    mean[capped],
                    "o",
                    mfc="none",
                    color=c,
                    label=f"{m.upper()} capped (lower bound)",
                )
            f = res["fit_top"]  # the upper half of the heights: the asymptotic regime
            if not math.isnan(f["slope"]):
                used = np.array(f["heights_used"], dtype=float)
                x = used if m == "rft" else np.log(used)
                form = f"exp({f['slope']:.2f} H)" if m == "rft" else f"H^{f['slope']:.2f}"
                ax.plot(
                    used,
                    np.exp(f["slope"] * x + f["intercept"]),
                    "-",
                    color=c,
                    alpha=0.6,
                    label=f"{m.upper()} fit on H>={int(used[0])}: {form}",
                )
        ax.plot(
            hs,
            [lower_bound(int(b), int(h), k) for h in hs],
            "k--",
            label="RFT lower bound $B^H/(4K)$",
        )
        ax.axhline(max_visits, color="gray", lw=0.8, ls=":", label="cap")
        ax.set_yscale("log")
        ax.set_xlabel("tree height H")
        ax.set_ylabel("leaf visits to reach pass@1 >= 0.5")
        ax.set_title(f"B = {b}, K = {k}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    heights, branchings = parse_ints(args.heights), parse_ints(args.branching)
    methods = tuple(m for m in args.methods.split(",") if m)
    if not set(methods) <= set(METHODS):
        raise SystemExit(f"unknown method in {methods}; choose from {METHODS}")
    cfg = SimConfig(
        eta=args.eta,
        beta=args.beta,
        groups=args.groups,
        group_size=args.group_size,
        target=args.target,
        max_visits=args.max_visits,
        schedule=args.schedule,
        hint_iters=args.hint_iters,
        correct_leaves=args.correct_leaves,
    )
    start = time.perf_counter()
    results = sweep(heights, branchings, args.seeds, cfg, methods)
    wall = time.perf_counter() - start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": "unift theory " + " ".join(argv),
        "config": vars(cfg) | {"heights": heights, "branching": branchings, "seeds": args.seeds},
        "wall_time_s": round(wall, 1),
        "lower_bound": {
            str(b): [lower_bound(b, h, cfg.correct_leaves) for h in heights] for b in branchings
        },
        "results": results,
    }
    (out / "theory.json").write_text(json.dumps(record, indent=1))
    if not args.no_plot:
        plot(results, heights, cfg.correct_leaves, cfg.max_visits, out / "theory.png")
    print()
    print(table(results, heights, cfg.correct_leaves))
    print()
    print(fits_text(results))
    print(
        f"\nwall time {wall:.1f} s; wrote {out / 'theory.json'}"
        + ("" if args.no_plot else f" and {out / 'theory.png'}")
    )
    return 0
