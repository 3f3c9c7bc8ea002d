"""`unift compare`: several algorithms at the same training compute, evaluated on ID and OOD test
sets along the way, in one HTML report.

    unift compare --task countdown --algos sft,rft,sft-rft,r3,uft --budget 2e15
    unift compare --algos rft,uft --budget 5e14 --set lr=1e-5 --set optim.warmup_steps=2
    unift compare --report-only runs/compare-countdown      # rebuild the report of a finished run
    unift quickstart                                        # the README's main command

Every algorithm is a list of stages, each a run of the one trainer with a task source and an
algorithm preset (`unift.rollout.presets`); SFT-RFT is two: SFT for half the budget, then RFT
from the SFT run's directory for the other half. Each run gets `max_flops` = its share of the
budget (training FLOPs: 6 N per trained token + 2 N per generated token, N parameters) and
`steps` estimated from the batch so the LR and hint schedules span the run (`estimate_steps`;
the trainer stops at `max_flops` either way). The base model is evaluated once (0 FLOPs); every
run then evaluates on the same test sets every budget / evals FLOPs (`RunConfig.eval`).

Layout of a comparison directory:
    compare.json        the manifest: settings, test sets, algorithms and their run directories
    base/evals.jsonl    the base model's evaluation (step 0, 0 FLOPs)
    configs/NAME.yaml   each run's resolved config (`unift train configs/NAME.yaml` re-runs it)
    runs/NAME/          each run: metrics.jsonl, evals.jsonl, model/, ...
    report.html, *.png  the report (`unift.report.build_report`)

A run whose directory already holds a finished run of the same config is not trained again, so
an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Settings:
    """Defaults of a comparison; `--set name=value` changes any of them (and dotted RunConfig
    keys such as `optim.warmup_steps=2` change every run's config directly)."""

    model: str = "smollm2-135m-instruct"
    """The initial policy of every algorithm (a model spec or a run directory)."""
    task: str = "countdown"
    """Task to train and evaluate on."""
    variant: dict[str, Any] = field(default_factory=lambda: {"variant": "easy"})
    """Training (ID) variant; the ID test set uses the same parameters."""
    ood: dict[str, dict] = field(
        default_factory=lambda: {"ood_4numbers": {"variant": "easy", "min_numbers": 4, "max_numbers": 4}}
    )
    """OOD test sets: label -> task variant parameters."""
    algos: list[str] = field(default_factory=lambda: ["sft", "rft", "sft-rft", "r3", "uft"])
    """Algorithms: any preset (sft, rft, uft, r3, stage, rft-cosine) or a sequence in `SEQUENCES`."""
    budget: float = 2e15
    """Training FLOPs per algorithm."""
    evals: int = 4
    """Evaluations per run after the base model's: every budget / evals FLOPs."""
    batch_size: int = 8
    """Prompts per optimiser step."""
    num_generations: int = 4
    """Rollouts per prompt (RL presets)."""
    max_new_tokens: int = 96
    """Longest rollout."""
    temperature: float = 1.0
    """Rollout sampling temperature."""
    stop_strings: list[str] = field(default_factory=list)
    """Rollout stop strings (evaluation decodes to EOS or max_new_tokens)."""
    viter: int = 1
    """Verification iterations of the RL rollouts (graded attempts per prompt)."""
    num_problems: int = 2048
    """Training problems per run (split "train")."""
    lr: float = 2e-5
    """Peak learning rate (AdamW), the same for every algorithm."""
    schedule: str = "cosine"
    """LR schedule after warm-up: cosine | constant | linear."""
    warmup_steps: int = 0
    """Linear LR warm-up steps."""
    min_lr_ratio: float = 0.1
    """Floor of the cosine decay as a share of lr."""
    precision: str = "auto"
    """auto (bf16 where it measured faster on this CPU, else fp32), bf16 (fp32 weights, bf16
    autocast), bf16-master (bf16 weights, fp32 master weights) or fp32."""
    max_length: int = 512
    """Longest training sequence (prompt + hint + completion)."""
    seed: int = 0
    """One seed for every run."""
    eval_n: int = 64
    """Test problems per test set."""
    eval_k: int = 1
    """Sampled pass@k as well when > 1 (k samples per problem)."""
    eval_viter: int = 1
    """Graded attempts per test problem (reports success@2..eval_viter)."""
    eval_max_new_tokens: int = 0
    """Longest evaluated completion (0: max_new_tokens)."""
    rollout_fill: float = 0.75
    """For the steps estimate only: the assumed mean rollout length as a share of max_new_tokens."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in backward (a third more compute): an RL batch of 32 rollouts
    otherwise holds several GB. None: on for the arms that sample rollouts, off for the SFT
    preset (8 demonstrations per step; with its skipped reference pass, its steps ran 1.43x
    faster in fp32: docs/LOG.md, 2026-12-01)."""
    hint_nll: float | None = None
    """Weight of the NLL on hint tokens for `uft` (None: the preset's 0.001, the paper's value).
    At CPU budgets far below the paper's the hint likelihood needs more weight than the KL and
    entropy terms (both 0.001) to matter within a few steps."""
    progress: bool = True
    """Show the trainer's progress bar."""


DEFAULTS = Settings()

# Per-task defaults, applied over `Settings` when --task names the task (flags and --set win).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "countdown": {},
    "general_points": {
        "variant": {"variant": "id"},
        "ood": {"ood_rule": {"variant": "ood_rule"}},
        "max_new_tokens": 160,
    },
    "navigation": {
        "variant": {"variant": "absolute"},
        "ood": {"relative": {"variant": "relative"}},
        "max_new_tokens": 96,
        "max_length": 640,
    },
    "knights_knaves": {
        "variant": {"variant": "easy"},
        "ood": {"ood_people": {"variant": "ood_people"}},
        "max_new_tokens": 192,
    },
}

# Algorithms made of several runs: (preset, share of the budget) per stage, each stage starting
# from the previous one's final model.
SEQUENCES: dict[str, list[tuple[str, float]]] = {"sft-rft": [("sft", 0.5), ("rft", 0.5)]}


@dataclass
class Stage:
    """One run of an algorithm."""

    preset: str
    """Algorithm preset of the task source."""
    share: float = 1.0
    """Share of the budget."""
    source: dict[str, Any] = field(default_factory=dict)
    """Extra task-source config merged over the defaults, e.g. {"rollout": {"viter": 3}}."""


@dataclass
class Arm:
    """One curve of the comparison: a name and the stages run in sequence."""

    name: str
    stages: list[Stage]


def _hint_nll(s: Settings, preset: str) -> dict:
    return {"params": {"c_nll": s.hint_nll}} if preset == "uft" and s.hint_nll is not None else {}


def arms_for(algos: list[str]) -> list[Arm]:
    """Algorithm names -> arms (presets are one stage; `SEQUENCES` several)."""
    from unift.rollout.presets import PRESETS

    arms = []
    for name in algos:
        if name in SEQUENCES:
            arms.append(Arm(name, [Stage(p, s) for p, s in SEQUENCES[name]]))
        elif name in PRESETS:
            arms.append(Arm(name, [Stage(name)]))
        else:
            raise ValueError(f"unknown algorithm {name!r}; known: {sorted(PRESETS) + sorted(SEQUENCES)}")
    return arms


# -- settings -----------------------------------------------------------------------------------


def settings_for(task: str | None = None, **values: Any) -> Settings:
    """`DEFAULTS`, then the task's `TASK_DEFAULTS`, then `values`."""
    task = task or values.get("task") or DEFAULTS.task
    merged = {**dataclasses.asdict(DEFAULTS), **TASK_DEFAULTS.get(task, {}), "task": task}
    merged.update({k: v for k, v in values.items() if v is not None})
    return Settings(**merged)


def split_overrides(items: list[str]) -> tuple[dict[str, Any], list[str]]:
    """--set items -> (Settings fields, RunConfig dotted overrides). Values are YAML."""
    names = {f.name for f in dataclasses.fields(Settings)}
    mine, run = {}, []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value")
        if key in names:
            value = yaml.safe_load(raw)
            if isinstance(getattr(DEFAULTS, key), float) and isinstance(value, str | int):
                value = float(value)  # YAML reads 2e15 as a string
            mine[key] = value
        else:
            run.append(item)
    return mine, run


def id_label(s: Settings) -> str:
    """The ID test set's label: the training variant's name (or "id")."""
    label = str(s.variant.get("variant", "id"))
    return label if label not in s.ood else f"{label}_id"


def eval_variants(s: Settings) -> dict[str, dict]:
    """Test sets: the ID one (the training variant's test split) first, then the OOD ones."""
    return {id_label(s): dict(s.variant), **{k: dict(v) for k, v in s.ood.items()}}


def distributions(s: Settings) -> dict[str, str]:
    """Label -> "id" | "ood" of every test set."""
    return {label: "id" if label == id_label(s) else "ood" for label in eval_variants(s)}


# -- compute ------------------------------------------------------------------------------------


@dataclass
class TokenLengths:
    """Mean token counts of the training variant, for the steps estimate."""

    prompt: float
    solution: float


def token_lengths(tokenizer, task, n: int = 32, seed: int = 0) -> TokenLengths:
    from unift.data.tokenize import render_prompt

    problems = task.problems(n, seed=seed, split="train")

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompt = sum(count(render_prompt(tokenizer, task.prompt(p))) for p in problems) / n
    solution = sum(count(task.reference_completion(p)) for p in problems) / n + 1  # + EOS
    return TokenLengths(prompt, solution)


def mean_hint_share(hint_spec) -> float:
    """The schedule's expected hint length as a share of the solution, averaged over a run."""
    from unift.rollout.hints import hint_p

    return sum(hint_p(hint_spec, t, 100) for t in range(100)) / 100


def flops_per_step(config, n_params: int, lengths: TokenLengths, rollout_fill: float) -> float:
    """Estimated training FLOPs of one optimiser step of a one-task-source config:
    SFT 6 N B (prompt + solution); RL B G (6 N (prompt + hint + C) + 2 N C / ppo_epochs) with C
    the assumed rollout length (rollout_fill * max_new_tokens) and the hint at its mean share of
    the solution (plus retries with verification iterations)."""
    source = config.sources[0]
    r = source.rollout
    B = source.batch_size * config.optim.grad_accum
    N = n_params
    if not r.policy_gradient:
        return 6 * N * B * (lengths.prompt + lengths.solution)
    C = rollout_fill * r.max_new_tokens
    H = mean_hint_share(r.hint) * lengths.solution
    generate = 2 * N * C / r.ppo_epochs  # a batch of rollouts serves ppo_epochs steps
    first = 6 * N * (lengths.prompt + H + C) + generate
    # a retry's prompt holds the previous attempt and the feedback (~30 tokens); small models
    # fail most attempts, so assume RETRY_FAIL of them are retried
    retry = 6 * N * (lengths.prompt + H + 2 * C + 30) + generate
    return B * r.num_generations * (first + RETRY_FAIL * (r.viter - 1) * retry)


RETRY_FAIL = 0.8
"""Steps estimate with verification iterations: the assumed share of attempts that fail."""


def estimate_steps(budget: float, per_step: float) -> int:
    return max(1, math.ceil(budget / per_step))


# -- configs ------------------------------------------------------------------------------------


def raw_config(s: Settings, stage: Stage, init: str, run_dir: Path) -> dict:
    """The YAML data of one run (before overrides and the steps estimate)."""
    from unift.rollout.presets import merge

    source = {
        "name": s.task,
        "kind": "task",
        "task": s.task,
        "variant": dict(s.variant),
        "objective": "grpo",
        "preset": stage.preset,
        "batch_size": s.batch_size,
        "rollout": {
            "num_generations": s.num_generations,
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "stop_strings": list(s.stop_strings),
            "viter": s.viter,
            "num_problems": s.num_problems,
        },
    }
    evaluation = {
        "task": s.task,
        "variants": eval_variants(s),
        "n": s.eval_n,
        "k": s.eval_k,
        "viter": s.eval_viter,
        "max_new_tokens": s.eval_max_new_tokens or s.max_new_tokens,
        "every_flops": s.budget / max(1, s.evals),
        "at_start": False,  # the base model is evaluated once, by `evaluate_base`
        "stop_strings": list(s.stop_strings),
    }
    return {
        "model": {"name": init},
        "sources": [merge(merge(source, _hint_nll(s, stage.preset)), stage.source)],
        "optim": {"lr": s.lr, "schedule": s.schedule, "warmup_steps": s.warmup_steps,
                  "min_lr_ratio": s.min_lr_ratio},
        "max_flops": s.budget * stage.share,
        "eval": evaluation,
        "max_length": s.max_length,
        "precision": s.precision,
        "gradient_checkpointing": _samples(stage.preset) if s.gradient_checkpointing is None
        else s.gradient_checkpointing,
        "seed": s.seed,
        "output_dir": str(run_dir),
        "progress": s.progress,
    }


def _samples(preset: str) -> bool:
    """Whether a preset generates rollouts (the SFT preset trains on reference solutions only)."""
    from unift.rollout.presets import PRESETS

    return PRESETS.get(preset, {}).get("rollout", {}).get("policy_gradient", True)


def build_run_config(s: Settings, stage: Stage, init: str, run_dir: Path, path: Path, overrides: list[str],
                     n_params: int, lengths: TokenLengths):
    """Write, load (presets and overrides applied), size `steps` from the budget, write again."""
    from unift.config import dump_config, load_config

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw_config(s, stage, init, run_dir), sort_keys=False))
    config = load_config(path, overrides)
    per_step = flops_per_step(config, n_params, lengths, s.rollout_fill)
    if not any(o.partition("=")[0] == "steps" for o in overrides):  # `--set steps=N` wins
        config.steps = estimate_steps(config.max_flops, per_step)
    dump_config(config, path)
    return config, per_step


def finished(run_dir: Path, config) -> bool:
    """A finished run of the same config already lives in run_dir."""
    from unift.config import to_dict

    done = run_dir / "config.yaml"
    if not ((run_dir / "model").is_dir() and (run_dir / "metrics.jsonl").exists() and done.exists()):
        return False
    saved = yaml.safe_load(done.read_text())
    current = yaml.safe_load(yaml.safe_dump(json.loads(json.dumps(to_dict(config)))))
    if current.get("precision") == "auto":  # config.yaml holds what auto resolved to on that machine
        saved.pop("precision", None)
        current.pop("precision", None)
    return saved == current


# -- the comparison -----------------------------------------------------------------------------


def train_stage(s: Settings, stage: Stage, init: str, run_dir: Path, config_path: Path, overrides: list[str],
                n_params: int, lengths: TokenLengths, *, head: str, force: bool = False) -> bool:
    """Train one run unless run_dir already holds it (force: train anyway). -> whether it trained."""
    from unift.train.run import train

    config, per_step = build_run_config(s, stage, init, run_dir, config_path, overrides, n_params, lengths)
    if not force and finished(run_dir, config):
        _say(f"{head}: already trained in {run_dir}")
        return False
    _say(f"{head}: {config.max_flops:.3g} FLOPs, ~{config.steps} steps (~{per_step:.3g} FLOPs/step) -> {run_dir}")
    t0 = time.perf_counter()
    train(config, config_path.parent)
    gc.collect()
    _say(f"{head}: done in {time.perf_counter() - t0:.0f}s; {_last_eval_line(run_dir)}")
    return True


def _say(text: str) -> None:
    from rich.console import Console

    Console(highlight=False).print(text)


def evaluate_base(s: Settings, out: Path):
    """Evaluate the initial model once (step 0, 0 FLOPs) into out/base/evals.jsonl;
    -> (N parameters, tokenizer)."""
    from unift import models, precision
    from unift.evaluate import evaluate_variants

    model, tokenizer = models.load(s.model)
    dtype = precision.choose(s.precision, *precision.model_shapes(model.config)).rollout  # as the runs
    n_params = models.num_parameters(model)
    base = out / "base"
    key = {"model": s.model, "variants": eval_variants(s), "n": s.eval_n, "k": s.eval_k,
           "viter": s.eval_viter, "max_new_tokens": s.eval_max_new_tokens or s.max_new_tokens}
    if (base / "evals.jsonl").exists() and (base / "key.json").exists() \
            and json.loads((base / "key.json").read_text()) == key:
        return n_params, tokenizer
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = evaluate_variants(model, tokenizer, s.task, key["variants"], s.eval_n, k=s.eval_k, viter=s.eval_viter,
                                max_new_tokens=key["max_new_tokens"], dtype=dtype)
    with (base / "evals.jsonl").open("w") as f:
        for label, metrics in results.items():
            f.write(json.dumps({"step": 0, "flops": 0.0, "label": label, **metrics}) + "\n")
    (base / "key.json").write_text(json.dumps(key))
    line = ", ".join(f"{label} {100 * r['pass@1']:.1f}%" for label, r in results.items())
    _say(f"[bold]base[/] {s.model}: pass@1 {line}  ({time.perf_counter() - t0:.0f}s)")
    del model
    gc.collect()
    return n_params, tokenizer


def run_comparison(s: Settings, arms: list[Arm], out: Path, overrides: list[str] = (), *,
                   title: str | None = None, command: str = "", report: dict | None = None) -> Path:
    """Evaluate the base model, train every arm's stages in sequence, write the report.
    `report`: extra manifest entries for the report (e.g. figures, reference, notes).
    Returns the report's path."""
    from unift import tasks
    from unift.report import build_report

    out.mkdir(parents=True, exist_ok=True)
    tasks.get(s.task, **s.variant)  # fail early on a bad variant
    for v in s.ood.values():
        tasks.get(s.task, **v)
    n_params, tokenizer = evaluate_base(s, out)
    lengths = token_lengths(tokenizer, tasks.get(s.task, **s.variant), seed=s.seed)
    manifest = {
        "title": title or f"{s.task}: {', '.join(a.name for a in arms)} at {s.budget:.3g} FLOPs",
        "command": command,
        "task": s.task,
        "model": s.model,
        "n_params": n_params,
        "budget": s.budget,
        "settings": dataclasses.asdict(s),
        "eval_variants": eval_variants(s),
        "distributions": distributions(s),
        "token_lengths": dataclasses.asdict(lengths),
        "base": "base",
        "reference": "500 steps of 256 prompts x 4 rollouts in the UFT paper's reference runs",
        **(report or {}),
        "arms": [],
    }
    for arm in arms:
        runs = []
        for i, stage in enumerate(arm.stages):
            name = arm.name if len(arm.stages) == 1 else f"{arm.name}_{i + 1}_{stage.preset}"
            runs.append({"name": name, "dir": f"runs/{name}", "preset": stage.preset, "share": stage.share})
        manifest["arms"].append({"name": arm.name, "runs": runs})
    (out / "compare.json").write_text(json.dumps(manifest, indent=2) + "\n")

    total = sum(len(a.stages) for a in arms)
    done = 0
    for arm, entry in zip(arms, manifest["arms"], strict=True):
        init, retrained = s.model, False
        for stage, run in zip(arm.stages, entry["runs"], strict=True):
            done += 1
            run_dir = out / run["dir"]
            head = f"[{done}/{total}] [bold]{run['name']}[/] ({stage.preset})"
            # a retrained stage changes the start of the next ones: train them again too
            retrained |= train_stage(s, stage, init, run_dir, out / "configs" / f"{run['name']}.yaml",
                                     list(overrides), n_params, lengths, head=head, force=retrained)
            init = str(run_dir)
    return build_report(out)


def _last_eval_line(run_dir: Path) -> str:
    path = run_dir / "evals.jsonl"
    if not path.exists():
        return "no evaluation"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return "no evaluation"
    last = max(r["step"] for r in rows)
    return "pass@1 " + ", ".join(f"{r['label']} {100 * r['pass@1']:.1f}%" for r in rows if r["step"] == last)


# -- CLI ----------------------------------------------------------------------------------------


def build_parser(prog: str = "unift compare", defaults: Settings = DEFAULTS,
                 out: str = "runs/compare-TASK") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train several algorithms at the same compute budget, evaluate them on ID and OOD "
        "test sets along the way, and write an HTML report (defaults: `DEFAULTS` in unift/compare.py).",
        epilog="examples:\n"
        "  unift compare --task countdown --algos sft,rft,sft-rft,r3,uft --budget 2e15\n"
        "  unift compare --algos rft,uft --budget 5e14 --set lr=1e-5 --set optim.warmup_steps=2\n"
        "  unift compare --report-only runs/compare-countdown",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", help=f"task (default {defaults.task})")
    p.add_argument("--algos", help=f"comma-separated algorithms (default {','.join(defaults.algos)})")
    p.add_argument("--budget", type=float, help=f"training FLOPs per algorithm (default {defaults.budget:.3g})")
    p.add_argument("--model", help=f"initial model (default {defaults.model})")
    p.add_argument("--variant", action="append", metavar="NAME|KEY=VALUE",
                   help="training / ID variant (named variant or parameter; repeatable)")
    p.add_argument("--ood", help="comma-separated named OOD variants (default: the task's defaults)")
    p.add_argument("--evals", type=int, help=f"evaluations per run (default {defaults.evals})")
    p.add_argument("--out", help=f"comparison directory (default {out})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="a Settings field (lr=1e-5, eval_n=128, ...) or a dotted RunConfig key "
                   "(optim.warmup_steps=2, sources.0.rollout.top_p=0.95); repeatable")
    p.add_argument("--report-only", metavar="DIR", help="only (re)build the report of a comparison directory")
    return p


def settings_from_args(args, base: dict[str, Any] | None = None) -> tuple[Settings, list[str]]:
    from unift.tasks.export import parse_variant

    values: dict[str, Any] = dict(base or {})
    if args.task:
        values["task"] = args.task
    if args.algos:
        values["algos"] = [a.strip() for a in args.algos.split(",") if a.strip()]
    for key in ("budget", "model", "evals"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.variant:
        values["variant"] = parse_variant(args.variant)
    if args.ood:
        values["ood"] = {name: {"variant": name} for name in args.ood.split(",") if name}
    mine, run_overrides = split_overrides(args.sets)
    values.update(mine)
    return settings_for(values.pop("task", None), **values), run_overrides


def _finish(report: Path) -> None:
    from unift.report import summary_markdown

    print()
    print(summary_markdown(report.parent))
    _say(f"\nreport: [bold]{report}[/]")


def _report_only(compare_dir: Path) -> int:
    from unift.report import build_report

    if not (compare_dir / "compare.json").exists():
        print(f"unift compare: error: {compare_dir} has no compare.json", file=sys.stderr)
        return 2
    _finish(build_report(compare_dir))
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.report_only:
        return _report_only(Path(args.report_only))
    try:
        s, overrides = settings_from_args(args)
        arms = arms_for(s.algos)
        out = Path(args.out or f"runs/compare-{s.task}")
        report = run_comparison(s, arms, out, overrides, command="unift compare " + " ".join(argv))
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"unift compare: error: {err}", file=sys.stderr)
        return 2
    _finish(report)
    return 0


# -- quickstart ---------------------------------------------------------------------------------

QUICKSTART: dict[str, Any] = {
    "algos": ["sft", "rft", "uft"],
    "budget": 2e13,
    "hint_nll": 1.0,
    "evals": 2,
    "eval_n": 32,
}
"""The quickstart's changes to `DEFAULTS`: SFT, RFT and UFT on easy Countdown with the embedded
model, sized to finish within 15 minutes on a 2-core CPU without native bf16 (fp32; 14 min 19 s
measured) and in well under 10 with it (docs/LOG.md, 2026-12-01)."""
QUICKSTART_OUT = "runs/quickstart-compare"


def quickstart(argv: list[str]) -> int:
    """`unift quickstart [compare flags]`: a small comparison on the embedded model."""
    args = build_parser("unift quickstart", settings_for(**QUICKSTART), QUICKSTART_OUT).parse_args(argv)
    if args.report_only:
        return _report_only(Path(args.report_only))
    try:
        s, overrides = settings_from_args(args, QUICKSTART)
        out = Path(args.out or QUICKSTART_OUT)
        _say(f"[bold]unift quickstart[/]: {', '.join(s.algos)} on {s.task} ({s.variant}) with {s.model}, "
             f"{s.budget:.3g} training FLOPs each; results in {out}")
        report = run_comparison(s, arms_for(s.algos), out, overrides,
                                command="unift quickstart " + " ".join(argv))
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"unift quickstart: error: {err}", file=sys.stderr)
        return 2
    _finish(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
