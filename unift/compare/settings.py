"""What a comparison runs: its `Settings`, the run values every arm shares in RunConfig terms
(`RUN_DEFAULTS`, `TASK_DEFAULTS`, `--set`), the short `--set` names (`ALIASES`), the arms
(algorithms as stages), `--set` items for every arm or one arm, and the test sets.

    settings_for("countdown", lr=1e-5)      # run["optim.lr"] = 1e-5 over RUN_DEFAULTS and the task's
    parse_overrides(["lr=1e-5", "uft.lr=5e-5", "optim.warmup_steps=2", "uft.sources.0.params.c_nll=1"])
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

PROTOCOLS = ("steps", "flops")
"""steps: every arm the same optimiser steps and prompts per step (the UFT paper: 500 steps x 256
prompts for every method); flops: every arm the same training FLOPs (the SFT-vs-RL study)."""

# The run values of every comparison, by dotted RunConfig key. Each is written into every run's
# config even where it equals RunConfig's default, so a changed default there does not change a
# comparison recorded in docs/LOG.md. Two more are decided per run, not here: the stop strings of
# rollouts and evaluation are the task's own, written out (`settings_for`), and gradient
# checkpointing is on for the arms that sample rollouts, off for the SFT preset (`runs.raw_config`).
RUN_DEFAULTS: dict[str, Any] = {
    "sources.0.batch_size": 8,
    "sources.0.rollout.num_generations": 4,
    "sources.0.rollout.max_new_tokens": 96,
    "sources.0.rollout.temperature": 1.0,
    "sources.0.rollout.viter": 1,
    "sources.0.rollout.num_problems": 2048,
    "optim.lr": 2e-5,
    "optim.schedule": "cosine",
    "optim.warmup_steps": 0,
    "optim.min_lr_ratio": 0.1,
    "precision": "auto",
    "max_length": 512,
    "eval.n": 128,  # a pass@1 near 50% then carries a binomial standard error of 4.4 points (6.2 at 64)
    "eval.split": "test",
    "eval.k": 1,
    "eval.viter": 1,
    "eval.max_new_tokens": 96,
    "progress": True,
}

ALIASES: dict[str, tuple[str, ...]] = {
    "batch_size": ("sources.0.batch_size",),
    "num_generations": ("sources.0.rollout.num_generations",),
    "max_new_tokens": ("sources.0.rollout.max_new_tokens", "eval.max_new_tokens"),
    "temperature": ("sources.0.rollout.temperature",),
    "stop_strings": ("sources.0.rollout.stop_strings", "eval.stop_strings"),
    "viter": ("sources.0.rollout.viter",),
    "num_problems": ("sources.0.rollout.num_problems",),
    "lr": ("optim.lr",),
    "schedule": ("optim.schedule",),
    "warmup_steps": ("optim.warmup_steps",),
    "min_lr_ratio": ("optim.min_lr_ratio",),
    "eval_n": ("eval.n",),
    "eval_split": ("eval.split",),
    "eval_k": ("eval.k",),
    "eval_viter": ("eval.viter",),
    "eval_max_new_tokens": ("eval.max_new_tokens",),
}
"""Short `--set` names of RunConfig keys: NAME=VALUE sets the first key, and each further key
unless the same `--set` items name that key too (`max_new_tokens=160` sets the rollouts' and the
evaluation's length, `max_new_tokens=160 eval_max_new_tokens=256` only the rollouts';
`stop_strings` sets those of the rollouts and of every evaluation, the base model's included)."""

# Per-task values, applied over `Settings` and `RUN_DEFAULTS` when --task names the task (flags
# and --set win): Settings fields and dotted RunConfig keys, as --set takes them.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "countdown": {},
    "general_points": {
        "variant": {"variant": "id"},
        "ood": {"ood_rule": {"variant": "ood_rule"}},
        "sources.0.rollout.max_new_tokens": 160,
        "eval.max_new_tokens": 160,
    },
    "navigation": {
        "variant": {"variant": "absolute"},
        "ood": {"relative": {"variant": "relative"}},
        "sources.0.rollout.max_new_tokens": 96,
        "eval.max_new_tokens": 96,
        "max_length": 768,  # step prompts up to ~572 tokens, a retry ~100 more, the reply up to 96
    },
    "knights_knaves": {
        "variant": {"variant": "easy"},
        "ood": {"ood_people": {"variant": "ood_people"}},
        "sources.0.rollout.max_new_tokens": 192,
        "eval.max_new_tokens": 192,
    },
}


@dataclass
class Settings:
    """A comparison: what every arm shares that is not a run-config value, and `run`, the run
    values of every run in RunConfig terms. `--set name=value` changes a field here, a run value
    by its short name (`ALIASES`) or any dotted RunConfig key; `--set ARM.name=value` one arm only
    (`uft.lr=5e-5`, `uft.sources.0.params.c_nll=1.0`)."""

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
    rollout_fill: float = 0.75
    """For the steps estimate only: the assumed mean rollout length as a share of max_new_tokens."""
    hint_nll: float | None = None
    """Weight of the NLL on hint tokens for `uft` (None: the preset's 0.001, the paper's value).
    At CPU budgets far below the paper's the hint likelihood needs more weight than the KL and
    entropy terms (both 0.001) to matter within a few steps."""
    run: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(RUN_DEFAULTS))
    """Run values of every run, by dotted RunConfig key: `RUN_DEFAULTS`, then the task's
    `TASK_DEFAULTS`, then --set (short names resolved by `ALIASES`). Applied over what the
    comparison decides per run (start, task source and preset, steps, FLOPs, evaluation times,
    seed, directory) and under a stage's own source settings (`Stage.source`)."""

    def value(self, name: str) -> Any:
        """A run value by its short name or dotted key (None where the comparison sets none)."""
        return self.run.get(ALIASES.get(name, (name,))[0])


DEFAULTS = Settings()

SHARED = frozenset({"model", "task", "variant", "ood", "algos", "match", "seeds", "eval.n", "eval.split", "eval.k",
                    "eval.viter", "eval.max_new_tokens", "progress"})
"""Settings fields and run keys every arm shares (the start, the test sets, the protocol):
`--set ARM.x` refuses them. (`ARM.max_new_tokens` still sets that arm's evaluation length too.)"""

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
    """The stage's own task-source config, merged over the comparison's (--set included), e.g.
    {"rollout": {"viter": 3}}: it defines the arm."""


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


# -- run keys -----------------------------------------------------------------------------------

FIELDS = frozenset(f.name for f in dataclasses.fields(Settings)) - {"run"}
"""Settings fields --set takes (`run` is set key by key)."""


def _close(name: str, known) -> str:
    """"; did you mean X?" for the known names closest to `name`, or ""."""
    near = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(near)}?" if near else ""


def _accepted(cls) -> set[str]:
    """Field names of a config dataclass, with the TRL names the config converts there (docs/trl.md)."""
    from unift import config

    section = {config.RunConfig: "run", config.SourceConfig: "source"}.get(cls)
    trl = set(getattr(config, "TRL_ALIASES", {}).get(section, {}))
    return {f.name for f in dataclasses.fields(cls)} | trl | ({"warmup_ratio"} if trl and section == "run" else set())


def _locate(key: str) -> tuple[Any, str, Any]:
    """(the dataclass that declares the field at dotted RunConfig `key`, the field's name, the
    type at `key`); within a free-form mapping (`params`, `variant`) or at a TRL name: (None, "",
    Any). An unknown part raises ValueError naming it, the closest names and the known ones."""
    from unift.config import RunConfig

    owner, name, tp, path = None, "", RunConfig, []
    for part in key.split("."):
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                if part in _accepted(tp):
                    return None, "", Any  # the config converts it
                raise ValueError(f"{key}: {'.'.join(path) or 'a run config'} has no field {part!r}"
                                 f"{_close(part, hints)} (known: {', '.join(sorted(hints))})")
            owner, name, tp = tp, part, hints[part]
        elif origin in (list, tuple):
            if not part.isdigit():
                raise ValueError(f"{key}: {'.'.join(path)} is a list: expected an index, got {part!r}")
            items = typing.get_args(tp)
            tp = items[0] if origin is list else items[min(int(part), len(items) - 1)]
        else:
            return None, "", Any
        path.append(part)
    return owner, name, tp


def field_doc(key: str) -> str:
    """The docstring of the RunConfig field at dotted `key` ("" for none), read from the source
    of the class that declares it (`unift.catalog.field_docs`)."""
    owner, name, _ = _locate(key)
    return _field_docs(owner).get(name, "") if owner else ""


@functools.cache
def _field_docs(cls) -> dict[str, str]:
    from unift.catalog import field_docs

    return field_docs(cls)


def _run_names() -> set[str]:
    from unift.config import RunConfig

    return _accepted(RunConfig)


def check_key(key: str) -> None:
    """A Settings field, a short name (`ALIASES`) or a RunConfig key, or ValueError with the
    closest names."""
    if key in FIELDS or key in ALIASES or key == "seed":
        return
    if key.partition(".")[0] in _run_names():
        _locate(key)
        return
    raise ValueError(f"{key}: neither a comparison setting, a short name nor a RunConfig key"
                     f"{_close(key, FIELDS | set(ALIASES) | _run_names())}")


def _is_float(tp) -> bool:
    return tp is float or float in typing.get_args(tp)


def _value(key: str, value: Any) -> Any:
    """A --set value for Settings field or run key `key`, with YAML's "2e15" read as a number
    where the field is one (as the config reads it)."""
    tp = typing.get_type_hints(Settings)[key] if key in FIELDS else _locate(key)[2]
    if _is_float(tp) and isinstance(value, str | int) and not isinstance(value, bool):
        try:
            value = float(value)
        except ValueError:
            if key in FIELDS:  # (a run key's config refuses it, naming the key)
                raise ValueError(f"{key}: expected a number, got {value!r}") from None
    if key == "seeds" and isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return value


def resolve(values: dict[str, Any], named=()) -> dict[str, Any]:
    """Settings fields, short names and dotted run keys -> Settings fields and dotted run keys
    (a short name's further `ALIASES` keys only where neither `values` nor `named` names them).
    None for a Settings field or a short name means its default (it is dropped)."""
    given = {ALIASES.get(k, (k,))[0] for k in values} | set(named)
    out: dict[str, Any] = {}
    for key, value in values.items():
        check_key(key)
        key = "seeds" if key == "seed" else key  # the old single-seed field
        if key in FIELDS or key in ALIASES:
            if value is None:
                continue
            for i, target in enumerate(ALIASES.get(key, (key,))):
                if i == 0 or target not in given:
                    out[target] = _value(target, copy.deepcopy(value))
        else:
            out[key] = _value(key, value)
    return out


# -- settings and overrides ---------------------------------------------------------------------


def settings_for(task: str | None = None, **values: Any) -> Settings:
    """`DEFAULTS` (run values: `RUN_DEFAULTS`), then the task's `TASK_DEFAULTS`, then `values`:
    Settings fields, short names (`ALIASES`) or dotted RunConfig keys. The stop strings of the
    rollouts and of the evaluations, unless set, are the task's own, written out."""
    task = task or values.get("task") or DEFAULTS.task
    merged = {f: getattr(DEFAULTS, f) for f in FIELDS}
    run = copy.deepcopy(RUN_DEFAULTS)
    for layer in (resolve(TASK_DEFAULTS.get(task, {})), resolve(values)):
        merged.update({k: v for k, v in layer.items() if k in FIELDS})
        run.update({k: v for k, v in layer.items() if k not in FIELDS})
    s = Settings(**copy.deepcopy({**merged, "task": task}), run=run)
    check(s)
    for key in ALIASES["stop_strings"]:
        s.run.setdefault(key, task_stop_strings(s))
    return s


def task_stop_strings(s: Settings) -> list[str]:
    """The task's own stop strings (Countdown's `</answer>`)."""
    from unift import tasks

    return list(getattr(tasks.get(s.task, **s.variant), "stop_strings", ()))


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


@dataclass
class ArmOverrides:
    """`--set ARM.key=value` items of one arm."""

    values: dict[str, Any] = field(default_factory=dict)
    """Settings fields and dotted run keys of this arm (`uft.lr=5e-5` -> {"optim.lr": 5e-5})."""
    items: list[str] = field(default_factory=list)
    """The items as given (for the manifest and the report)."""


@dataclass
class Overrides:
    """--set items sorted by what they change."""

    values: dict[str, Any] = field(default_factory=dict)
    """Settings fields and dotted run keys of every arm (short names resolved), for `settings_for`."""
    arms: dict[str, ArmOverrides] = field(default_factory=dict)
    """Per arm name: that arm's own values (`arm_settings` applies them)."""


def parse_overrides(items: list[str]) -> Overrides:
    """--set items -> `Overrides`. Values are YAML. A key is
    - a Settings field (`steps=50`, `hint_nll=1.0`) or a short name (`lr=1e-5`; `ALIASES`);
    - a key whose first dotted part is a RunConfig field (`optim.warmup_steps=2`,
      `sources.0.rollout.top_p=0.95`, `diagnostics_every=5`): that key of every run;
    - ARM.rest (`uft.lr=5e-5`, `rft.schedule=constant`, `uft.sources.0.params.c_nll=1.0`): the arm
      named ARM only, rest being either of the above.
    An unknown key is refused with the closest names; arm names are checked against the
    comparison's arms by `arm_settings`."""
    every: dict[str, Any] = {}
    out = Overrides()
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {item!r}: invalid YAML value: {str(err).splitlines()[0]}") from None
        head, dot, rest = key.partition(".")
        mine = not dot or head in _run_names()
        try:
            check_key(key if mine else rest)
        except ValueError as err:
            raise ValueError(f"--set {item!r}: {err}") from None
        if mine:
            every[key] = value
            continue
        if ALIASES.get(rest, ("seeds" if rest == "seed" else rest,))[0] in SHARED:
            raise ValueError(f"--set {item!r}: {rest} is shared by every arm; set it without '{head}.'")
        arm = out.arms.setdefault(head, ArmOverrides())
        arm.items.append(item)
        arm.values[rest] = value
    try:
        out.values = resolve(every)
        named = {ALIASES.get(k, (k,))[0] for k in every}
        for arm in out.arms.values():
            arm.values = resolve(arm.values, named)
    except ValueError as err:  # a value no field can take
        raise ValueError(f"--set {err}") from None
    return out


def arm_settings(s: Settings, o: Overrides, arms: list[Arm]) -> dict[str, Settings]:
    """Per arm name: its Settings, `s` with the arm's own fields and run values (`o.arms`; the
    every-arm values of `o` are already in `s`)."""
    names = [a.name for a in arms]
    unknown = sorted(set(o.arms) - set(names))
    if unknown:
        raise ValueError(f"--set {o.arms[unknown[0]].items[0]!r}: {unknown[0]!r} is neither an arm of this "
                         f"comparison ({', '.join(names)}) nor a RunConfig field"
                         f"{_close(unknown[0], set(names) | _run_names())}")
    out = {}
    for name in names:
        own = o.arms.get(name, ArmOverrides()).values
        fields = {k: v for k, v in own.items() if k in FIELDS}
        arm = dataclasses.replace(s, **fields, run={**s.run, **{k: v for k, v in own.items() if k not in FIELDS}})
        check(arm)
        out[name] = arm
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
