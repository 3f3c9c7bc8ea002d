"""`unift data`: write a task's problems as SFT or RL records (JSONL).

    unift data countdown --variant ood_numbers --split test --n 1024 --kind rl --out test.jsonl
    unift data general_points --variant rule=face_is_11_12_13 --variant require_face=true ...
    unift data --list

SFT records: {"prompt": messages, "completion": reference completion}.
RL records:  {"prompt": messages, "task": name, "variant": {...}, "problem": {...}}; the trainer
rebuilds the verifier with `unift.tasks.get(task, **variant)`.
With --format text the prompt is the raw-text form for base models instead of messages.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import TASKS, get, names


def parse_variant(items: list[str]) -> dict[str, Any]:
    """["ood_numbers", "max_target=50"] -> {"variant": "ood_numbers", "max_target": 50}.
    Values are read as JSON when they parse (numbers, true/false, null, lists), else as text."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            out["variant"] = item
            continue
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unift data",
        description="Export a task's problems as SFT records (prompt + reference completion) or "
        "prompt-only RL records (with the problem, for the verifier).",
        epilog="examples:\n"
        "  unift data --list\n"
        "  unift data countdown --n 1000 --kind sft --out countdown_sft.jsonl\n"
        "  unift data knights_knaves --variant ood_people --split test --kind rl --out kk_ood.jsonl\n"
        "  unift data reasoning_gym --variant dataset=leg_counting --n 200 --kind rl --out legs.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", nargs="?", help=f"task name, one of: {', '.join(names())}; or a Task subclass as "
                   "pkg.module:MyTask, imported from the working directory")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME|KEY=VALUE",
        help="a named variant (e.g. ood_numbers) or a parameter override (e.g. max_target=50); repeatable",
    )
    p.add_argument(
        "--split", choices=["train", "val", "test"], default="train", help="which split (default: train)"
    )
    p.add_argument("--n", type=int, default=1000, help="number of records (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument(
        "--kind",
        choices=["sft", "rl"],
        default="rl",
        help="sft: prompt + reference completion; rl: prompt + problem (default: rl)",
    )
    p.add_argument(
        "--format",
        choices=["chat", "text"],
        default="chat",
        help="prompt as chat messages or as raw text for base models (default: chat)",
    )
    p.add_argument("--out", default="-", help="output JSONL file (default: stdout)")
    p.add_argument("--list", action="store_true", help="list tasks and their variants, then exit")
    return p


def list_tasks() -> str:
    lines = []
    for name in names():
        lines.append(name)
        for vname, v in TASKS[name].variants().items():
            lines.append(f"  {vname:<14} {v['distribution'].upper():<4} {v['description']}")
    return "\n".join(lines)


def records(
    task_name: str, variant: dict, split: str, n: int, seed: int, kind: str, fmt: str
) -> list[dict]:
    task = get(task_name, **variant)
    out = []
    for problem in task.problems(n, seed=seed, split=split):
        prompt = task.prompt(problem) if fmt == "chat" else task.prompt_text(problem)
        if kind == "sft":
            out.append({"prompt": prompt, "completion": task.reference_completion(problem)})
        else:
            out.append(
                {"prompt": prompt, "task": task_name, "variant": task.variant, "problem": problem}
            )
    return out


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(list_tasks())
        return 0
    if args.task is None:
        parser.error("give a TASK (or --list)")
    if args.n < 1:
        print(f"unift data: error: --n must be at least 1, not {args.n}", file=sys.stderr)
        return 2
    try:
        rows = records(
            args.task,
            parse_variant(args.variant),
            args.split,
            args.n,
            args.seed,
            args.kind,
            args.format,
        )
    except (KeyError, ValueError, RuntimeError) as e:
        print(f"unift data: {e}", file=sys.stderr)
        return 2
    out = sys.stdout if args.out == "-" else open(args.out, "w")
    try:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(
        f"wrote {len(rows)} {args.kind} records of {args.task} ({args.split}) to {args.out}",
        file=sys.stderr,
    )
    return 0
