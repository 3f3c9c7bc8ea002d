"""The `unift compare` and `unift quickstart` commands: flags -> `Settings` and overrides ->
`run_comparison` -> the report's table on the console."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from unift.catalog import first_sentence
from unift.compare.runs import run_comparison, say
from unift.compare.settings import (
    ALIASES,
    DEFAULTS,
    PROTOCOLS,
    RUN_DEFAULTS,
    TASK_DEFAULTS,
    Overrides,
    Settings,
    arms_for,
    field_doc,
    parse_overrides,
    settings_for,
)

EPILOG = """\
protocols (--match):
  flops  every arm gets the same training FLOPs (--budget), split by share in a sequence (sft-rft:
         half each); steps are estimated from the budget so the LR and hint schedules span the
         run, and each run stops at the step boundary nearest its budget, training on at the
         schedules' final values if the estimate was short (the SFT-vs-RL study, Chu et al. 2025)
  steps  every arm gets the same optimiser steps (--steps N) of --set batch_size prompts and no
         FLOP limit; a sequence splits the steps by share (the UFT paper: 500 steps x 256 prompts)
  The report plots every arm against both FLOPs and steps and prints each arm's actual FLOPs and
  steps.

per-arm settings: --set ARM.KEY=VALUE changes one arm only, KEY being a comparison setting, a short
  name above or a dotted RunConfig key: --set uft.lr=5e-5 --set rft.schedule=constant
  --set uft.sources.0.params.c_nll=1.0 (schedule: cosine | constant | linear | hold-cosine, the last
  constant until T_hint then cosine)

seeds: --seeds 0,1,2 trains every arm once per seed (runs/ARM-s0, runs/ARM-s1, ...; one seed:
  runs/ARM); the report gives the mean, the spread and the standard error over seeds.

examples:
  unift compare --task countdown --algos sft,rft,sft-rft,r3,uft --budget 2e15
  unift compare --match steps --steps 100 --seeds 0,1,2 --algos sft,rft,uft
  unift compare --algos rft,uft --budget 5e14 --set lr=1e-5 --set uft.lr=5e-5 --set optim.warmup_steps=2
  unift compare --report-only runs/compare-countdown"""


def _shown(value: Any) -> str:
    """A default as --set takes it."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, list) else str(value)


def _row(head: str, doc: str) -> str:
    """`head`, then `doc` wrapped in a column from 32 to 100 (below a head too long for its own column)."""
    text = textwrap.fill(doc, 100, initial_indent=" " * 32, subsequent_indent=" " * 32)
    return f"  {head}\n{text}" if len(head) >= 30 else f"  {head:<30}{text[32:]}"


def run_settings_help(defaults: Settings) -> str:
    """The run values --set takes by short name (`ALIASES`), and the RunConfig keys the comparison
    sets (`RUN_DEFAULTS`), with this command's defaults, the task's own, and the first sentence of
    the RunConfig field's docstring."""
    short = {keys[0]: name for name, keys in ALIASES.items()}
    rows = []
    for key in dict.fromkeys([*short, *RUN_DEFAULTS]):
        name = short.get(key, key)
        default = "the task's own" if name == "stop_strings" else _shown(defaults.run.get(key, RUN_DEFAULTS.get(key)))
        tasks = ", ".join(f"{t} {_shown(v[key])}" for t, v in TASK_DEFAULTS.items() if key in v)
        keys = ALIASES.get(name, ())
        target = f"{keys[0]}{''.join(f', and {k} unless set' for k in keys[1:])}: " if keys else ""
        rows.append(_row(f"{name}={default}" + (f" ({tasks})" if tasks else ""),
                         target + first_sentence(field_doc(key), 1000)))
    rows.append(_row("gradient_checkpointing", "true | false; default: on for the arms that sample rollouts, off "
                     "for the sft preset. " + first_sentence(field_doc("gradient_checkpointing"), 1000)))
    return ("run settings (--set NAME=VALUE every arm, --set ARM.NAME=VALUE one arm): short names of RunConfig\n"
            "keys, with this command's defaults (per task in brackets) and the RunConfig field's doc; any other\n"
            "RunConfig key by its dotted name as `unift train` takes it (optim.warmup_steps=2,\n"
            "sources.0.rollout.top_p=0.95, diagnostics_every=5):\n" + "\n".join(rows))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help lists the run settings (`run_settings_help`) before its
    epilog. They are rendered only when the help is shown: the RunConfig docstrings they quote
    import the trainer's config (torch, transformers), seconds a run pays anyway but --help need not."""

    def __init__(self, *args, run_defaults: Settings, **kwargs):
        super().__init__(*args, **kwargs)
        self.run_defaults = run_defaults

    def format_help(self) -> str:
        epilog = self.epilog
        self.epilog = run_settings_help(self.run_defaults) + ("\n\n" + epilog if epilog else "")
        try:
            return super().format_help()
        finally:
            self.epilog = epilog


def build_parser(prog: str = "unift compare", defaults: Settings = DEFAULTS,
                 out: str = "runs/compare-TASK") -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        run_defaults=defaults,
        description="Train several algorithms at the same optimiser steps or the same compute budget, evaluate "
        "them on ID and OOD test sets along the way, and write an HTML report (defaults: `DEFAULTS`, "
        "`RUN_DEFAULTS` and `TASK_DEFAULTS` in unift/compare/settings.py).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", help=f"task (default {defaults.task})")
    p.add_argument("--algos", help=f"comma-separated algorithms (default {','.join(defaults.algos)})")
    p.add_argument("--match", choices=PROTOCOLS,
                   help=f"what every arm gets the same of: steps | flops (default {defaults.match}; see below)")
    p.add_argument("--steps", type=int, help="optimiser steps per arm with --match steps "
                   f"(default {defaults.steps or 'none: required'}); with --match flops, fixes them instead "
                   "of estimating")
    p.add_argument("--budget", type=float,
                   help=f"training FLOPs per arm with --match flops (default {defaults.budget:.3g})")
    p.add_argument("--seeds", help="comma-separated training seeds, every arm once per seed "
                   f"(default {','.join(map(str, defaults.seeds))})")
    p.add_argument("--model", help=f"initial model (default {defaults.model})")
    p.add_argument("--variant", action="append", metavar="NAME|KEY=VALUE",
                   help="training / ID variant (named variant or parameter; repeatable)")
    p.add_argument("--ood", help="comma-separated named OOD variants (default: the task's defaults)")
    p.add_argument("--evals", type=int, help=f"evaluations per run (default {defaults.evals})")
    p.add_argument("--out", help=f"comparison directory (default {out})")
    p.add_argument("--set", action="append", default=[], metavar="[ARM.]KEY=VALUE", dest="sets",
                   help="a comparison setting (evals=2, hint_nll=1.0), a short name of a RunConfig key (lr=1e-5, "
                   "eval_n=256, stop_strings=[], ...: listed below) or a dotted RunConfig key "
                   "(optim.warmup_steps=2, sources.0.rollout.top_p=0.95); ARM. in front: that arm only; "
                   "repeatable")
    p.add_argument("--report-only", metavar="DIR", help="only (re)build the report of a comparison directory")
    return p


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: comma-separated integers, e.g. 0,1,2") from None


def settings_from_args(args, base: dict[str, Any] | None = None) -> tuple[Settings, Overrides]:
    """Flags and --set items over `base` -> (Settings of every arm, overrides incl. per-arm ones)."""
    from unift.tasks.export import parse_variant

    values: dict[str, Any] = dict(base or {})
    if args.task:
        values["task"] = args.task
    if args.algos:
        values["algos"] = [a.strip() for a in args.algos.split(",") if a.strip()]
    for key in ("budget", "model", "evals", "match", "steps"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    if getattr(args, "seeds", None):
        values["seeds"] = parse_seeds(args.seeds)
    if args.variant:
        values["variant"] = parse_variant(args.variant)
    if args.ood:
        values["ood"] = {name: {"variant": name} for name in args.ood.split(",") if name}
    overrides = parse_overrides(args.sets)
    values.update(overrides.values)
    return settings_for(values.pop("task", None), **values), overrides


def finish(report: Path) -> None:
    """Print the report's table and where the report is."""
    from unift.report import summary_markdown

    print()
    print(summary_markdown(report.parent))
    say(f"\nreport: [bold]{report}[/]")


def report_only(compare_dir: Path, prog: str = "unift compare") -> int:
    from unift.report import build_report

    if not (compare_dir / "compare.json").exists():
        print(f"{prog}: error: {compare_dir} has no compare.json", file=sys.stderr)
        return 2
    finish(build_report(compare_dir))
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.report_only:
        return report_only(Path(args.report_only))
    try:
        s, overrides = settings_from_args(args)
        arms = arms_for(s.algos)
        out = Path(args.out or f"runs/compare-{s.task}")
        report = run_comparison(s, arms, out, overrides, command="unift compare " + " ".join(argv))
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"unift compare: error: {err}", file=sys.stderr)
        return 2
    finish(report)
    return 0


# -- quickstart ---------------------------------------------------------------------------------

QUICKSTART: dict[str, Any] = {
    "algos": ["sft", "rft", "uft"],
    "match": "steps",
    "steps": 6,
    "hint_nll": 1.0,
    "evals": 1,
    "eval.n": 64,
}
"""The quickstart's changes to `DEFAULTS` and `RUN_DEFAULTS`: SFT, RFT and UFT on easy Countdown
with the embedded model at equal optimiser steps (the UFT paper's protocol), 6 steps of 8
prompts each, sized to finish in about 10 minutes on a 2-core CPU with native bf16 (9 min 44 s measured; 8 steps took
12 min 57 s: an RL step costs ~35 s with its rollouts; docs/LOG.md, 2026-12-02). UFT's hint NLL weight is 1.0, not the
paper's 0.001: on the validation split, 16 steps of UFT reached 3.9% pass@1 with 1.0 and 0.0%
with 0.001 (docs/LOG.md, 2026-12-02; chosen there, never on test). Each arm is evaluated once, at
the end, on 64 problems per test set (a binomial standard error of up to 6.2 points): the
quickstart shows the machinery and the direction; `unift compare` with its defaults (eval_n 128,
--seeds) measures."""
QUICKSTART_OUT = "runs/quickstart-compare"
QUICKSTART_BUDGET = 2e13
"""`unift quickstart --match flops`: training FLOPs per arm (8.5 min for all three on 2 cores
with native bf16 under the old accounting: docs/LOG.md, 2026-12-01)."""


def quickstart_base(args) -> dict[str, Any]:
    """`QUICKSTART`, or with --match flops its FLOP-matched form (`QUICKSTART_BUDGET` per arm,
    steps estimated)."""
    base = dict(QUICKSTART)
    if args.match == "flops":
        base.update(match="flops", steps=0, budget=QUICKSTART_BUDGET)
    return base


def quickstart(argv: list[str]) -> int:
    """`unift quickstart [compare flags]`: a small comparison on the embedded model."""
    args = build_parser("unift quickstart", settings_for(**QUICKSTART), QUICKSTART_OUT).parse_args(argv)
    if args.report_only:
        return report_only(Path(args.report_only), "unift quickstart")
    try:
        s, overrides = settings_from_args(args, quickstart_base(args))
        out = Path(args.out or QUICKSTART_OUT)
        what = f"{s.steps} optimiser steps" if s.match == "steps" else f"{s.budget:.3g} training FLOPs"
        say(f"[bold]unift quickstart[/]: {', '.join(s.algos)} on {s.task} ({s.variant}) with {s.model}, "
            f"{what} each; results in {out}")
        report = run_comparison(s, arms_for(s.algos), out, overrides,
                                command="unift quickstart " + " ".join(argv))
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"unift quickstart: error: {err}", file=sys.stderr)
        return 2
    finish(report)
    return 0
