"""Running a comparison: the base model's evaluation, one run config per stage, arm and seed,
training what is not trained yet, the manifest, the report.

    run_comparison(settings_for("countdown", match="steps", steps=50), arms_for(["sft", "uft"]),
                   Path("runs/compare-countdown"))
"""

from __future__ import annotations

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
    Overrides,
    Settings,
    Stage,
    arm_settings,
    distributions,
    eval_variants,
    split_steps,
    stop_strings,
)


def say(text: str) -> None:
    """A line on the console (rich markup)."""
    from rich.console import Console

    Console(highlight=False).print(text)


def _hint_nll(s: Settings, preset: str) -> dict:
    return {"params": {"c_nll": s.hint_nll}} if preset == "uft" and s.hint_nll is not None else {}


def _samples(preset: str) -> bool:
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


def raw_config(s: Settings, stage: Stage, init: str, run_dir: Path, *, seed: int, steps: int = 0) -> dict:
    """The YAML data of one run (before overrides and, under match=flops, the steps estimate).
    `s.stop_strings` must be resolved (a list)."""
    from unift.rollout.presets import merge

    stops = list(s.stop_strings or [])
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
            "stop_strings": stops,
            "viter": s.viter,
            "num_problems": s.num_problems,
        },
    }
    by_steps = s.match == "steps"
    evaluation = {
        "task": s.task,
        "variants": eval_variants(s),
        "n": s.eval_n,
        "split": s.eval_split,
        "k": s.eval_k,
        "viter": s.eval_viter,
        "max_new_tokens": s.eval_max_new_tokens or s.max_new_tokens,
        "every_flops": 0.0 if by_steps else s.budget / max(1, s.evals),
        "every_steps": math.ceil(s.steps / max(1, s.evals)) if by_steps else 0,
        "at_start": False,  # the base model is evaluated once, by `evaluate_base`
        "stop_strings": stops,
    }
    return {
        "model": {"name": init},
        "sources": [merge(merge(source, _hint_nll(s, stage.preset)), stage.source)],
        "optim": {"lr": s.lr, "schedule": s.schedule, "warmup_steps": s.warmup_steps,
                  "min_lr_ratio": s.min_lr_ratio},
        "steps": steps or 1,  # match=flops without fixed steps: estimated by `build_run_config`
        "max_flops": 0.0 if by_steps else s.budget * stage.share,
        "eval": evaluation,
        "max_length": s.max_length,
        "precision": s.precision,
        "gradient_checkpointing": _samples(stage.preset) if s.gradient_checkpointing is None
        else s.gradient_checkpointing,
        "seed": seed,
        "output_dir": str(run_dir),
        "progress": s.progress,
    }


def build_run_config(s: Settings, stage: Stage, init: str, run_dir: Path, path: Path, overrides: list[str],
                     model, lengths: TokenLengths, *, seed: int = 0, steps: int = 0):
    """The run's RunConfig (dotted overrides applied; presets by the source config itself), its
    `steps` sized from the budget unless fixed (`steps` > 0), written to `path` (`unift train
    path` re-runs it). -> (RunConfig, estimated FLOPs per step); model: a `ModelFlops`."""
    from unift.config import build_config, dump_config

    path.parent.mkdir(parents=True, exist_ok=True)
    config = build_config(raw_config(s, stage, init, run_dir, seed=seed, steps=steps), overrides, where=str(path))
    per_step = flops_per_step(config, model, lengths, s.rollout_fill)
    if not steps:
        config.steps = estimate_steps(config.max_flops, per_step)
    dump_config(config, path)
    return config, per_step


def finished(run_dir: Path, config) -> bool:
    """A finished run of the same config already lives in run_dir. The saved config.yaml is read
    back as a RunConfig, so a field added to RunConfig since (at its default) changes nothing."""
    from unift.config import ConfigError, build_config, differences, to_dict

    done = run_dir / "config.yaml"
    if not ((run_dir / "model").is_dir() and (run_dir / "metrics.jsonl").exists() and done.exists()):
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


def train_stage(s: Settings, stage: Stage, init: str, run_dir: Path, config_path: Path, overrides: list[str],
                model, lengths: TokenLengths, *, head: str, seed: int = 0, steps: int = 0,
                force: bool = False) -> bool:
    """Train one run unless run_dir already holds it (force: train anyway). -> whether it trained.
    model: the `ModelFlops` of the steps estimate; steps: fixed steps (0: estimate them)."""
    from unift.train.run import train

    config, per_step = build_run_config(s, stage, init, run_dir, config_path, overrides, model, lengths,
                                        seed=seed, steps=steps)
    if not force and finished(run_dir, config):
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
    train(config, config_path.parent)
    gc.collect()
    say(f"{head}: done in {time.perf_counter() - t0:.0f}s; {last_eval_line(run_dir)}")
    return True


@dataclass
class BaseModel:
    """What the runs need to know of the initial model."""

    flops: Any
    """`unift.train.flops.ModelFlops`: body and head weights, for the steps estimate."""
    n_params: int
    tokenizer: Any


def evaluate_base(s: Settings, out: Path) -> BaseModel:
    """Evaluate the initial model once (step 0, 0 FLOPs) into out/base/evals.jsonl, with the
    comparison's stop strings (`s.stop_strings`, resolved to a list)."""
    from unift import models, precision
    from unift.evaluate import evaluate_variants
    from unift.train.flops import ModelFlops

    model, tokenizer = models.load(s.model)
    dtype = precision.choose(s.precision, *precision.model_shapes(model.config)).rollout  # as the runs
    info = BaseModel(ModelFlops.from_model(model), models.num_parameters(model), tokenizer)
    base = out / "base"
    stops = list(s.stop_strings or [])
    key = {"model": s.model, "variants": eval_variants(s), "n": s.eval_n, "split": s.eval_split, "k": s.eval_k,
           "viter": s.eval_viter, "max_new_tokens": s.eval_max_new_tokens or s.max_new_tokens,
           "stop_strings": stops}
    if (base / "evals.jsonl").exists() and (base / "key.json").exists() \
            and json.loads((base / "key.json").read_text()) == key:
        return info
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = evaluate_variants(model, tokenizer, s.task, key["variants"], s.eval_n, split=s.eval_split,
                                k=s.eval_k, viter=s.eval_viter,
                                max_new_tokens=key["max_new_tokens"], dtype=dtype, stop_strings=stops)
    with (base / "evals.jsonl").open("w") as f:
        for label, metrics in results.items():
            f.write(json.dumps({"step": 0, "flops": 0.0, "label": label, **metrics}) + "\n")
    (base / "key.json").write_text(json.dumps(key))
    line = ", ".join(f"{label} {100 * r['pass@1']:.1f}%" for label, r in results.items())
    say(f"[bold]base[/] {s.model}: pass@1 {line}  ({time.perf_counter() - t0:.0f}s)")
    del model
    gc.collect()
    return info


def protocol_text(s: Settings) -> str:
    """One line naming the protocol of a comparison."""
    if s.match == "steps":
        return (f"step-matched: every arm {s.steps} optimiser steps of {s.batch_size} prompts, no FLOP limit "
                "(the UFT paper's protocol)")
    return (f"FLOP-matched: every arm {s.budget:.3g} training FLOPs, steps estimated from the budget "
            "(the SFT-vs-RL study's protocol)")


def run_comparison(s: Settings, arms: list[Arm], out: Path, overrides: list[str] | Overrides = (), *,
                   title: str | None = None, command: str = "", report: dict | None = None) -> Path:
    """Evaluate the base model, train every arm's stages in sequence once per seed, write the
    report. overrides: dotted RunConfig keys of every run, or `Overrides` (per-arm ones too).
    report: extra manifest entries for the report (e.g. figures, reference, notes).
    Returns the report's path."""
    from unift import tasks
    from unift.report import build_report

    if not isinstance(overrides, Overrides):
        overrides = Overrides(run=list(overrides))
    out.mkdir(parents=True, exist_ok=True)
    tasks.get(s.task, **s.variant)  # fail early on a bad variant
    for v in s.ood.values():
        tasks.get(s.task, **v)
    s = dataclasses.replace(s, stop_strings=stop_strings(s))
    per_arm = {name: (dataclasses.replace(a, stop_strings=stop_strings(a)), o)
               for name, (a, o) in arm_settings(s, overrides, arms).items()}
    steps = {arm.name: stage_steps(per_arm[arm.name][0], arm.stages) for arm in arms}  # fails early
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
        "arms": [],
    }
    for arm in arms:
        entry: dict[str, Any] = {"name": arm.name, "seeds": []}
        own = overrides.arms.get(arm.name)
        if own:
            entry["set"] = own.items
        for seed in s.seeds:
            runs = []
            for i, (stage, n) in enumerate(zip(arm.stages, steps[arm.name], strict=True)):
                name = run_name(arm.name, arm.stages, i, seed, s.seeds)
                runs.append({"name": name, "dir": f"runs/{name}", "preset": stage.preset, "share": stage.share,
                             **({"steps": n} if n else {})})
            entry["seeds"].append({"seed": seed, "runs": runs})
        manifest["arms"].append(entry)
    (out / "compare.json").write_text(json.dumps(manifest, indent=2) + "\n")

    total = sum(len(a.stages) for a in arms) * len(s.seeds)
    done = 0
    for seed in s.seeds:  # seed-major: a first full set of arms early
        for arm, entry in zip(arms, manifest["arms"], strict=True):
            sa, run_overrides = per_arm[arm.name]
            chain = next(c for c in entry["seeds"] if c["seed"] == seed)
            init, retrained = s.model, False
            for stage, run, n in zip(arm.stages, chain["runs"], steps[arm.name], strict=True):
                done += 1
                run_dir = out / run["dir"]
                head = f"[{done}/{total}] [bold]{run['name']}[/] ({stage.preset})"
                # a retrained stage changes the start of the next ones: train them again too
                retrained |= train_stage(sa, stage, init, run_dir, out / "configs" / f"{run['name']}.yaml",
                                         run_overrides, base.flops, lengths, head=head, seed=seed, steps=n,
                                         force=retrained)
                init = str(run_dir)
    return build_report(out)


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
