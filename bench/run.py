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
    precision  unift's default (precision auto) against explicit bf16 and fp32, sft and dpo
    grpo    seconds per GRPO step, 4 prompts x 4 completions x 64 new tokens (bench/_grpo_worker.py)

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
UNIFT = "auto"  # unift's default precision (`RunConfig.precision`): bf16 autocast or fp32, as measured


@dataclass(frozen=True)
class Job:
    """One side of a comparison: a worker invocation, repeated."""

    group: str  # sft | dpo | peak | ablate
    bench: str  # the worker's benchmark: sft | dpo | flops
    framework: str  # unift | trl
    precision: str  # bf16-master | bf16 | fp32 (TRL: bf16 = autocast, fp32)
    variant: str = "default"  # unift only (bench/variants.py)

    @property
    def label(self) -> str:
        if self.framework == "trl":
            return f"TRL {'bf16 autocast' if self.precision == 'bf16' else 'fp32'}"
        name = f"unift {self.precision}"
        return name if self.variant == "default" else f"{name} {self.variant}"


def bf16_is_faster() -> bool:
    """Whether `precision: auto` trains SmolLM2 in bf16 on this machine (`unift.precision`)."""
    from unift import precision
    from unift.info import EMBEDDED_SHAPES

    return precision.choose("auto", *EMBEDDED_SHAPES).train == "bf16"


def jobs(groups: list[str], quick: bool, trl: list[str]) -> list[Job]:
    out: list[Job] = []
    for group in groups:
        if group in ("sft", "dpo"):
            out += [Job(group, group, "unift", UNIFT)]
            out += [Job(group, group, "trl", p) for p in (trl[:1] if quick else trl)]
        elif group == "peak":
            out += [Job(group, "flops", "unift", UNIFT)]
            if not quick:  # the diagnostics' reference pass never / every step, and bf16-master
                out += [Job(group, "flops", "unift", UNIFT, "noref"),
                        Job(group, "flops", "unift", UNIFT, "diag-every-step")]
                if bf16_is_faster():  # where bf16 is emulated, bf16 weights only measure the emulation
                    out.append(Job(group, "flops", "unift", "bf16-master", "noref"))
        elif group == "ablate":
            for bench in ("sft", "dpo"):
                out += [Job(group, bench, "unift", UNIFT), Job(group, bench, "unift", UNIFT, "malloc"),
                        Job(group, bench, "unift", "bf16-master"), Job(group, bench, "unift", UNIFT, "unpacked"),
                        Job(group, bench, "unift", "fp32")]
            out += [Job(group, "sft", "unift", UNIFT, "noref")]
        elif group == "precision":  # auto against both explicit precisions, same process set-up
            for bench in ("sft", "dpo"):
                out += [Job(group, bench, "unift", UNIFT), Job(group, bench, "unift", "bf16"),
                        Job(group, bench, "unift", "fp32")]
        elif group == "grpo":
            pass  # run by `bench_grpo` from main: its own worker (bench/_grpo_worker.py) and table
        else:
            raise SystemExit(f"unknown benchmark {group!r}: sft, dpo, grpo, peak, ablate, precision")
    return out


def bench_grpo(repeats: int, steps: int, warmup: int, trl_precisions: list[str]) -> dict:
    """Seconds per GRPO step, unift versus TRL's GRPOTrainer, on identical work (bench/_grpo_worker.py):
    SmolLM2-135M-Instruct, 4 Countdown prompts x 4 completions x exactly 64 new tokens, the task's
    reward_fn, lr 1e-6, KL coefficient 0.001 (TRL beta, with its reference model). unift runs its
    default (precision auto: bf16 or fp32 training and rollouts, whichever measured faster on this
    CPU); TRL runs the precisions asked for (default fp32 and bf16), and the ratio is taken
    against TRL's fastest.
    Each measurement is a fresh process, one after another, order alternating between repeats."""
    todo = [("unift", UNIFT)] + [("trl", p) for p in trl_precisions]
    results: dict[tuple[str, str], list[dict]] = {job: [] for job in todo}
    failures: dict[str, str] = {}
    for repeat in range(repeats):
        for framework, precision in (todo if repeat % 2 == 0 else todo[::-1]):
            cmd = [sys.executable, str(HERE / "_grpo_worker.py"), framework, "--precision", precision,
                   "--warmup", str(warmup), "--steps", str(steps)]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:  # keep the other measurements
                failures[f"{framework} {precision}"] = proc.stderr[-3000:]
                sys.stderr.write(proc.stderr[-3000:])
                print(f"  repeat {repeat + 1}/{repeats} grpo {framework} {precision}: FAILED", flush=True)
                continue
            out = json.loads(lines[-1][len("RESULT "):])
            out["wall_s"] = time.perf_counter() - start
            results[(framework, precision)].append(out)
            print(f"  repeat {repeat + 1}/{repeats} grpo {framework} {precision:<5} step "
                  f"{statistics.median(out['step_s']):7.1f} s  rollout {statistics.median(out['rollout_s']):6.1f} s "
                  f"{out['rollout_tokens_per_s']:6.1f} tok/s  "
                  f"completion {statistics.mean(out['completion_len_mean']):.1f} "
                  f"tokens  (load {out['loadavg_start']:.1f} -> {out['loadavg_end']:.1f})", flush=True)
    rows = []
    for (framework, precision), res in results.items():
        if not res:
            continue
        per = [statistics.median(r["step_s"]) for r in res]
        rows.append({"framework": framework, "precision": precision, "per_repeat_step_s": per,
                     "step_s_median": statistics.median(per),
                     "rollout_s_median": statistics.median(statistics.median(r["rollout_s"]) for r in res),
                     "rollout_tokens_per_s_median": statistics.median(r["rollout_tokens_per_s"] for r in res),
                     "gen_tokens_per_step": statistics.median(t for r in res for t in r["gen_tokens"]),
                     "completion_len_mean": statistics.mean(c for r in res for c in r["completion_len_mean"]),
                     "precision_used": res[0]["precision"], "runs": res})
    unift = next((r for r in rows if r["framework"] == "unift"), None)
    trl_rows = [r for r in rows if r["framework"] == "trl"]
    best_trl = min(trl_rows, key=lambda r: r["step_s_median"]) if trl_rows else None
    lines = [f"{'grpo':<6} {'who':<11} {'s/step':>8} {'rollout s':>10} {'roll tok/s':>11} {'gen tok':>8} "
             f"{'compl len':>9} {'TRL/unift':>9}  per repeat (s/step)", "-" * 100]
    for row in rows:
        ratio = f"{row['step_s_median'] / unift['step_s_median']:.2f}" if unift and row is not unift else "-"
        row["ratio_vs_unift"] = None if ratio == "-" else float(ratio)
        lines.append(f"{'':<6} {row['framework'] + ' ' + row['precision']:<11} {row['step_s_median']:8.1f} "
                     f"{row['rollout_s_median']:10.1f} {row['rollout_tokens_per_s_median']:11.1f} "
                     f"{row['gen_tokens_per_step']:8.0f} {row['completion_len_mean']:9.1f} {ratio:>9}  "
                     f"[{', '.join(f'{v:.1f}' for v in row['per_repeat_step_s'])}]")
    print()
    print("\n".join(lines))
    print(f"\n{repeats} repeat(s) x {steps} timed step(s) after {warmup} warm-up step(s); medians of the "
          f"per-repeat medians; TRL/unift = TRL seconds per step / unift seconds per step (> 1: unift faster)."
          + (f" TRL's fastest here: {best_trl['precision']} ({best_trl['ratio_vs_unift']:.2f}x); unift resolved "
             f"auto to {unift['runs'][0].get('resolved')}." if best_trl and unift else "")
          + (f" FAILED: {', '.join(failures)}" if failures else ""))
    return {"rows": rows, "failures": failures,
            "settings": {"repeats": repeats, "timed_steps": steps, "warmup_steps": warmup,
                         "model": "smollm2-135m-instruct", "prompts": 4, "generations": 4, "new_tokens": 64,
                         "forced_length": True, "lr": 1e-6, "kl": 0.001, "task": "countdown variant=id"}}


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
    steps = [u / s for r in results for u, s in zip(r["units"], r["step_s"], strict=True)]
    row = {**asdict(job), "label": job.label, "unit": "pairs/s" if job.bench == "dpo" else "tokens/s",
           "per_repeat": rates, "median": statistics.median(rates), "max": max(rates),
           "best_step": max(steps),
           "precision_used": results[0]["precision"], "resolved": results[0].get("resolved"), "runs": results}
    if job.bench == "flops":
        n = results[0]["parameters"]
        kind = "fp32" if results[0].get("resolved", job.precision) == "fp32" else "bf16"  # the peak it runs at
        peaks = [(r["peak_before"][kind] + r["peak_after"][kind]) / 2 for r in results]
        fractions = [6 * n * rate / (peak * 1e9) for rate, peak in zip(rates, peaks, strict=True)]
        row.update(parameters=n, train_gflops=[6 * n * r / 1e9 for r in rates], peak_kind=kind,
                   peak_bf16_gflops=[(r["peak_before"]["bf16"] + r["peak_after"]["bf16"]) / 2 for r in results],
                   peak_fp32_gflops=[(r["peak_before"]["fp32"] + r["peak_after"]["fp32"]) / 2 for r in results],
                   fraction_of_peak=fractions, fraction_median=statistics.median(fractions))
    return row


def reference(row: dict, rows: list[dict]) -> dict | None:
    """What a row's ratio is taken against (a ratio > 1 means faster than it): TRL in its fastest
    precision on this CPU for the comparisons, unift's default for the ablations and the peak."""
    peers = [r for r in rows if r["group"] == row["group"] and r["bench"] == row["bench"]]
    if row["group"] in ("ablate", "peak", "precision"):
        return next((r for r in peers if r["label"] == f"unift {UNIFT}"), None)
    return max((r for r in peers if r["framework"] == "trl"), key=lambda r: r["median"], default=None)


def table(rows: list[dict]) -> str:
    lines = [f"{'benchmark':<12} {'who':<26} {'median':>9} {'best':>9} {'ratio':>6} {'best/best':>9}  per repeat",
             "-" * 90]
    for row in rows:
        ref = reference(row, rows)
        ratio = f"{row['median'] / ref['median']:.2f}" if ref else "-"
        best_ratio = f"{row['best_step'] / ref['best_step']:.2f}" if ref else "-"
        name = f"{row['group']}/{row['bench']}" if row["group"] != row["bench"] else row["group"]
        per = ", ".join(f"{v:.1f}" if v >= 10 else f"{v:.3f}" for v in row["per_repeat"])
        fmt = (lambda v: f"{v:9.1f}") if row["median"] >= 10 else (lambda v: f"{v:9.3f}")
        who = row["label"] + (f" ({row['resolved']})" if row.get("resolved") and row["precision"] == "auto" else "")
        lines.append(f"{name:<12} {who:<26} {fmt(row['median'])} {fmt(row['best_step'])} {ratio:>6} "
                     f"{best_ratio:>9}  "
                     f"[{per}] {row['unit']}")
        if row["bench"] == "flops":
            kind = row.get("peak_kind", "bf16")
            other = "fp32" if kind == "bf16" else "bf16"
            lines.append(f"{'':<12} {'':<26} train {statistics.median(row['train_gflops']):.1f} GFLOP/s = "
                         f"{100 * row['fraction_median']:.0f}% of the {kind} peak "
                         f"{statistics.median(row[f'peak_{kind}_gflops']):.0f} GFLOP/s "
                         f"({other} peak {statistics.median(row[f'peak_{other}_gflops']):.0f}); per repeat "
                         f"{', '.join(f'{100 * f:.0f}%' for f in row['fraction_of_peak'])}")
    return "\n".join(lines)


def machine() -> dict:
    import transformers

    from unift import precision

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    return {"cpu": precision.cpu_model(), "flags": precision.cpu_flags(), "capability": precision.capability(),
            "imitated_isa": precision.isa_limits() or None, "cores": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl_version, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="sft,dpo,peak", help="comma list of sft,dpo,grpo,peak,ablate,precision")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps per repeat")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 1 timed step, the first --trl only")
    parser.add_argument("--trl", default="bf16,fp32",
                        help="sft/dpo: TRL precisions to run (bf16,fp32); the ratio is taken against the fastest")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--grpo-trl", default="fp32,bf16", help="grpo: TRL precisions to run (fp32,bf16)")
    parser.add_argument("--report", type=Path, help="only re-print the table of a results JSON")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        rows = [summarise(Job(r["group"], r["bench"], r["framework"], r["precision"], r["variant"]), r["runs"])
                for r in saved["rows"]]
        print(table(rows))
        return
    if args.quick:
        args.repeats, args.steps = 1, 1
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    todo = jobs(groups, args.quick, [p.strip() for p in args.trl.split(",") if p.strip()])
    started = time.time()
    print("machine:", json.dumps(machine()), flush=True)
    if "grpo" in groups:
        grpo = bench_grpo(args.repeats, args.steps, args.warmup,
                          [p.strip() for p in args.grpo_trl.split(",") if p.strip()])
        grpo.update(date=time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
                    command=" ".join(["bench/run.py", *sys.argv[1:]]), machine=machine(),
                    elapsed_s=time.time() - started)
        grpo_out = HERE / "results" / "grpo-latest.json"
        grpo_out.parent.mkdir(parents=True, exist_ok=True)
        grpo_out.write_text(json.dumps(grpo, indent=2))
        print(f"{time.time() - started:.0f} s; JSON: {grpo_out}")
        if not todo:
            return
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
          f"median of the per-repeat throughputs, best single step; ratio = median / the group's reference, "
          f"best/best = best step / the reference's best step "
          f"(TRL's fastest precision for sft/dpo, unift {UNIFT} for ablate/peak). "
          f"{time.time() - started:.0f} s in all; JSON: {args.out}")


if __name__ == "__main__":
    main()
