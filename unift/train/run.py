"""`unift train CONFIG [key=value ...]`: set up a run from its config, loop over steps, save.

The run directory holds config.yaml (resolved), metrics.jsonl, samples.jsonl, tb/ (TensorBoard,
unless report_to leaves it out; wandb/ and mlflow.db when report_to names them), checkpoint.pt
(resumable; atomic), model/ (the final model or LoRA adapter, safetensors; a PPO run's value
head beside it, `value_head.safetensors`) and, written last, finished.json (the last step and
the run's FLOPs: it ended normally).
One run at a time holds it (`.lock`); a directory holding another run is refused unless
resume=true (same config, safe settings aside) or overwrite=true (docs/RELIABILITY.md).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import math
import os
import random
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from unift import __version__, models, precision
from unift.config import (
    ConfigError,
    HintSpec,
    RolloutSpec,
    RunConfig,
    UniftWarning,
    build_config,
    differences,
    dump_config,
    load_config,
    to_dict,
    validate,
)
from unift.data.mixture import Stream, shard
from unift.data.records import read_jsonl
from unift.data.sources import load_records
from unift.memory import release_freed_memory, retain_freed_memory
from unift.rollout.hints import HintSchedule, hint_steps
from unift.train import checkpoint, losses
from unift.train.distributed import Dist, init
from unift.train.evals import Evaluator
from unift.train.flops import ModelFlops
from unift.train.metrics import MetricsWriter, open_step_log
from unift.train.optim import adamw
from unift.train.step import Source, draw, train_step
from unift.train.trackers import one_progress_display


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


SCHEDULES = ("cosine", "constant", "linear", "hold-cosine")


def lr_lambda(step: int, *, warmup: int, total: int, schedule: str, min_ratio: float = 0.0,
              hold: int = 0) -> float:
    """LR multiplier at 0-based `step`: linear warm-up, then cosine / linear decay to min_ratio
    at the last step, or constant. hold-cosine: constant until step `hold` (the hint phase's
    T_hint), then cosine over the remaining steps."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    start = warmup
    if schedule == "hold-cosine":
        if step < hold:
            return 1.0
        start, schedule = max(warmup, hold), "cosine"
    progress = min(1.0, (step - start) / max(1, total - 1 - start))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return min_ratio + (1 - min_ratio) * (1 - progress)
    raise ValueError(f"unknown schedule {schedule!r}: {' | '.join(SCHEDULES)}")


def hold_steps(config: RunConfig) -> int:
    """Steps with hints of the first task source (the hold of `hold-cosine`), else 0."""
    task = next((sc for sc in config.sources if sc.kind == "task" and sc.rollout.hint.schedule != "none"), None)
    return hint_steps(task.rollout.hint.T_hint, config.steps) if task else 0


def hint_schedule(spec: HintSpec) -> HintSchedule:
    """A task source's `rollout.hint` settings as the rollout stage's `HintSchedule`."""
    return HintSchedule(spec.schedule, spec.p_low, spec.p_high, spec.T_hint, spec.L, spec.stages)


def rollout_args(spec: RolloutSpec) -> dict:
    """A task source's `rollout:` settings as `TaskRollout`'s keyword arguments (its sections
    flattened; `num_problems` and `backend` choose the problems and the engine, here)."""
    prefix, gate, question = spec.prefix, spec.gate, spec.question_hint
    return dict(num_generations=spec.num_generations, max_new_tokens=spec.max_new_tokens,
                temperature=spec.temperature, top_p=spec.top_p, stop_strings=spec.stop_strings,
                hints=hint_schedule(spec.hint), policy_gradient=spec.policy_gradient, ppo_epochs=spec.ppo_epochs,
                mini_batches=spec.mini_batches, scale_rewards=spec.scale_rewards, viter=spec.viter,
                dynamic_sampling=spec.dynamic_sampling, max_resample_batches=spec.max_resample_batches,
                expert_per_group=spec.expert.per_group, expert_share=spec.expert.share, prefix_rows=prefix.rows,
                prefix_schedule=(prefix.ratio_start, prefix.ratio_end, prefix.T), gate=gate.mode,
                gate_max_correct=gate.max_correct, gate_buffer_size=gate.buffer_size,
                question_hint_shares=list(question.p), question_hint_max_correct=question.hard_max_correct)


def _resolve(path: str, config_dir: Path) -> Path:
    """A data path as given (relative to the working directory), else relative to the config."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else config_dir / p


def build_task_source(config: RunConfig, i: int, policy, tokenizer, engines: dict, config_dir: Path,
                      rollout_dtype: str = "auto", problems: list | None = None, value_head=None,
                      dist: Dist | None = None) -> Source:
    """A task source: its problem stream, and the rollout stage with a (shared) engine; the
    rollout stage scores pi_old (and V_old with PPO's `value_head`) of later mini-batches, adds
    the source's reward functions, and refills dynamic sampling's groups from the stream."""
    from unift import tasks
    from unift.rollout.engine import make_engine
    from unift.rollout.task_source import TaskRollout

    sc = config.sources[i]
    if sc.task is None:
        raise ValueError(f"sources.{i}: a task source needs `task` (one of {tasks.names()})")
    task = tasks.get(sc.task, **sc.variant)
    spec = sc.rollout
    if spec.policy_gradient and spec.backend not in engines:
        engines[spec.backend] = make_engine(spec.backend, policy, tokenizer, dtype=rollout_dtype)
    if problems is not None:
        pass
    elif sc.path:  # prompt-only RL records (`unift data TASK --kind rl`): their "problem" column
        problems = read_problems(_resolve(sc.path, config_dir), config.max_record_chars)
    else:
        problems = task.problems(spec.num_problems, seed=config.seed, split="train")
    dist = dist or Dist()
    stream = Stream(problems, config.seed, i)
    rollout = TaskRollout(task, tokenizer, engines.get(spec.backend), seed=config.seed * 1000 + i,
                          flops=ModelFlops.from_model(policy) if policy is not None else None,
                          score=functools.partial(_score, policy, config.precision, value_head=value_head),
                          rewards=_reward_funcs(sc, config_dir),
                          refill=lambda: shard(stream.take(sc.batch_size * spec.mini_batches), dist.rank, dist.world),
                          global_sum=dist.sum, **rollout_args(spec))
    return Source(sc.name or sc.task, "task", losses.get(sc.objective, "task"), stream,
                  sc.weight, sc.batch_size, sc.beta, dict(sc.params), rollout)


def _reward_funcs(sc, config_dir: Path):
    """A task source's reward terms beside its verifier (`unift.rollout.rewards`), or None when
    the verifier's reward is used as it is."""
    from unift.rollout.rewards import RewardFuncs

    if not sc.reward_funcs and sc.task_reward_weight == 1.0:
        return None
    return RewardFuncs(sc.reward_funcs, sc.reward_weights, sc.task_reward_weight, search=(config_dir,))


def _score(policy, precision: str, batch, value_head=None):
    """Log-probs of `batch` under the policy as it is, without gradient (pi_old of a mini-batch;
    V_old with a value head). The batch moves to the policy's device."""
    from unift.train.logprobs import token_logps
    from unift.train.step import autocast, move_tensors

    device = next(policy.parameters()).device
    with torch.no_grad(), autocast(precision, device.type):
        return token_logps(policy, move_tensors(batch, device), value_head=value_head)


def read_problems(path: Path, max_chars: int) -> list[dict]:
    return [_problem(row, where) for where, row in read_jsonl(path, max_chars)]


def _problem(row, where: str) -> dict:
    if not isinstance(row, dict) or not isinstance(row.get("problem"), dict):
        raise ValueError(f"{where}: field 'problem' (an object) is missing; export with `unift data --kind rl`")
    return row["problem"]


def load_data(config: RunConfig, config_dir: Path) -> dict[int, list]:
    """Every source's file, read and validated (records; an RL source's problems), by source
    index: errors name the file and line before the model loads. The `jsonl` task's files are
    read as JSONL here too (the task itself reports bad JSON without the line)."""
    data = {}
    for i, sc in enumerate(config.sources):
        if sc.kind != "task":
            if sc.path is None and sc.dataset is None:
                raise ConfigError(f"sources.{i}.path: a {sc.kind} source needs a data file (or a dataset from Python)")
            data[i] = load_records(sc.path and _resolve(sc.path, config_dir), sc.kind, config.max_record_chars,
                                   dataset=sc.dataset, name=f"sources.{i}.dataset", assistant_turns=sc.assistant_turns)
        elif sc.path:
            data[i] = read_problems(_resolve(sc.path, config_dir), config.max_record_chars)
    variants = [sc.variant for sc in config.sources if sc.task == "jsonl"]
    if config.eval.task == "jsonl":
        variants += list(config.eval.variants.values()) or [{}]
    for variant in variants:
        if isinstance(variant.get("path"), str):
            for _ in read_jsonl(variant["path"], config.max_record_chars):
                pass
    return data


def check_sources(config: RunConfig, config_dir: Path = Path(".")) -> None:
    """What a source names, looked up before the model loads: the objective for its kind, the
    task (a user's `pkg.module:MyTask` imported from the working directory or `config_dir`) and
    its variant, the reward functions (each error names the key); beta = 0 warned about."""
    from unift import tasks

    for i, sc in enumerate(config.sources):
        try:
            losses.get(sc.objective, sc.kind)
        except (KeyError, ValueError) as e:
            raise ConfigError(f"sources.{i}.objective: {e.args[0]}") from None
        if sc.kind == "task":
            if sc.task is None:
                raise ConfigError(f"sources.{i}.task: a task source needs `task` (one of {', '.join(tasks.names())})")
            try:
                tasks.task_class(sc.task, search=(config_dir,))
                tasks.get(sc.task, **sc.variant)
            except (KeyError, ValueError, TypeError) as e:
                raise ConfigError(f"sources.{i}.task: {e.args[0] if e.args else e}") from None
            try:
                _reward_funcs(sc, config_dir)
            except ValueError as e:
                raise ConfigError(f"sources.{i}.{e}") from None
        if sc.beta == 0 and sc.objective not in BETA_FREE:
            # a warning, not an error: with TRL's sft_weight a beta-0 DPO is plain SFT on purpose
            warnings.warn(f"sources.{i}.beta = 0: objective {sc.objective} is a function of beta * (log pi - "
                          "log pi_ref), so its gradient is 0 (only extra terms such as sft_weight train)",
                          UniftWarning, stacklevel=2)
    if config.eval.task is not None:
        for label, variant in (config.eval.variants or {"default": {}}).items():
            try:
                tasks.task_class(config.eval.task, search=(config_dir,))
                tasks.get(config.eval.task, **variant)
            except (KeyError, ValueError, TypeError) as e:
                raise ConfigError(f"eval.variants.{label}: {e.args[0] if e.args else e}") from None


BETA_FREE = ("sft", "grpo")  # objectives whose loss does not read beta (diagnostics only)


def build_sources(config: RunConfig, config_dir: Path, policy=None, tokenizer=None,
                  rollout_dtype: str = "auto", data: dict[int, list] | None = None, value_head=None,
                  dist: Dist | None = None) -> list[Source]:
    """Every source of the mixture; task sources share one rollout engine per backend, whose
    weights and KV cache are in `rollout_dtype`. data: `load_data`'s result (else read here)."""
    data = load_data(config, config_dir) if data is None else data
    sources = []
    engines: dict = {}
    for i, sc in enumerate(config.sources):
        if sc.kind == "task":
            sources.append(build_task_source(config, i, policy, tokenizer, engines, config_dir, rollout_dtype,
                                             problems=data.get(i), value_head=value_head, dist=dist))
            continue
        objective = losses.get(sc.objective, sc.kind)
        records = data[i]
        sources.append(Source(sc.name or sc.kind, sc.kind, objective, Stream(records, config.seed, i),
                              sc.weight, sc.batch_size, sc.beta, dict(sc.params)))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique: {names}")
    return sources



def build_evaluator(config: RunConfig, tokenizer, sources: list[Source], run_dir: Path, **kwargs) -> Evaluator:
    """The run's held-out evaluation (`config.eval`), sharing a task source's rollout engine if
    there is one; kwargs: `Evaluator`'s resume_step, engine_dtype, track."""
    from unift import tasks

    ev = config.eval
    variants = {label: tasks.get(ev.task, **variant) for label, variant in (ev.variants or {"default": {}}).items()}
    engine = next((s.rollout.engine for s in sources if s.rollout is not None and s.rollout.engine), None)
    return Evaluator(variants, tokenizer, run_dir, n=ev.n, split=ev.split, k=ev.k, viter=ev.viter,
                     max_new_tokens=ev.max_new_tokens, stop_strings=ev.stop_strings, every_steps=ev.every_steps,
                     every_flops=ev.every_flops, engine=engine, **kwargs)

def build_policy(config: RunConfig, device="cpu"):
    """The policy (fp32, or bf16 for bf16-master; LoRA if asked) on `device`, its tokenizer, and
    the precision the run uses there (`precision: auto` resolved by measuring this CPU, or by
    what the GPU supports)."""
    if config.precision not in precision.PRECISIONS:
        raise ValueError(f"precision: {config.precision!r} is not one of {', '.join(precision.PRECISIONS)}")
    model, tokenizer = load_start(config.model.name)
    choice = precision.choose(config.precision, *precision.model_shapes(model.config), device=device)
    if choice.train == "bf16-master":
        model = model.to(torch.bfloat16)
    if config.model.lora is not None:
        lora = config.model.lora
        model = models.apply_lora(model, lora.r, lora.alpha, lora.dropout, lora.target_modules)
        if base := _adapter_base(config.model.name, model):
            model.peft_config["default"].base_model_name_or_path = base
    return model.to(device), tokenizer, choice


def final_model(config: RunConfig, policy):
    """What model/ holds: the policy (a LoRA run: its adapter), but merged into full weights when
    the run's adapters sit on a previous LoRA run's merged weights, which no directory holds (an
    adapter naming that run as its base loads wrongly, without an error, in PEFT's
    AutoPeftModelForCausalLM). Merging changes `policy` in place: call it last."""
    if models.is_peft(policy) and lora_adapter(config.model.name) is not None:
        return policy.merge_and_unload()
    return policy


def lora_adapter(spec: str) -> Path | None:
    """The adapter directory when `spec` is a LoRA run's directory (or its model/), else None."""
    path = Path(spec).expanduser()
    return next((d for d in (path / "model", path) if (d / "adapter_config.json").is_file()), None)


def load_start(spec: str):
    """(model, tokenizer) a run starts from: `models.load(spec)`, except that a LoRA run's adapter
    is merged into its base (loaded the same way, so chains of LoRA runs work). The merged network
    is that run's final policy, so it is this run's start and its pi_ref, and the run's own
    `model.lora` decides what trains (a PEFT model kept as loaded would train the old adapter and
    make pi_ref the original base, the adapter disabled)."""
    adapter = lora_adapter(spec)
    if adapter is None:
        return models.load(spec)
    base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"model.name: {adapter} is a LoRA adapter that names no base model "
                          "(base_model_name_or_path in its adapter_config.json)")
    from peft import PeftModel

    model, tokenizer = load_start(base)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return merged.requires_grad_(True), tokenizer  # PEFT froze the base; `models.load` gives all trainable


def _adapter_base(spec: str, model) -> str | None:
    """What a LoRA adapter's config names as its base where PEFT's default is no use: the spec
    for `tiny` (PEFT finds no name), an absolute path for a relative model directory (the run
    may be loaded from anywhere). None: keep PEFT's."""
    base = model.peft_config["default"].base_model_name_or_path
    if not base:
        return spec
    return str(Path(base).resolve()) if not Path(base).is_absolute() and Path(base).is_dir() else None


def build_value_head(config: RunConfig, policy):
    """PPO's critic (`models.ValueHead`, docs/methods.md section 9) when a source's objective
    reads values (`adv_estimator: gae`), else None. One head serves every such source."""
    if not any(losses.get(sc.objective, sc.kind).wants_values(sc.params) for sc in config.sources):
        return None
    return models.ValueHead.for_policy(policy)


def _agree(choice: precision.Choice, dist: Dist) -> precision.Choice:
    """One precision for every process: each measured on its own, and a close call could differ;
    bf16 (training or rollouts) only where every process picked it."""
    if dist.world == 1:
        return choice
    train_bf16 = dist.sum(float(choice.train == "bf16")) == dist.world
    rollout_bf16 = dist.sum(float(choice.rollout == "bfloat16")) == dist.world
    train = choice.train if choice.train != "bf16" or train_bf16 else "fp32"
    return precision.Choice(train, "bfloat16" if rollout_bf16 else "float32",
                            choice.reason + ("" if train == choice.train else "; fp32 as another process chose"))


def diagnostics_due(config: RunConfig, step: int) -> bool:
    """Whether step `step` (0-based) runs the diagnostics-only reference pass
    (`RunConfig.diagnostics_every`). A resumed run keeps the same steps, so its rows match an
    uninterrupted run's."""
    if not config.diagnostics:
        return False
    return step == 0 or (step + 1) % config.diagnostics_every == 0 or step + 1 == config.steps


def save_model(model, tokenizer, out: Path, value_head=None) -> None:
    """Final model (or LoRA adapter) as safetensors plus tokenizer, swapped in atomically; PPO's
    value head beside it in its own file (`models.VALUE_HEAD`: the model loads as it is). A
    failed write (a full disk) removes the partial directory and names `out`."""
    tmp = Path(tempfile.mkdtemp(prefix=checkpoint.MODEL_TMP_PREFIX, dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if value_head is not None:
            value_head.save(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.filename is None:  # the writers' errors name no file
            raise OSError(e.errno, f"{e.strerror or e}; no model was written (the final checkpoint is kept: "
                          "resume=true writes the model from it)", str(out)) from e
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


class NonFiniteError(FloatingPointError):
    """A step whose loss, gradient norm or updated weights are NaN or infinite: the run stops
    without saving (the last good checkpoint stays)."""


# settings a resumed run may change: none of them alters the weights' trajectory (max_flops and
# max_flops_fill only where the run stops, gradient checkpointing only memory; the data cap only
# admits or refuses)
RESUME_SAFE = ("eval", "save_every", "progress", "output_dir", "diagnostics", "diagnostics_every", "resume",
               "overwrite", "max_flops", "max_flops_fill", "gradient_checkpointing", "max_record_chars", "report_to",
               "samples_every")


def train(config: RunConfig, config_dir: Path = Path("."), dist: Dist | None = None) -> Path:
    """Check the config and data, claim output_dir, then run (`_run`). Everything that can be
    checked without the model is checked first. While unift's progress bar shows, the libraries'
    own bars stay off (`trackers.one_progress_display`). When the run ends, however it ends, the
    memory it freed goes back to the kernel (`memory.release_freed_memory`), so the next run in
    the same process does not start from this one's peak heap."""
    try:
        with one_progress_display(config.progress):
            return _train(config, config_dir, dist)
    finally:
        gc.collect()  # the run's model and optimiser, held by reference cycles, are freed first
        release_freed_memory()


def _train(config: RunConfig, config_dir: Path, dist: Dist | None) -> Path:
    validate(config)
    check_sources(config, config_dir)
    data = load_data(config, config_dir)
    dist = dist or init(config.device)
    run_dir = make_run_dir(config.output_dir)
    lock = checkpoint.RunLock(run_dir).acquire() if dist.main else None
    try:
        ckpt = resume_point(config, run_dir, dist)
        return _run(config, config_dir, dist, run_dir, ckpt, data)
    finally:
        if lock is not None:
            lock.release()


def make_run_dir(output_dir: str) -> Path:
    run_dir = Path(output_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"output_dir: {run_dir} exists and is not a directory") from None
    except OSError as e:  # a file on the path (NotADirectoryError), read-only, ...
        raise ConfigError(f"output_dir: cannot create {run_dir}: {e.strerror or e}") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"output_dir: {run_dir} is not writable")
    return run_dir


def read_back(saved: dict, where: str) -> dict:
    """A saved config with the fields added since filled in at their defaults (so they do not
    count as changes), every saved value kept as saved; as saved when it no longer builds."""
    try:
        filled = requested(build_config(saved, where=where))
    except (ConfigError, TypeError, ValueError):
        return saved

    def overlay(default, kept):
        if isinstance(default, dict) and isinstance(kept, dict):
            return {**default, **{k: overlay(default.get(k), v) for k, v in kept.items()}}
        if isinstance(default, list) and isinstance(kept, list) and len(default) == len(kept):
            return [overlay(d, k) for d, k in zip(default, kept, strict=True)]
        return kept

    return overlay(filled, saved)


def requested(config: RunConfig) -> dict:
    """The config as given (before `precision: auto` is resolved), in plain types: what a
    checkpoint stores for `resume_point` to compare."""
    return json.loads(json.dumps(to_dict(config), default=str))


def resume_point(config: RunConfig, run_dir: Path, dist: Dist) -> dict | None:
    """The checkpoint to continue from, or None for a fresh start; called holding the lock.
    Removes killed runs' temporaries; refuses a directory holding a run unless resume (with a
    config that differs only in `RESUME_SAFE` settings) or overwrite (which clears it)."""
    if dist.main:
        count, size = checkpoint.remove_stale(run_dir)
        if count:
            warnings.warn(f"{run_dir}: removed {count} temporary file(s) left by an interrupted run "
                          f"({size / 1e6:.1f} MB)", UniftWarning, stacklevel=2)
    present = checkpoint.previous_run(run_dir)
    if config.overwrite:
        if dist.main:
            checkpoint.clear_run(run_dir)
        return None
    if not config.resume:
        if present:
            raise checkpoint.RunDirError(
                f"output_dir: {run_dir} holds a run ({', '.join(present)}); resume=true continues it, "
                "overwrite=true replaces it, or choose another output_dir")
        return None
    ckpt = checkpoint.load(run_dir)
    current, where = requested(config), run_dir / checkpoint.NAME
    saved = ckpt["extra"].get("config") if ckpt else None
    if saved is None and (run_dir / "config.yaml").exists():  # older checkpoints, or none yet
        where = run_dir / "config.yaml"
        saved = yaml.safe_load(where.read_text())
    if isinstance(saved, dict):
        saved = read_back(saved, str(where))
    if where.name == "config.yaml" and isinstance(saved, dict) and current.get("precision") == "auto":
        saved.pop("precision", None)  # config.yaml holds what auto resolved to
        current.pop("precision", None)
    if isinstance(saved, dict) and (changes := differences(saved, current, ignore=RESUME_SAFE)):
        raise checkpoint.RunDirError(
            f"resume: settings changed since {where}: {', '.join(changes)}; they would alter the run "
            f"(only {', '.join(RESUME_SAFE)} may change): undo them, or start a new run "
            "(another output_dir, or overwrite=true)")
    return ckpt


def _run(config: RunConfig, config_dir: Path, dist: Dist, run_dir: Path, ckpt: dict | None,
         data: dict[int, list]) -> Path:
    asked = requested(config)
    retain_freed_memory()
    if dist.world > 1:  # share the cores between processes
        torch.set_num_threads(max(1, torch.get_num_threads() // dist.world))
    seed_everything(config.seed)

    policy, tokenizer, choice = build_policy(config, dist.device)  # pi_ref, value head, engine follow it
    choice = _agree(choice, dist)
    if dist.main and config.progress:
        print(f"unift: {dist.describe()}; {choice.reason}", file=sys.stderr)
    config = dataclasses.replace(config, precision=choice.train)  # what the steps and config.yaml use
    reference = models.ReferencePolicy(policy)
    if config.gradient_checkpointing:
        policy.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    value_head = build_value_head(config, policy)
    sources = build_sources(config, config_dir, policy, tokenizer, rollout_dtype=choice.rollout, data=data,
                            value_head=value_head, dist=dist)
    params = [p for p in policy.parameters() if p.requires_grad]
    params += list(value_head.parameters()) if value_head is not None else []
    opt = config.optim
    optimizer = adamw(params, precision=config.precision, lr=opt.lr, betas=opt.betas,
                      weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        functools.partial(lr_lambda, warmup=opt.warmup_steps, total=config.steps, schedule=opt.schedule,
                          min_ratio=opt.min_lr_ratio, hold=hold_steps(config)),
    )
    # everything with a position or an RNG that a resumed run must continue from
    streams = {s.name: s.stream for s in sources}
    streams.update({f"{s.name}/rollout": s.rollout for s in sources if s.rollout is not None})

    start = 0
    if ckpt is not None:
        start = checkpoint.restore(ckpt, model=policy, optimizer=optimizer, scheduler=scheduler, streams=streams,
                                   where=str(run_dir / checkpoint.NAME), value_head=value_head)
    if dist.main:
        # a resumed run is not finished until it ends again (overwrite=true has cleared it already)
        (run_dir / checkpoint.FINISHED).unlink(missing_ok=True)
        dump_config(config, run_dir / "config.yaml")
    writer = MetricsWriter(run_dir, resume_step=start if ckpt else None, report_to=config.report_to,
                           params=asked) if dist.main else None

    progress = _progress(config, start) if dist.main and config.progress else None
    size = ModelFlops.from_model(policy)
    flops = float(ckpt["extra"].get("flops", 0.0)) if ckpt else 0.0
    evaluator = build_evaluator(config, tokenizer, sources, run_dir, resume_step=start if ckpt else None,
                                engine_dtype=choice.rollout, track=writer.track_eval) \
        if dist.main and config.eval.task else None
    if evaluator and not ckpt and config.eval.at_start:
        evaluator(policy, step=0, flops=0.0)
    latest: dict = {}  # each metric's latest value (diagnostics-only keys come every few steps)
    samples = open_step_log(run_dir / "samples.jsonl", start if ckpt else None) if dist.main else None
    for step in range(start, last_step(config)):
        if config.max_flops and over_budget(flops, step, config.max_flops):
            break
        micro = [draw(sources, tokenizer, config.max_length, dist, step=step, total_steps=config.steps,
                      policy=policy) for _ in range(opt.grad_accum)]
        metrics = train_step(policy, reference, micro, optimizer, scheduler, precision=config.precision,
                             grad_clip=opt.grad_clip, dist=dist, size=size,
                             diagnostics_ref=diagnostics_due(config, step), value_head=value_head)
        flops += metrics.pop("flops")  # the work done: docs/flops.md (unift.train.flops)
        row = {"step": step + 1, **metrics, **_task_metrics(metrics, sources), "flops": flops}
        latest.update(row)
        if writer:
            writer.write(row)
            if samples_due(step, config.samples_every, config.steps):
                _write_samples(samples, step + 1, micro)
        if problem := non_finite(metrics, sources):
            if progress:
                progress.close()
            raise NonFiniteError(_stopped(step + 1, problem, run_dir))
        if progress:
            progress.update(row)
        if evaluator and evaluator.due(step + 1, flops):
            evaluator(policy, step=step + 1, flops=flops)
        if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < config.steps:
            if dist.main:
                _check_weights(policy, step + 1, run_dir, value_head)
                checkpoint.save(run_dir, step=step + 1, model=policy, optimizer=optimizer,
                                scheduler=scheduler, streams=streams, extra={"flops": flops, "config": asked},
                                value_head=value_head)
    if progress:
        progress.close()
    if evaluator and latest and evaluator.last_step != latest["step"]:
        evaluator(policy, step=latest["step"], flops=flops)
    if dist.main:
        _check_weights(policy, latest.get("step", start), run_dir, value_head)
        checkpoint.save(run_dir, step=latest.get("step", start), model=policy, optimizer=optimizer,
                        scheduler=scheduler, streams=streams, extra={"flops": flops, "config": asked},
                        value_head=value_head)
        save_model(final_model(config, policy), tokenizer, run_dir / "model", value_head)
        writer.close()
        samples.close()
        checkpoint.mark_finished(run_dir, step=latest.get("step", start), flops=flops, version=__version__)
        _summary(run_dir, latest, sources)
    return run_dir


def non_finite(metrics: dict, sources: list[Source]) -> str:
    """What is NaN or infinite in a step's metrics ('' if nothing): a source's loss, the
    weighted loss, or the gradient norm."""
    bad = [f"source {s.name}: loss {metrics[f'{s.name}/loss']}" for s in sources
           if not math.isfinite(metrics.get(f"{s.name}/loss", 0.0))]
    if not bad and not math.isfinite(metrics["loss"]):
        bad.append(f"the weighted loss is {metrics['loss']}")
    if not math.isfinite(metrics.get("grad_norm", 0.0)):
        bad.append(f"gradient norm {metrics['grad_norm']}")
    return ", ".join(bad)


def _stopped(step: int, problem: str, run_dir: Path) -> str:
    kept = f"{run_dir / checkpoint.NAME} is kept" if (run_dir / checkpoint.NAME).exists() \
        else "no checkpoint had been written"
    return (f"step {step}: non-finite values ({problem}); stopped without saving a model or checkpoint "
            f"({kept}); lower optim.lr or check the data")


def _check_weights(policy, step: int, run_dir: Path, value_head=None) -> None:
    """Refuse to save weights that an update made NaN or infinite (a finite loss and gradient
    norm do not rule it out: lr 1e30 overflows the update)."""
    head = value_head.named_parameters(prefix="value_head") if value_head is not None else []
    for name, p in [*policy.named_parameters(), *head]:
        if p.requires_grad and not torch.isfinite(p).all():
            raise NonFiniteError(_stopped(step, f"the updated weight {name}", run_dir))


def last_step(config: RunConfig) -> int:
    """Where the step loop ends at the latest: `steps`, or twice that when the run fills its FLOP
    budget past them (`max_flops_fill`; the budget stops it first, `over_budget`)."""
    return 2 * config.steps if config.max_flops and config.max_flops_fill else config.steps


def over_budget(flops: float, step: int, max_flops: float) -> bool:
    """Whether a run that has used `flops` in `step` steps stops here: at the step boundary
    nearest `max_flops` (so runs of any step size land within half a step of it; the report
    shows each run's actual FLOPs)."""
    if flops >= max_flops:
        return True
    return step > 0 and flops + 0.5 * flops / step > max_flops


def samples_due(step: int, every: int, total: int) -> bool:
    """Whether step `step` (0-based) writes samples.jsonl rows (`RunConfig.samples_every`): the
    first, every `every`-th and the last step, as the diagnostics pass; never for 0."""
    return every > 0 and (step == 0 or (step + 1) % every == 0 or step + 1 == total)


def _write_samples(f, step: int, micro: list) -> None:
    """A few decoded rollouts of the step (its first micro-batch) to samples.jsonl."""
    for sb in micro[0]:
        for sample in sb.samples:
            f.write(json.dumps({"step": step, "source": sb.source.name, **sample}) + "\n")
    f.flush()


RL_KEYS = ("reward_mean", "correct_rate", "success_rate", "hint_fraction", "hint_tokens_mean", "hint_p",
           "kl", "entropy", "completion_tokens_mean", "rollout_tokens", "rollout_tokens_per_s", "nll_tokens",
           "full_hint_eos_p")


def _task_metrics(metrics: dict, sources: list[Source]) -> dict:
    """The first task source's RL metrics also under their plain names (`reward_mean`,
    `reward_by_k/2`, `reward/<function>`, `dynamic/dropped_groups`, ...)."""
    task = next((s for s in sources if s.kind == "task"), None)
    if task is None:
        return {}
    prefix = f"{task.name}/"
    return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)
            and (k[len(prefix):] in RL_KEYS
                 or k[len(prefix):].startswith(("reward_by_k/", "correct_by_k/", "reward/", "dynamic/")))}


class _progress:
    """A rich progress bar with live loss and tokens/s (rank 0 only)."""

    def __init__(self, config: RunConfig, start: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]}  {task.fields[tps]} tok/s"),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task("train", total=config.steps, completed=start, loss="-", tps="-")
        self.bar.start()

    def update(self, row: dict) -> None:
        self.bar.update(self.task, completed=row["step"], loss=f"{row['loss']:.4f}",
                        tps=f"{row['tokens_per_s']:.0f}")

    def close(self) -> None:
        self.bar.stop()


SUMMARY_COLUMNS = (  # (header, metric key under the source's name); shown when any source has it
    ("loss", "loss"), ("reward (demo)", "rewards/implicit"), ("chosen", "rewards/chosen"),
    ("rejected", "rewards/rejected"), ("margin", "rewards/margin"), ("accuracy", "rewards/accuracy"),
    ("task reward", "reward_mean"), ("correct", "correct_rate"), ("hint p", "hint_p"), ("KL(pi||ref)", "kl/ref"),
)


def _summary(run_dir: Path, latest: dict, sources: list[Source]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = [(h, k) for h, k in SUMMARY_COLUMNS if any(f"{s.name}/{k}" in latest for s in sources)]
    table = Table(title=f"implicit-reward diagnostics, latest values up to step {latest.get('step')}")
    for header in ("source", "objective", *(h for h, _ in columns)):
        table.add_column(header)
    names = {id(v): k for k, v in losses.OBJECTIVES.items()}
    for s in sources:
        cells = [latest.get(f"{s.name}/{k}") for _, k in columns]
        table.add_row(s.name, names[id(s.objective)], *("-" if c is None else f"{c:.4f}" for c in cells))
    console = Console(width=max(120, Console().width))
    console.print(table)
    console.print(f"run directory: {run_dir}\n  metrics: {run_dir / 'metrics.jsonl'}\n  model:   {run_dir / 'model'}")


USAGE = "usage: unift train CONFIG.yaml [key=value ...] [--debug]"


def _help() -> str:
    """`unift train --help`: what the command takes and the config's defaults, read from RunConfig."""
    from unift.catalog import config_keys

    defaults = [f"  {key} = {default}" for key, default, _ in config_keys(RunConfig)
                if not key.startswith(("sources.", "eval."))]
    return (f"{USAGE}\n\n"
            "Train on the mixture of sources in CONFIG (see configs/). Overrides use dotted keys,\n"
            "e.g. steps=20 optim.lr=1e-5 sources.0.weight=0.5 model.name=tiny resume=true\n"
            "Relative paths: output_dir and model.name from the working directory (as in TRL); data\n"
            "files from the working directory, else next to CONFIG. TRL's names are accepted where\n"
            "they mean the same (learning_rate, max_steps, num_generations, ...: docs/trl.md).\n"
            "An expected failure prints one line and exits 2; --debug shows its traceback.\n\n"
            "defaults (`unift list config [KEY]` explains each key; sources.N.* and eval.* there):\n"
            + "\n".join(defaults))


def main(argv: list[str]) -> int:
    from unift.cli import debugging, errors_as_lines

    debug, argv = debugging(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_help())
        return 0
    if not argv:  # as argparse does for a missing argument
        print(f"{USAGE}\nunift train: error: the following arguments are required: CONFIG.yaml "
              "(`unift train --help` explains)", file=sys.stderr)
        return 2
    config_path = Path(argv[0])
    with errors_as_lines("train", debug) as outcome:
        config = load_config(config_path, argv[1:])
        train(config, config_path.parent)
    return outcome.code
