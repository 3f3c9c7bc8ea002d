"""Running a comparison: the base model's evaluation, one run config per stage, arm and seed
(`plan`, `build_run_config`), training what is not trained yet, the manifest, the report.

    run_comparison(settings_for("countdown", match="steps", steps=50), arms_for(["sft", "uft"]),
                   Path("runs/compare-countdown"))
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from unift.compare.budget import TokenLengths, estimate_steps, flops_per_step, token_lengths
from unift.compare.settings import (
    Arm,
    ArmOverrides,
    Overrides,
    Settings,
    Stage,
    arm_settings,
    distributions,
    eval_variants,
    split_steps,
)
from unift.memory import release_freed_memory


def say(text: str) -> None:
    """A line on the console (rich markup)."""
    from rich.console import Console

    Console(highlight=False).print(text)


def _hint_nll(s: Settings, preset: str | None) -> dict:
    return {"params": {"c_nll": s.hint_nll}} if preset == "uft" and s.hint_nll is not None else {}


def _samples(preset: str | None) -> bool:
    """Whether a preset generates rollouts (the SFT preset trains on reference solutions only)."""
    from unift.rollout.presets import PRESETS

    return PRESETS.get(preset, {}).get("rollout", {}).get("policy_gradient", True)


def run_name(arm: str, stages: list[Stage], i: int, seed: int, seeds: list[int]) -> str:
    """runs/NAME: the arm (sequence stages: ARM_2_rft), with -sSEED when there are several seeds."""
    name = arm if len(stages) == 1 else f"{arm}_{i + 1}_{stages[i].preset}"
    return name if len(seeds) == 1 else f"{name}-s{seed}"


def stage_steps(s: Settings, stages: list[Stage]) -> list[int]:
    """Fixed steps of each stage (match=steps, or match=flops with `steps` > 0); 0: estimate."""
    if not s.steps:
        return [0] * len(stages)
    return split_steps(s.steps, [st.share for st in stages])


def raw_config(s: Settings, stage: Stage | None, init: str, run_dir: Path, *, seed: int, steps: int = 0) -> dict:
    """The data of one run's config (before, under match=flops, the steps estimate): what the
    comparison decides for the run (its start, the task source and the stage's preset, steps or
    FLOPs, when to evaluate and on what, seed, directory; gradient checkpointing on where the
    preset samples rollouts), then the run values `s.run` by dotted key, then the stage's own
    source settings. stage None: the settings every run shares (no preset)."""
    from unift.config import set_dotted
    from unift.rollout.presets import merge

    preset = stage.preset if stage else None
    by_steps = s.match == "steps"
    data = {
        "model": {"name": init},
        "sources": [{"name": s.task, "kind": "task", "task": s.task, "variant": dict(s.variant), "objective": "grpo",
                     "preset": preset, **_hint_nll(s, preset)}],
        "steps": steps or 1,  # match=flops without fixed steps: estimated by `build_run_config`
        "max_flops": 0.0 if by_steps else s.budget * (stage.share if stage else 1.0),
        "eval": {
            "task": s.task,
            "variants": eval_variants(s),
            "every_flops": 0.0 if by_steps else s.budget / max(1, s.evals),
            "every_steps": math.ceil(s.steps / max(1, s.evals)) if by_steps else 0,
            "at_start": False,  # the base model is evaluated once, by `evaluate_base`
        },
        "gradient_checkpointing": _samples(preset),
        "seed": seed,
        "output_dir": str(run_dir),
    }
    for key, value in s.run.items():
        set_dotted(data, key, copy.deepcopy(value))
    if stage and stage.source:
        data["sources"][0] = merge(data["sources"][0], stage.source)
    return data


def shared_config(s: Settings):
    """The run config of `s` without a stage (no preset): the values every run shares, which the
    base model's evaluation uses (test sets, n, split, k, viter, lengths, stop strings, precision)."""
    from unift.config import build_config

    return build_config(raw_config(s, None, s.model, Path("base"), seed=s.seeds[0]), where="settings")


def build_run_config(s: Settings, stage: Stage, init: str, run_dir: Path, path: Path, model, lengths: TokenLengths,
                     *, seed: int = 0, steps: int = 0):
    """The run's RunConfig (presets applied by the source config itself), its `steps` sized from
    the budget unless fixed (`steps` > 0), written to `path` (`unift train path` re-runs it).
    -> (RunConfig, estimated FLOPs per step); model: a `ModelFlops`."""
    from unift.config import build_config, dump_config

    path.parent.mkdir(parents=True, exist_ok=True)
    config = build_config(raw_config(s, stage, init, run_dir, seed=seed, steps=steps), where=str(path))
    per_step = flops_per_step(config, model, lengths, s.rollout_fill)
    if not steps:
        config.steps = estimate_steps(config.max_flops, per_step)
        # the estimate sets the schedules' length; the budget where the run stops
        config.max_flops_fill = bool(config.max_flops)
    dump_config(config, path)
    return config, per_step


def finished(run_dir: Path, config, needs_model: bool = True) -> bool:
    """A finished run of the same config already lives in run_dir: its config.yaml matches, and
    beside metrics.jsonl it has finished.json (written last by a run that ended) or model/ (runs
    from before finished.json). needs_model: a later stage starts from this run, so model/ must be
    there; else the records suffice, model/ and checkpoint.pt may have been deleted. The saved
    config.yaml is read back as a RunConfig, so a field added to RunConfig since (at its default)
    changes nothing."""
    from unift.config import ConfigError, build_config, differences, to_dict
    from unift.train.checkpoint import FINISHED, MODEL

    done = run_dir / "config.yaml"
    ended = (run_dir / MODEL).is_dir() or (not needs_model and (run_dir / FINISHED).is_file())
    if not (ended and (run_dir / "metrics.jsonl").exists() and done.exists()):
        return False
    try:
        saved = _plain(to_dict(build_config(yaml.safe_load(done.read_text()) or {}, where=str(done))))
    except ConfigError:
        return False  # a config this version cannot read is not the same run
    current = _plain(to_dict(config))
    ignore = ["overwrite", "resume"]  # how a run was started, not what it trains
    if current.get("precision") == "auto":  # config.yaml holds what auto resolved to on that machine
        ignore.append("precision")
    return not differences(saved, current, ignore=ignore)


def _plain(data: dict) -> dict:
    """Tuples as lists, as YAML stores them."""
    return yaml.safe_load(yaml.safe_dump(json.loads(json.dumps(data))))


def train_stage(s: Settings, stage: Stage, init: str, run_dir: Path, config_path: Path, model, lengths: TokenLengths,
                *, head: str, seed: int = 0, steps: int = 0, force: bool = False, needs_model: bool = True) -> bool:
    """Train one run unless run_dir already holds it (force: train anyway). -> whether it trained.
    model: the `ModelFlops` of the steps estimate; steps: fixed steps (0: estimate them);
    needs_model: a later run starts from this one's model/, so a finished run without it retrains."""
    from unift.train.run import train

    config, per_step = build_run_config(s, stage, init, run_dir, config_path, model, lengths, seed=seed, steps=steps)
    if not force and finished(run_dir, config, needs_model):
        say(f"{head}: already trained in {run_dir}")
        return False
    if config.max_flops:
        plan = f"{config.max_flops:.3g} FLOPs, ~{config.steps} steps (~{per_step:.3g} FLOPs/step)"
    else:
        plan = f"{config.steps} steps (~{config.steps * per_step:.3g} FLOPs estimated)"
    say(f"{head}: {plan} -> {run_dir}")
    t0 = time.perf_counter()
    # a run of another config (or a killed one) in run_dir is replaced: compare decided to train
    config.overwrite = True
    train(config, config_path.parent)  # which hands the run's freed memory back when it ends
    say(f"{head}: done in {time.perf_counter() - t0:.0f}s; {last_eval_line(run_dir)}")
    return True


@dataclass
class BaseModel:
    """What the runs need to know of the initial model."""

    flops: Any
    """`unift.train.flops.ModelFlops`: body and head weights, for the steps estimate."""
    n_params: int
    tokenizer: Any


def base_key(s: Settings) -> dict:
    """What the base model's evaluation depends on, as every run evaluates (`shared_config`): a
    saved one with the same key (out/base/key.json) is reused."""
    ev = shared_config(s).eval
    return {"model": s.model, "variants": ev.variants, "n": ev.n, "split": ev.split, "k": ev.k, "viter": ev.viter,
            "max_new_tokens": ev.max_new_tokens, "stop_strings": list(ev.stop_strings or [])}


def evaluate_base(s: Settings, out: Path) -> BaseModel:
    """Evaluate the initial model once (step 0, 0 FLOPs) into out/base/evals.jsonl, as every run
    evaluates (`shared_config`: test sets, n, split, k, viter, length, stop strings, precision)."""
    from unift import models, precision
    from unift.evaluate import evaluate_variants
    from unift.train.flops import ModelFlops

    config = shared_config(s)
    model, tokenizer = models.load(s.model)
    dtype = precision.choose(config.precision, *precision.model_shapes(model.config)).rollout  # as the runs
    info = BaseModel(ModelFlops.from_model(model), models.num_parameters(model), tokenizer)
    base, key = out / "base", base_key(s)
    if (base / "evals.jsonl").exists() and (base / "key.json").exists() \
            and json.loads((base / "key.json").read_text()) == key:
        return info
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = evaluate_variants(model, tokenizer, s.task, key["variants"], key["n"], split=key["split"], k=key["k"],
                                viter=key["viter"], max_new_tokens=key["max_new_tokens"], dtype=dtype,
                                stop_strings=key["stop_strings"])
    with (base / "evals.jsonl").open("w") as f:
        for label, metrics in results.items():
            f.write(json.dumps({"step": 0, "flops": 0.0, "label": label, **metrics}) + "\n")
    (base / "key.json").write_text(json.dumps(key))
    line = ", ".join(f"{label} {100 * r['pass@1']:.1f}%" for label, r in results.items())
    say(f"[bold]base[/] {s.model}: pass@1 {line}  ({time.perf_counter() - t0:.0f}s)")
    del model
    gc.collect()
    release_freed_memory()
    return info


def protocol_text(s: Settings) -> str:
    """One line naming the protocol of a comparison."""
    if s.match == "steps":
        return (f"step-matched: every arm {s.steps} optimiser steps of {s.value('batch_size')} prompts, no FLOP "
                "limit (the UFT paper's protocol)")
    return (f"FLOP-matched: every arm {s.budget:.3g} training FLOPs, steps estimated from the budget "
            "(the SFT-vs-RL study's protocol)")


@dataclass
class PlannedRun:
    """One run of a comparison."""

    name: str
    """Its name: runs/NAME, configs/NAME.yaml (`run_name`)."""
    arm: str
    seed: int
    stage: Stage
    index: int
    """The stage's place in its arm (0: the first, starting from the comparison's model)."""
    settings: Settings
    """The arm's settings (`arm_settings`)."""
    init: str
    """The model it starts from: the comparison's, or the previous stage's run directory."""
    dir: str
    """Its run directory, relative to the comparison's."""
    steps: int
    """Fixed optimiser steps (0: estimated from the budget)."""
    needs_model: bool = True
    """A later stage of the arm starts from its model/ (every stage but the last)."""


def plan(s: Settings, arms: list[Arm], out: Path, own: Overrides | None = None) -> list[PlannedRun]:
    """Every run of a comparison in training order: seed-major (a first full set of arms early),
    each arm's stages in sequence, each stage starting from the one before. Fails, before any
    model loads, on settings or a run config no run could use."""
    from unift.config import build_config, validate

    per_arm = arm_settings(s, own or Overrides(), arms)
    steps = {arm.name: stage_steps(per_arm[arm.name], arm.stages) for arm in arms}
    runs = []
    for seed in s.seeds:
        for arm in arms:
            init = s.model
            for i, (stage, n) in enumerate(zip(arm.stages, steps[arm.name], strict=True)):
                name = run_name(arm.name, arm.stages, i, seed, s.seeds)
                runs.append(PlannedRun(name, arm.name, seed, stage, i, per_arm[arm.name], init, f"runs/{name}", n,
                                       needs_model=i < len(arm.stages) - 1))
                validate(build_config(raw_config(per_arm[arm.name], stage, init, out / runs[-1].dir, seed=seed,
                                                 steps=n), where=f"run {name}"))
                init = str(out / runs[-1].dir)
    return runs


def run_comparison(s: Settings, arms: list[Arm], out: Path, own: Overrides | None = None, *,
                   title: str | None = None, command: str = "", report: dict | None = None) -> Path:
    """Evaluate the base model, train every arm's stages in sequence once per seed, write the
    report. own: the --set items of single arms (`Overrides.arms`; the every-arm values of an
    `Overrides` must already be in `s`, as `settings_from_args` puts them).
    report: extra manifest entries for the report (e.g. figures, reference, notes).
    Returns the report's path."""
    from unift import tasks
    from unift.report import build_report

    own = own or Overrides()
    out.mkdir(parents=True, exist_ok=True)
    tasks.get(s.task, **s.variant)  # fail early on a bad variant
    for v in s.ood.values():
        tasks.get(s.task, **v)
    runs = plan(s, arms, out, own)
    base = evaluate_base(s, out)
    lengths = token_lengths(base.tokenizer, tasks.get(s.task, **s.variant), seed=s.seeds[0])
    what = f"{s.steps} steps" if s.match == "steps" else f"{s.budget:.3g} FLOPs"
    manifest = {
        "title": title or f"{s.task}: {', '.join(a.name for a in arms)} at {what}",
        "command": command,
        "task": s.task,
        "model": s.model,
        "n_params": base.n_params,
        "model_flops": {"body": base.flops.body, "head": base.flops.head},
        "match": s.match,
        "protocol": protocol_text(s),
        "steps": s.steps if s.match == "steps" else None,
        "budget": s.budget if s.match == "flops" else None,
        "seeds": list(s.seeds),
        "settings": dataclasses.asdict(s),
        "eval_variants": eval_variants(s),
        "distributions": distributions(s),
        "token_lengths": dataclasses.asdict(lengths),
        "base": "base",
        "reference": "500 steps of 256 prompts x 4 rollouts in the UFT paper's reference runs",
        **(report or {}),
        "arms": [_manifest_arm(arm, runs, s.seeds, own.arms.get(arm.name, ArmOverrides())) for arm in arms],
    }
    (out / "compare.json").write_text(json.dumps(manifest, indent=2) + "\n")

    retrained = False
    for done, run in enumerate(runs, 1):
        if run.index == 0:
            retrained = False
        head = f"[{done}/{len(runs)}] [bold]{run.name}[/] ({run.stage.preset})"
        # a retrained stage changes the start of the next ones: train them again too
        retrained |= train_stage(run.settings, run.stage, run.init, out / run.dir, out / "configs" / f"{run.name}.yaml",
                                 base.flops, lengths, head=head, seed=run.seed, steps=run.steps, force=retrained,
                                 needs_model=run.needs_model)
    return build_report(out)


def _manifest_arm(arm: Arm, runs: list[PlannedRun], seeds: list[int], own: ArmOverrides) -> dict:
    """An arm's manifest entry: its own --set items, and per seed its runs."""
    entry: dict[str, Any] = {"name": arm.name, **({"set": own.items} if own.items else {}), "seeds": []}
    for seed in seeds:
        chain = [r for r in runs if r.arm == arm.name and r.seed == seed]
        entry["seeds"].append({"seed": seed, "runs": [
            {"name": r.name, "dir": r.dir, "preset": r.stage.preset, "share": r.stage.share,
             **({"steps": r.steps} if r.steps else {})} for r in chain]})
    return entry


def last_eval_line(run_dir: Path) -> str:
    """The last evaluation of a run as one line (pass@1 per test set)."""
    path = run_dir / "evals.jsonl"
    if not path.exists():
        return "no evaluation"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return "no evaluation"
    last = max(r["step"] for r in rows)
    return "pass@1 " + ", ".join(f"{r['label']} {100 * r['pass@1']:.1f}%" for r in rows if r["step"] == last)
