"""unift versus TRL on identical work, SmolLM2-135M-Instruct, this CPU: one command.

    .venv/bin/python bench/run.py                      # sft, dpo, peak; 3 repeats (~15 min idle)
    .venv/bin/python bench/run.py --quick              # smoke run (~2-3 min idle)
    .venv/bin/python bench/run.py --only ablate        # what each unift speed-up buys

Every measurement runs in its own subprocess (`bench/_worker.py`), so frameworks never share
torch state or threads; repeats are interleaved (unift, TRL, TRL, unift, ...) so a change in
the machine's load hits every framework alike. A measurement excludes model load and the first
(warm-up) step and times `--steps` optimiser steps on the same in-order batches.

    sft     tokens/s (non-padding tokens), 256 demonstrations, batch 8, max length 256
    dpo     pairs/s, 128 preference pairs, batch 4, max length 256, beta 0.1, sigmoid loss
    peak    bf16 / fp32 2048x2048 matmul GFLOP/s, and unift's training FLOP/s (6 N per token)
            on rows of exactly 256 tokens as a fraction of the bf16 peak measured around it
    ablate  unift variants (bench/variants.py) side by side with unift's default
    grpo    lands with the RL trainer (`bench_grpo`)

Results: a table on stdout and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "latest.json"


@dataclass(frozen=True)
class Job:
    """One side of a comparison: a worker invocation, repeated."""

    group: str  # sft | dpo | peak | ablate
    bench: str  # the worker's benchmark: sft | dpo | flops
    framework: str  # unift | trl
    precision: str  # bf16 | fp32
    variant: str = "default"  # unift only (bench/variants.py)

    @property
    def label(self) -> str:
        if self.framework == "trl":
            return f"TRL {'bf16 autocast' if self.precision == 'bf16' else 'fp32'}"
        name = f"unift {self.precision}"
        return name if self.variant == "default" else f"{name} {self.variant}"


def jobs(groups: list[str], quick: bool) -> list[Job]:
    out: list[Job] = []
    for group in groups:
        if group in ("sft", "dpo"):
            out += [Job(group, group, "unift", "bf16"), Job(group, group, "trl", "bf16")]
            if not quick:
                out.append(Job(group, group, "trl", "fp32"))
        elif group == "peak":
            out += [Job(group, "flops", "unift", "bf16")]
            if not quick:
                out.append(Job(group, "flops", "unift", "bf16", "bf16w-noref"))
        elif group == "ablate":
            for bench in ("sft", "dpo"):
                out += [Job(group, bench, "unift", "bf16"), Job(group, bench, "unift", "bf16", "unpacked"),
                        Job(group, bench, "unift", "fp32"), Job(group, bench, "unift", "bf16", "bf16w")]
            out += [Job(group, "sft", "unift", "bf16", "noref"), Job(group, "sft", "unift", "bf16", "bf16w-noref")]
        elif group == "grpo":
            bench_grpo()
        else:
            raise SystemExit(f"unknown benchmark {group!r}: sft, dpo, grpo, peak, ablate")
    return out


def bench_grpo() -> None:
    """GRPO steps/s and rollout tokens/s, unift versus TRL's GRPOTrainer (4 prompts x 4
    generations x at most 64 new tokens), to be filled in when unift's RL trainer lands."""
    raise NotImplementedError("lands with the RL trainer")


def run_worker(job: Job, warmup: int, steps: int) -> dict:
    cmd = [sys.executable, str(HERE / "_worker.py"), job.bench, job.framework, "--precision", job.precision,
           "--variant", job.variant, "--warmup", str(warmup), "--steps", str(steps)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"worker failed: {' '.join(cmd)}")
    out = json.loads(lines[-1][len("RESULT "):])
    out["wall_s"] = time.perf_counter() - start
    return out


def throughput(result: dict) -> float:
    return sum(result["units"]) / sum(result["step_s"])


def summarise(job: Job, results: list[dict]) -> dict:
    rates = [throughput(r) for r in results]
    row = {**asdict(job), "label": job.label, "unit": "pairs/s" if job.bench == "dpo" else "tokens/s",
           "per_repeat": rates, "median": statistics.median(rates), "max": max(rates),
           "precision_used": results[0]["precision"], "runs": results}
    if job.bench == "flops":
        n = results[0]["parameters"]
        peaks = [(r["peak_before"]["bf16"] + r["peak_after"]["bf16"]) / 2 for r in results]
        fractions = [6 * n * rate / (peak * 1e9) for rate, peak in zip(rates, peaks, strict=True)]
        row.update(parameters=n, train_gflops=[6 * n * r / 1e9 for r in rates], peak_bf16_gflops=peaks,
                   peak_fp32_gflops=[(r["peak_before"]["fp32"] + r["peak_after"]["fp32"]) / 2 for r in results],
                   fraction_of_peak=fractions, fraction_median=statistics.median(fractions))
    return row


def reference_label(group: str, bench: str) -> str:
    """What a row's ratio is taken against: TRL bf16 for the comparisons, unift's default for
    the ablations (a ratio > 1 means faster than the reference)."""
    return "unift bf16" if group in ("ablate", "peak") else "TRL bf16 autocast"


def table(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<12} {'who':<26} {'median':>9} {'best':>9} {'ratio':>6}  per repeat",
             "-" * 90]
    for row in rows:
        ref = next((r for r in rows if r["group"] == row["group"] and r["bench"] == row["bench"]
                    and r["label"] == reference_label(row["group"], row["bench"])), None)
        ratio = f"{row['median'] / ref['median']:.2f}" if ref and ref is not row else "1.00" if ref else "-"
        name = f"{row['group']}/{row['bench']}" if row["group"] != row["bench"] else row["group"]
        per = ", ".join(f"{v:.1f}" if v >= 10 else f"{v:.3f}" for v in row["per_repeat"])
        fmt = (lambda v: f"{v:9.1f}") if row["median"] >= 10 else (lambda v: f"{v:9.3f}")
        lines.append(f"{name:<12} {row['label']:<26} {fmt(row['median'])} {fmt(row['max'])} {ratio:>6}  "
                     f"[{per}] {row['unit']}")
        if row["bench"] == "flops":
            lines.append(f"{'':<12} {'':<26} train {statistics.median(row['train_gflops']):.1f} GFLOP/s = "
                         f"{100 * row['fraction_median']:.0f}% of bf16 peak "
                         f"{statistics.median(row['peak_bf16_gflops']):.0f} GFLOP/s "
                         f"(fp32 peak {statistics.median(row['peak_fp32_gflops']):.0f}); per repeat "
                         f"{', '.join(f'{100 * f:.0f}%' for f in row['fraction_of_peak'])}")
    return "\n".join(lines)


def machine() -> dict:
    model = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl_version, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="sft,dpo,peak", help="comma list of sft,dpo,grpo,peak,ablate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps per repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 1 timed step, TRL bf16 only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps = 1, 1
    todo = jobs([g.strip() for g in args.only.split(",") if g.strip()], args.quick)
    started = time.time()
    results: dict[Job, list[dict]] = {job: [] for job in todo}
    for repeat in range(args.repeats):
        order = todo if repeat % 2 == 0 else todo[::-1]  # alternate who goes first
        for job in order:
            out = run_worker(job, args.warmup, args.steps)
            results[job].append(out)
            print(f"  repeat {repeat + 1}/{args.repeats} {job.group:<6} {job.bench:<5} {job.label:<26} "
                  f"{throughput(out):9.2f} {'pairs/s' if job.bench == 'dpo' else 'tokens/s'}"
                  f"  (step {statistics.median(out['step_s']):.1f} s, load {out['loadavg_end']:.1f})",
                  flush=True)
    rows = [summarise(job, res) for job, res in results.items()]
    report = {"date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
              "command": " ".join(["bench/run.py", *sys.argv[1:]]), "machine": machine(),
              "settings": {"repeats": args.repeats, "timed_steps": args.steps, "warmup_steps": args.warmup,
                           "model": "smollm2-135m-instruct", "max_length": 256, "sft_batch": 8, "dpo_batch": 4},
              "elapsed_s": time.time() - started, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print()
    print(table(rows))
    print(f"\n{args.repeats} repeat(s) x {args.steps} timed step(s) after {args.warmup} warm-up step(s); "
          f"median and best of the per-repeat throughputs; ratio = median / the group's reference "
          f"(TRL bf16 autocast for sft/dpo, unift bf16 for ablate/peak). "
          f"{time.time() - started:.0f} s in all; JSON: {args.out}")


if __name__ == "__main__":
    main()
