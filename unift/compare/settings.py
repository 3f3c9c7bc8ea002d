"""What a comparison runs: its `Settings`, the arms (algorithms as stages), `--set` overrides for
every arm or one arm, and the test sets.

    settings_for("countdown", lr=1e-5)                  # DEFAULTS < TASK_DEFAULTS < values
    parse_overrides(["lr=1e-5", "uft.lr=5e-5", "optim.warmup_steps=2", "uft.sources.0.params.c_nll=1"])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

PROTOCOLS = ("steps", "flops")
"""steps: every arm the same optimiser steps and prompts per step (the UFT paper: 500 steps x 256
prompts for every method); flops: every arm the same training FLOPs (the SFT-vs-RL study)."""


@dataclass
class Settings:
    """Defaults of a comparison; `--set name=value` changes any of them (and dotted RunConfig
    keys such as `optim.warmup_steps=2` change every run's config directly). `--set ARM.name=value`
    changes one arm only (`uft.lr=5e-5`, `uft.sources.0.params.c_nll=1.0`)."""

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
    """Algorithms: any preset (sft, rft, uft, r3, stage, rft-cosine, luffy, chord, chord-phi, hpt,
    superrl, relift, prefix-rft, questa) or a sequence in `SEQUENCES`."""
    match: str = "flops"
    """What every arm gets the same of: flops (`budget` training FLOPs each, steps estimated so the
    LR and hint schedules span the run; the SFT-vs-RL study, Chu et al. 2025) | steps (`steps`
    optimiser steps of `batch_size` prompts each and no FLOP limit; the UFT paper)."""
    steps: int = 0
    """match=steps: optimiser steps per arm (a sequence such as sft-rft splits them by share, at
    least 1 each). match=flops: 0 estimates each run's steps from its budget; N > 0 fixes them
    (the trainer still stops at the budget)."""
    budget: float = 2e15
    """match=flops: training FLOPs per algorithm (`unift.train.flops` counts them)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds: every arm runs once per seed (the run config's `seed`: data order, problems,
    sampling); the report gives the mean, spread and standard error over seeds."""
    evals: int = 4
    """Evaluations per run after the base model's: every budget / evals FLOPs (match=flops) or
    every steps / evals steps (match=steps), and at the end."""
    batch_size: int = 8
    """Prompts per optimiser step."""
    num_generations: int = 4
    """Rollouts per prompt (RL presets)."""
    max_new_tokens: int = 96
    """Longest rollout."""
    temperature: float = 1.0
    """Rollout sampling temperature."""
    stop_strings: list[str] | None = None
    """Stop strings of the rollouts and of every evaluation (the base model's too); None: the
    task's own (`task.stop_strings`, Countdown's `</answer>`), [] none."""
    viter: int = 1
    """Verification iterations of the RL rollouts (graded attempts per prompt)."""
    num_problems: int = 2048
    """Training problems per run (split "train")."""
    lr: float = 2e-5
    """Peak learning rate (AdamW), the same for every algorithm (`--set uft.lr=...`: one arm)."""
    schedule: str = "cosine"
    """LR schedule after warm-up: cosine | constant | linear | hold-cosine (constant until the
    first task source's T_hint, then cosine to min_lr_ratio; the trainer checks the name)."""
    warmup_steps: int = 0
    """Linear LR warm-up steps."""
    min_lr_ratio: float = 0.1
    """Floor of the cosine decay as a share of lr."""
    precision: str = "auto"
    """auto (bf16 where it measured faster on this CPU, else fp32), bf16 (fp32 weights, bf16
    autocast), bf16-master (bf16 weights, fp32 master weights) or fp32."""
    max_length: int = 512
    """Longest training sequence (prompt + hint + completion)."""
    eval_n: int = 128
    """Test problems per test set (the same problems for every arm and seed). At 128 a pass@1 near
    50% carries a binomial standard error of 4.4 points (6.2 at 64)."""
    eval_split: str = "test"
    """Problems of every evaluation: test (held out) | val (the validation split: choose settings
    and run ablations on it, never on test)."""
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

SHARED = frozenset({"model", "task", "variant", "ood", "algos", "match", "seeds", "eval_n", "eval_split", "eval_k",
                    "eval_viter", "eval_max_new_tokens", "progress"})
"""Settings every arm shares (the start, the test sets, the protocol): `--set ARM.x` refuses them."""

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

# Algorithms made of several runs: (preset, share of the budget or of the steps) per stage, each
# stage starting from the previous one's final model.
SEQUENCES: dict[str, list[tuple[str, float]]] = {"sft-rft": [("sft", 0.5), ("rft", 0.5)]}


@dataclass
class Stage:
    """One run of an algorithm."""

    preset: str
    """Algorithm preset of the task source."""
    share: float = 1.0
    """Share of the budget (match=flops) or of the steps (match=steps)."""
    source: dict[str, Any] = field(default_factory=dict)
    """Extra task-source config merged over the defaults, e.g. {"rollout": {"viter": 3}}."""


@dataclass
class Arm:
    """One curve of the comparison: a name and the stages run in sequence."""

    name: str
    stages: list[Stage]


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


def split_steps(steps: int, shares: list[float]) -> list[int]:
    """Steps of each stage of a sequence: steps x share rounded (largest remainder), at least 1
    each, summing to `steps`. split_steps(5, [0.5, 0.5]) == [3, 2]."""
    if steps < len(shares):
        raise ValueError(f"steps: {steps} cannot give each of {len(shares)} stages a step")
    total = sum(shares)
    exact = [steps * s / total for s in shares]
    out = [max(1, math.floor(x)) for x in exact]
    while sum(out) < steps:  # the largest remainder first; ties: the earlier stage
        out[max(range(len(out)), key=lambda i: (exact[i] - out[i], -i))] += 1
    while sum(out) > steps:  # the floor of 1 overshot: take from the most over-served stage
        out[max((i for i in range(len(out)) if out[i] > 1), key=lambda i: (out[i] - exact[i], -i))] -= 1
    return out


# -- settings and overrides ---------------------------------------------------------------------


def settings_for(task: str | None = None, **values: Any) -> Settings:
    """`DEFAULTS`, then the task's `TASK_DEFAULTS`, then `values`."""
    task = task or values.get("task") or DEFAULTS.task
    merged = {**dataclasses.asdict(DEFAULTS), **TASK_DEFAULTS.get(task, {}), "task": task}
    merged.update({k: v for k, v in values.items() if v is not None})
    s = Settings(**merged)
    check(s)
    return s


def check(s: Settings) -> None:
    """Refuse settings no run could use, before any model loads."""
    if s.match not in PROTOCOLS:
        raise ValueError(f"match: {s.match!r} is not one of {' | '.join(PROTOCOLS)}")
    if s.match == "steps" and s.steps < 1:
        raise ValueError("match=steps needs the optimiser steps per arm: --steps N (or --set steps=N)")
    if not s.seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in s.seeds):
        raise ValueError(f"seeds: a non-empty list of integers, got {s.seeds!r}")
    if len(set(s.seeds)) != len(s.seeds):
        raise ValueError(f"seeds: {s.seeds} repeats a seed")


def setting_value(key: str, raw: str) -> Any:
    """A --set value (YAML) for Settings field `key`, with YAML's "2e15" read as a number."""
    value = yaml.safe_load(raw)
    default = getattr(DEFAULTS, key)
    if isinstance(default, float) and isinstance(value, str | int) and not isinstance(value, bool):
        value = float(value)
    if key == "seeds" and isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return value


@dataclass
class ArmOverrides:
    """`--set ARM.key=value` items of one arm."""

    settings: dict[str, Any] = field(default_factory=dict)
    """Settings fields of this arm (`uft.lr=5e-5` -> {"lr": 5e-5})."""
    run: list[str] = field(default_factory=list)
    """Dotted RunConfig overrides of this arm's runs (`uft.optim.warmup_steps=2`)."""
    items: list[str] = field(default_factory=list)
    """The items as given (for the manifest and the report)."""


@dataclass
class Overrides:
    """--set items sorted by what they change."""

    settings: dict[str, Any] = field(default_factory=dict)
    """Settings fields of every arm."""
    run: list[str] = field(default_factory=list)
    """Dotted RunConfig overrides of every run."""
    arms: dict[str, ArmOverrides] = field(default_factory=dict)
    """Per arm name: that arm's own settings and RunConfig overrides."""


def parse_overrides(items: list[str]) -> Overrides:
    """--set items -> `Overrides`. Values are YAML. A key is
    - a Settings field (`lr=1e-5`): every arm;
    - any other key whose first dotted part is a RunConfig field (`optim.warmup_steps=2`,
      `sources.0.rollout.top_p=0.95`, `diagnostics_every=5`): every run's config;
    - ARM.rest (`uft.lr=5e-5`, `rft.schedule=constant`, `uft.sources.0.params.c_nll=1.0`): the arm
      named ARM only (the first dotted part is not a RunConfig field), rest being a Settings field
      or a dotted RunConfig key.
    Arm names are checked against the comparison's arms by `arm_settings`."""
    from unift.config import RunConfig

    names = {f.name for f in dataclasses.fields(Settings)}
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    out = Overrides()
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        if key == "seed":  # the old single-seed field
            key = "seeds"
        head, dot, rest = key.partition(".")
        if key in names:
            out.settings[key] = setting_value(key, raw)
        elif not dot or head in run_fields:
            out.run.append(item)
        else:
            arm = out.arms.setdefault(head, ArmOverrides())
            arm.items.append(item)
            if rest in SHARED:
                raise ValueError(f"--set {item!r}: {rest} is shared by every arm; set it without '{head}.'")
            if rest in names:
                arm.settings[rest] = setting_value(rest, raw)
            else:
                arm.run.append(f"{rest}={raw}")
    return out


def split_overrides(items: list[str]) -> tuple[dict[str, Any], list[str]]:
    """--set items -> (Settings fields, RunConfig dotted overrides) of every arm; per-arm items
    are refused (use `parse_overrides`)."""
    o = parse_overrides(items)
    if o.arms:
        raise ValueError(f"per-arm --set items are not supported here: {[i for a in o.arms.values() for i in a.items]}")
    return o.settings, o.run


def arm_settings(s: Settings, o: Overrides, arms: list[Arm]) -> dict[str, tuple[Settings, list[str]]]:
    """Per arm name: its Settings (`s` with the arm's own fields) and RunConfig overrides (every
    run's, then the arm's own)."""
    names = [a.name for a in arms]
    unknown = sorted(set(o.arms) - set(names))
    if unknown:
        raise ValueError(f"--set {o.arms[unknown[0]].items[0]!r}: {unknown[0]!r} is neither an arm of this "
                         f"comparison ({', '.join(names)}) nor a RunConfig field")
    out = {}
    for name in names:
        own = o.arms.get(name, ArmOverrides())
        arm = dataclasses.replace(s, **own.settings) if own.settings else s
        check(arm)
        out[name] = (arm, [*o.run, *own.run])
    return out


# -- test sets ----------------------------------------------------------------------------------


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


def stop_strings(s: Settings) -> list[str]:
    """The stop strings of rollouts and evaluations: `s.stop_strings`, or the task's own."""
    if s.stop_strings is not None:
        return list(s.stop_strings)
    from unift import tasks

    return list(getattr(tasks.get(s.task, **s.variant), "stop_strings", ()))
