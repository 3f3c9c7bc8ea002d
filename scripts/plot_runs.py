"""Plot metrics of several runs against the step, one panel per metric key.

    python scripts/plot_runs.py runs/a runs/b --keys demo/rewards/implicit demo/loss --out fig.png
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--keys", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    fig, axes = plt.subplots(1, len(args.keys), figsize=(5 * len(args.keys), 3.6), squeeze=False)
    for run in args.runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        for ax, key in zip(axes[0], args.keys, strict=True):
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            ax.plot(*zip(*points, strict=True), marker=".", label=run.name)
            ax.set_title(key)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    axes[0][0].legend()
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
