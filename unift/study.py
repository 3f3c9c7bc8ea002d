"""`unift study generalization`: "SFT memorizes, RL generalizes" (Chu et al. 2025; docs/methods.md
section 5) on GeneralPoints and Navigation, with `unift compare`'s machinery and report.

    unift study generalization                                  # both tasks, viter 1 and 3
    unift study generalization --task general_points --budget 5e14 --viter 1,3,5
    unift study generalization --task navigation --warmup 1e14  # SFT warm-up first (the paper's init)

Per task: train on the ID variant (GeneralPoints rule face_is_10; Navigation absolute action
space), test on ID and OOD (rule face_is_11_12_13; relative action space). SFT and RL start from
the same initial checkpoint and get the same training FLOPs. RL is GRPO (the rft preset, arms
`grpo`, `grpo-viter3`, ...) and PPO with a learned critic (the study's optimiser: the ppo preset,
arms `ppo`, `ppo-viter3`, ...), each once per verification-iteration setting
(`rollout.viter`). Every model is evaluated with the largest
viter, which reports pass@1 (first attempt) and success@2..V (retries with the verifier's
feedback), so SFT is measured with retries too.

The study initialised both from an SFT checkpoint because the base model could not follow the
answer format: `--warmup FLOPS` trains that SFT warm-up once on the ID variant and starts every
arm from it (it is then the "init" row of the report); `--init MODEL` starts from any model or
run directory instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from unift.compare import (
    DEFAULTS,
    Arm,
    Settings,
    Stage,
    build_parser,
    parse_overrides,
    parse_seeds,
    run_comparison,
    say,
    settings_for,
    token_lengths,
    train_stage,
)

STUDY_TASKS = ["general_points", "navigation"]
"""Tasks of the generalization study; their ID/OOD variants are `compare.TASK_DEFAULTS`."""

BUDGET = 1e15
"""Default training FLOPs per arm."""


STUDY_ARMS = {"sft": "sft", "grpo": "rft", "ppo": "ppo"}
"""Arms of the study (`--arms`) -> preset: SFT on reference solutions; GRPO (group advantages,
no critic); PPO with the study's learned critic and GAE (docs/methods.md)."""

DESCRIBE = {"grpo": "GRPO (the rft preset)", "ppo": "PPO with a learned critic (the ppo preset)"}


def generalization_arms(viters: list[int], names: list[str] = ("sft", "grpo")) -> list[Arm]:
    """SFT once (viter does not change SFT training), then each RL arm once per viter:
    grpo, grpo-viter3, ppo, ppo-viter3, ..."""
    arms = []
    for name in names:
        if name == "sft":
            arms.append(Arm("sft", [Stage("sft")]))
            continue
        for v in viters:
            arms.append(Arm(name + ("" if v == 1 else f"-viter{v}"),
                            [Stage(STUDY_ARMS[name], source={"rollout": {"viter": v}})]))
    return arms


def warmup(s: Settings, out: Path, flops: float) -> str:
    """Train the shared SFT warm-up (no evaluation; FLOP-matched, seed `s.seeds[0]`; the run
    values of every arm) and return its run directory."""
    from unift import models, tasks
    from unift.train.flops import ModelFlops

    model, tokenizer = models.load(s.model)
    model_flops = ModelFlops.from_model(model)
    del model
    lengths = token_lengths(tokenizer, tasks.get(s.task, **s.variant), seed=s.seeds[0])
    stage = Stage("sft")
    run_dir = out / "init-sft"
    warm = dataclasses.replace(s, budget=flops, match="flops", steps=0, run={**s.run, "eval.task": None})
    train_stage(warm, stage, s.model, run_dir, out / "configs" / "init-sft.yaml", model_flops, lengths,
                head="[bold]warm-up[/] (sft)", seed=s.seeds[0])
    return str(run_dir)


def study_settings(args, task: str, viters: list[int], values: dict) -> Settings:
    """The study's Settings of one task: `BUDGET` FLOPs per arm, every model evaluated with the
    largest viter, then the flags and the every-arm --set `values` (`Overrides.values`)."""
    values = {"budget": args.budget or BUDGET, "eval.viter": max(viters), **values}
    for key in ("model", "evals", "match", "steps"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.seeds:
        values["seeds"] = parse_seeds(args.seeds)
    if args.init:
        values["model"] = args.init
    return settings_for(task, **values)


def build_study_parser() -> argparse.ArgumentParser:
    defaults = dataclasses.replace(DEFAULTS, budget=BUDGET, run={**DEFAULTS.run, "eval.viter": "the largest --viter"})
    p = build_parser("unift study generalization", defaults, out="runs/study-generalization/TASK")
    p.description = ("SFT vs RL at equal compute, trained on the ID variant and tested on ID and OOD "
                     "(docs/methods.md section 5), with and without verification iterations.")
    p.epilog = ("examples:\n  unift study generalization\n"
                "  unift study generalization --task general_points --budget 5e14 --viter 1,3,5\n"
                "  unift study generalization --task navigation --warmup 1e14")
    for action in p._actions:  # --task takes "both" here; --algos is set by the study
        if action.dest == "task":
            action.help = "general_points | navigation | both (default both)"
        if action.dest == "algos":
            action.help = argparse.SUPPRESS
    p.add_argument("--viter", default="1,3", help="comma-separated verification iterations of RL (default 1,3)")
    p.add_argument("--arms", default="sft,grpo,ppo",
                   help="comma-separated arms: sft, grpo (the rft preset), ppo (PPO with a learned critic); "
                        "each RL arm once per --viter (default sft,grpo,ppo)")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="FLOPs of a shared SFT warm-up before both (default 0: none)")
    p.add_argument("--init", help="initial model of every arm (default: --model)")
    return p


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "generalization":  # the one study so far: its options are the command's
        asked = bool(argv) and argv[0] in ("-h", "--help")
        parser = build_study_parser()
        if asked:
            parser.print_help()
        else:
            parser.print_usage(sys.stderr)
            print("unift study: error: name the study: `unift study generalization` (`unift study --help` "
                  "lists its options)", file=sys.stderr)
        return 0 if asked else 2
    args = build_study_parser().parse_args(argv[1:])
    names = STUDY_TASKS if args.task in (None, "both") else [args.task]
    try:
        if args.variant or args.ood:
            raise ValueError("the study fixes the ID/OOD variants; change them with --set variant=... / ood=...")
        viters = sorted({int(v) for v in args.viter.split(",") if v.strip()})
        if not viters or viters[0] < 1:
            raise ValueError("--viter: positive integers, e.g. 1,3")
        chosen = [a.strip() for a in args.arms.split(",") if a.strip()]
        if not chosen or any(a not in STUDY_ARMS for a in chosen):
            raise ValueError(f"--arms: a comma-separated list of {' | '.join(STUDY_ARMS)}, got {args.arms!r}")
        overrides = parse_overrides(args.sets)
        reports = []
        for task in names:
            s = study_settings(args, task, viters, overrides.values)
            out = Path(args.out or "runs/study-generalization") / task
            notes, extra = [], {}
            if args.warmup:
                extra["base_label"] = "init (SFT warm-up)"
                s.model = warmup(s, out, args.warmup)
                notes.append(f"Every arm starts from a shared SFT warm-up of {args.warmup:.3g} FLOPs on the ID "
                             "variant (the 'init' row and dotted lines are that checkpoint).")
            arms = generalization_arms(viters, chosen)
            v = s.variant.get("variant", s.variant)
            title = (f"SFT memorizes, RL generalizes? {task}: trained on '{v}', tested on ID and OOD "
                     f"({', '.join(s.ood)}) at "
                     + (f"{s.steps} steps" if s.match == "steps" else f"{s.budget:.3g} FLOPs"))
            optimisers = ", ".join(DESCRIBE[a] for a in chosen if a != "sft") or "none here"
            notes.append(f"SFT trains on reference solutions; RL ({optimisers}) on its own rollouts, "
                         f"with {', '.join(map(str, viters))} graded attempt(s) per prompt. Every model is "
                         f"evaluated with up to {max(viters)} attempts (success@{max(viters)}).")
            reports.append(run_comparison(s, arms, out, overrides, title=title,
                                          command="unift study " + " ".join(argv),
                                          report={"figures": ["accuracy", "reward"], "notes": notes,
                                                  "reference": None, **extra}))
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"unift study: error: {err}", file=sys.stderr)
        return 2
    from unift.report import summary_markdown

    for report in reports:
        print(f"\n{report.parent.name}:\n{summary_markdown(report.parent)}")
    for report in reports:
        say(f"report: [bold]{report}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
