"""Typed run configuration, loaded from YAML with `key=value` overrides.

    unift train configs/mix.yaml steps=50 optim.lr=1e-5 sources.0.weight=0.7

Every section's dataclass is here, the LoRA and rollout settings included. Library functions take
plain arguments; only the run entry point (`unift.train.run`, and `unift.compare`, which builds
runs) reads these.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unift.data.records import ASSISTANT_TURNS, MAX_RECORD_CHARS
from unift.data.records import short as _short

# -- specs of the sections: LoRA, and a task source's rollout ----------------------------------


@dataclass
class LoraSpec:
    """LoRA adapter settings (PEFT)."""

    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Names of the linear layers that get adapters."""


@dataclass
class HintSpec:
    """Hint settings of a task source (the `hint:` block of its config)."""

    schedule: str = "none"
    """none | cosine | uniform | stage | full (see `unift.rollout.hints`)."""
    p_low: float = 0.05
    """Cosine schedule: the hint probability at T_hint."""
    p_high: float = 0.95
    """Cosine schedule: the hint probability at step 0."""
    T_hint: float = 0.6
    """Steps with hints: a fraction of the run's steps if <= 1, else a step count."""
    L: int = 5
    """At most L + 1 hint lengths (cut points) per solution."""
    stages: int = 3
    """Stage schedule: number of equal stages before T_hint."""


GATE_MODES = ("none", "switch", "buffer")  # `GateSpec.mode`


@dataclass
class ExpertSpec:
    """The task's reference solution + EOS as completion rows ("expert" rows). Their tokens are
    marked `RolloutBatch.expert_mask` and trained by the objective's `expert_loss`, never by the
    PPO ratio."""

    per_group: int = 0
    """Expert rows in each prompt's group in place of as many own rollouts (LUFFY: 1 of G, so G - 1
    are sampled). They are scored and join the group's reward mean (and std)."""
    share: float = 0.0
    """Expert rows outside the groups as a share of all rows: round(share / (1 - share) x own
    rows), assigned to the prompts in turn (CHORD's `expert_data_ratio`, 0.2). They take no part
    in the advantages; the objective trains them by its SFT term."""


@dataclass
class PrefixSpec:
    """Prefix rollouts: a prefix of the reference solution's tokens opens the assistant turn and
    the policy continues it (Prefix-RFT). The prefix tokens are expert tokens (`expert_mask`)."""

    rows: int = 0
    """Rollouts per group that start from a prefix (of G; the other G - rows are unprefixed and
    form the group's baseline). 0: off."""
    ratio_start: float = 0.8
    """Prefix length as a share of the reference solution's tokens at step 0."""
    ratio_end: float = 0.0
    """... and at T (cosine decay in between; a prefix of 0 tokens is a plain rollout)."""
    T: float = 1.0
    """Steps of the decay: a value <= 1 is a fraction of the run (as `hint.T_hint`), > 1 a count."""


@dataclass
class GateSpec:
    """Per prompt, RL or SFT, decided by how many of its G rollouts are correct."""

    mode: str = "none"
    """none | switch: a prompt with at most `max_correct` correct rollouts trains by NLL on its
    reference solution (+ EOS) instead of RL in the same step, its rollouts dropped (HPT's
    "switch", SuperRL) | buffer: such a prompt still trains by RL and joins a buffer; when the
    buffer holds `buffer_size` prompts, the next optimiser step is an SFT step on them (ReLIFT)."""
    max_correct: int = 0
    """The gate: at most this many correct rollouts of G sends the prompt to SFT (HPT's
    `switch_gate` 0; SuperRL and ReLIFT: none correct)."""
    buffer_size: int = 8
    """mode=buffer: prompts per SFT step (ReLIFT's `sft_data_size`, 128 with 128-prompt batches)."""


@dataclass
class QuestionHintSpec:
    """A partial solution appended to the question of hard problems (QuestA): the prompt becomes
    question + "\\n\\n## Hint. " + the first p of the reference solution's characters. No token
    of it is trained: it is prompt."""

    p: list[float] = field(default_factory=list)
    """Share of the reference solution shown, per equal stage of the run ([0.5, 0.25]: QuestA's
    50% then 25%). Empty: off."""
    hard_max_correct: int = 0
    """A problem is hard when at most this many of its G unhinted rollouts are correct; its group
    is then sampled again with the hint, and the hinted rollouts replace the unhinted ones. -1:
    every problem gets the hint, without the unhinted probe."""


@dataclass
class RolloutSpec:
    """Sampling and hint settings of a task source (the `rollout:` block of its config)."""

    num_generations: int = 4
    """G: completions sampled per prompt (the group of GRPO's group-relative advantage)."""
    max_new_tokens: int = 128
    """Longest completion."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    top_p: float = 1.0
    """Nucleus sampling threshold."""
    stop_strings: list[str] | None = None
    """Stop a completion after any of these strings (EOS always stops); None: the task's own
    (`Task.stop_strings`, e.g. `</answer>` for Countdown)."""
    hint: HintSpec = field(default_factory=HintSpec)
    """Hint schedule (none = RFT, cosine = UFT, uniform = R3, stage, full = SFT)."""
    policy_gradient: bool = True
    """False: no rollouts; NLL on the full reference solution only (the SFT preset)."""
    ppo_epochs: int = 1
    """Passes over each batch of rollouts (PPO epochs); later passes use the log-probs of the
    policy that generated the rollouts as pi_old in the clipped ratio."""
    mini_batches: int = 1
    """Mini-batches per rollout batch: mini_batches x batch_size prompts are rolled out at once
    and served batch_size prompts per micro-batch (the UFT reference code: 256 prompts, updates
    on 64-prompt mini-batches)."""
    scale_rewards: str = "group"
    """Advantage normalisation: group | batch | none."""
    viter: int = 1
    """Verification iterations: graded attempts per prompt, retrying with the verifier's feedback."""
    num_problems: int = 4096
    """Training problems generated for the stream (split "train", the run's seed)."""
    backend: str = "hf"
    """Rollout engine: hf (CPU, default) | vllm (GPU machines)."""
    expert: ExpertSpec = field(default_factory=ExpertSpec)
    """Reference solutions as completion rows (LUFFY: one per group; CHORD: a share of the batch)."""
    prefix: PrefixSpec = field(default_factory=PrefixSpec)
    """Prefix rollouts: a cosine-decayed prefix of the reference solution, then the policy (Prefix-RFT)."""
    gate: GateSpec = field(default_factory=GateSpec)
    """Per-prompt RL or SFT by the group's correct count (HPT, SuperRL: switch; ReLIFT: buffer)."""
    question_hint: QuestionHintSpec = field(default_factory=QuestionHintSpec)
    """Part of the solution in the question of hard problems (QuestA)."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling: a group whose rewards are all equal (zero advantage) is dropped
    and replaced by a new prompt's group, for up to `max_resample_batches` more generation
    rounds; groups with hint, expert or SFT tokens are kept (docs/methods.md section 6.7)."""
    max_resample_batches: int = 3
    """Dynamic sampling: most extra generation rounds per rollout batch (DAPO's
    max_num_gen_batches, less the first); at the limit the batch trains with the groups it has
    (at least one per mini-batch); 0: drop without refilling."""

    def own_rollouts(self) -> int:
        """Rollouts sampled per prompt from the prompt alone: G minus expert and prefix rows."""
        return self.num_generations - self.expert.per_group - self.prefix.rows


def check_rollout(spec: RolloutSpec) -> None:
    """Refuse rollout settings no run could use (a ConfigError naming the field)."""
    if spec.own_rollouts() < 1:
        raise ConfigError(f"rollout: num_generations {spec.num_generations} leaves no own rollout after "
                          f"expert.per_group {spec.expert.per_group} and prefix.rows {spec.prefix.rows}")
    if not 0 <= spec.expert.share < 1:
        raise ConfigError(f"rollout.expert.share: {spec.expert.share} is not in [0, 1)")
    if spec.gate.mode not in GATE_MODES:
        raise ConfigError(f"rollout.gate.mode: {spec.gate.mode!r} is not one of {', '.join(GATE_MODES)}")
    if spec.gate.buffer_size < 1:
        raise ConfigError(f"rollout.gate.buffer_size: {spec.gate.buffer_size} must be at least 1")
    if any(not 0 <= p <= 1 for p in spec.question_hint.p):
        raise ConfigError(f"rollout.question_hint.p: {spec.question_hint.p} must be shares in [0, 1]")
    if spec.max_resample_batches < 0:
        raise ConfigError(f"rollout.max_resample_batches: {spec.max_resample_batches} must be at least 0")
    if spec.dynamic_sampling and not spec.policy_gradient:
        raise ConfigError("rollout.dynamic_sampling: needs policy_gradient (the SFT preset samples nothing to filter)")
    if spec.dynamic_sampling and spec.num_generations < 2:
        raise ConfigError("rollout.dynamic_sampling: needs num_generations >= 2 (a group of one has no reward spread)")


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"
    """Model spec: 'smollm2-135m-instruct', 'tiny[:layers=..]', a .gguf file, a model directory,
    a previous run's directory (its final model is used), or a Hugging Face model ID
    ('HuggingFaceTB/SmolLM2-135M-Instruct') already in the local Hugging Face cache (offline)."""
    lora: LoraSpec | None = None
    """LoRA adapters through PEFT; null trains all weights (the reference is then a frozen copy).
    When `name` is a LoRA run, its adapter is first merged into its base: that merged model is
    the starting point and pi_ref, and this run's `lora` (if any) adds new adapters to it."""


@dataclass
class SourceConfig:
    """One data source of the mixture: its records, the objective applied to them, and a weight."""

    name: str = ""
    """A short name used in metric keys (`<name>/loss`); defaults to the kind (a task source's:
    the task). Not `eval`, the evaluations' namespace in the trackers."""
    kind: str = "demonstration"
    """Record kind: demonstration | preference | binary | score | task."""
    path: str | None = None
    """File of records (TRL column conventions): .jsonl (errors name the line), or .json, .parquet,
    .csv through `datasets.load_dataset` (errors name the row); None for task sources."""
    dataset: Any = None
    """Instead of `path`, from Python: a `datasets.Dataset` of records, e.g.
    `SourceConfig(kind="preference", dataset=ds)`; errors name the row; config.yaml records its
    size, columns and fingerprint (`unift.data.sources`)."""
    assistant_turns: str = "all"
    """`messages` records: the loss covers every assistant turn (`all`, TRL's
    `assistant_only_loss`) or only the last one (`last`); the other turns are context."""
    objective: str = "sft"
    """Objective name (see `unift.train.losses.OBJECTIVES`), e.g. sft, dpo-sigmoid, una-pairwise,
    una-binary-mse, una-score-mse, uft-implicit-mse, grpo."""
    weight: float = 1.0
    """Weight of this source's loss in the summed step loss."""
    batch_size: int = 4
    """Prompts drawn from this source per gradient-accumulation micro-step, for all processes
    together: records, preference pairs, or a task source's problems. Not TRL's
    per_device_train_batch_size, which counts completions per process: a task source trains
    batch_size x num_generations completions per micro-step (docs/trl.md)."""
    beta: float = 0.1
    """Implicit-reward scale beta in r = beta * (log pi - log pi_ref) (diagnostics use it too).
    On a task source, a beta other than this default is TRL's beta, the KL weight: it becomes
    `params.c_kl` (giving both is an error; docs/trl.md)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the objective (e.g. {sft_weight: 0.5} for dpo)."""
    task: str | None = None
    """Task name for kind=task (e.g. countdown), or a user's Task subclass as `pkg.module:MyTask`
    (imported from the working directory, the config file's directory or PYTHONPATH)."""
    variant: dict[str, Any] = field(default_factory=dict)
    """Task variant parameters for kind=task (e.g. {variant: easy} or {rule: face_is_10})."""
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    """kind=task: sampling, hint schedule, verification iterations (`unift.rollout.task_source`)."""
    reward_funcs: list[str] = field(default_factory=list)
    """kind=task: reward functions in TRL's signature, `f(prompts, completions, completion_ids,
    **kwargs) -> list[float | None]`, named `pkg.module:func` (or TRL's `pkg.module.func`) and
    imported from the working directory, the config file's directory or PYTHONPATH; importing
    runs that module's code, so name only code you trust. Each row's reward is the weighted sum
    of the verifier's and theirs (`unift.rollout.rewards`); each is logged as `reward/<name>`."""
    reward_weights: list[float] | None = None
    """Weights of `reward_funcs`, one per function (TRL's reward_weights); None: 1 each."""
    task_reward_weight: float = 1.0
    """kind=task: weight of the task verifier's reward in that sum; 0: `reward_funcs` replace it
    (`correct`, the gates and retries still follow the verifier)."""
    preset: str | None = None
    """kind=task: an algorithm preset (sft, rft, r3, stage, uft, rft-cosine; luffy, chord,
    chord-phi, hpt, superrl, relift, prefix-rft, questa: docs/methods.md section 8) that fills in
    `rollout` settings and the objective's params: every field the
    source leaves at its default and every param it does not set (`unift.rollout.presets`). The
    same from YAML and from Python (`SourceConfig(preset="uft")`)."""

    def __post_init__(self):
        if isinstance(self.rollout, dict):  # built from Python with a plain mapping
            self.rollout = _convert(self.rollout, RolloutSpec, "rollout")
        if self.kind == "task" and self.beta != SourceConfig.beta:
            self._beta_as_kl_weight()
        if self.preset is None:
            self._check_rollout()
            return
        from unift.rollout.presets import PRESETS

        if self.preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {self.preset!r}; known: {', '.join(sorted(PRESETS))} "
                              "(sft-rft: `unift compare`)")
        preset = PRESETS[self.preset]
        self.params = {**preset.get("params", {}), **self.params}
        _fill_defaults(self.rollout, preset.get("rollout", {}))
        self._check_rollout()

    def _beta_as_kl_weight(self) -> None:
        """TRL's `beta` on a task source means the KL weight, unift's params.c_kl; left as beta it
        would only scale the implicit-reward diagnostics. Moved before the preset fills params,
        and beta reset to its default, so config.yaml loads back to the same run."""
        _finite("beta", self.beta, 0)
        if "c_kl" in self.params:
            raise ConfigError(f"beta: on a task source TRL's beta is params.c_kl (the KL weight), and params.c_kl "
                              f"is given too ({_short(self.beta)} and {_short(self.params['c_kl'])}); keep one")
        self.params = {**self.params, "c_kl": self.beta}
        self.beta = SourceConfig.beta

    def _check_rollout(self) -> None:
        """Rollout settings no run could use fail here, before any model loads."""
        check_rollout(self.rollout)


def _fill_defaults(spec, values: dict) -> None:
    """Set each of `values` on the dataclass `spec` where `spec` still holds the field's default."""
    defaults = type(spec)()
    for key, value in values.items():
        if isinstance(value, dict):
            _fill_defaults(getattr(spec, key), value)
        elif getattr(spec, key) == getattr(defaults, key):
            setattr(spec, key, value)


@dataclass
class OptimConfig:
    lr: float = 1e-5
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW moment coefficients."""
    warmup_steps: int = 0
    """Linear warm-up from 0 to lr over this many optimiser steps."""
    schedule: str = "cosine"
    """After warm-up: cosine (to min_lr_ratio * lr at the last step) | constant | linear |
    hold-cosine (constant through the first task source's hint phase, T_hint, then cosine)."""
    min_lr_ratio: float = 0.0
    """Floor of the cosine/linear decay as a fraction of lr."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimiser step."""


@dataclass
class EvalConfig:
    """Held-out evaluation during a run (written to evals.jsonl), e.g. ID and OOD test sets."""

    task: str | None = None
    """Task to evaluate on (None: no evaluation)."""
    variants: dict[str, dict] = field(default_factory=dict)
    """Label -> task variant parameters, e.g. {id: {variant: id}, ood: {variant: ood_numbers}}."""
    n: int = 64
    """Test problems per variant (of `split`)."""
    split: str = "test"
    """Problems to evaluate on: test (held out) | val (for choosing settings: never tune on test)."""
    k: int = 1
    """Also report sampled pass@k when k > 1."""
    max_new_tokens: int = 256
    """Longest evaluated completion."""
    viter: int = 1
    """Graded attempts per problem (verification iterations) for multi-turn tasks."""
    every_steps: int = 0
    """Evaluate every N steps (0: not by steps)."""
    every_flops: float = 0.0
    """Evaluate whenever training FLOPs cross a multiple of this (0: not by FLOPs)."""
    at_start: bool = True
    """Also evaluate the initial model before the first step."""
    stop_strings: list[str] | None = None
    """Stop a completion after any of these strings (EOS always stops); None: the task's own
    (`Task.stop_strings`), as the task source's rollouts do."""


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy to train (and, implicitly, pi_ref = its initial state)."""
    sources: list[SourceConfig] = field(default_factory=list)
    """The mixture: every step draws a batch from every source and sums the weighted losses."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    steps: int = 10
    """Optimiser steps (also the horizon of LR and hint schedules)."""
    max_flops: float = 0.0
    """Stop at the step boundary nearest this many training FLOPs, counted as computed (forward
    2 N per token, backward 4 N, reference passes, rollout prefill and decode; docs/flops.md);
    0: run all `steps`."""
    max_flops_fill: bool = False
    """With max_flops: when `steps` end under the budget, train on at the schedules' final values
    (the LR at its floor, hint and mixing schedules at their ends) to the step boundary nearest
    max_flops, at most `steps` more steps. `unift compare --match flops` sets it where it estimated
    the steps (the estimate then only sets the schedules' length), so every arm spends its budget."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation before training, at the given intervals, and at the end."""
    max_length: int = 512
    """Prompt + completion tokens per sequence; longer prompts are cut from the left, longer
    completions from the right (counted in `data/truncated`)."""
    precision: str = "auto"
    """auto: bf16 where bf16 products measured faster than fp32 on this CPU at the model's shapes,
    fp32 elsewhere, for training and, measured separately, for the rollout/evaluation engine
    (`unift.precision`; `unift info` shows the measurement). On a CPU with native bf16 (AMX,
    AVX512-BF16) bf16 runs 2-4x faster; on an AVX2-only CPU 5-17x slower.
    bf16: fp32 weights with bf16 autocast (TRL's `bf16=True`), bf16 rollouts;
    fp32: no autocast, fp32 rollouts; an explicit choice measured over 2x slower than the other
    gets a warning. bf16-master: bf16 weights and activations with fp32 master
    weights in the optimiser, 5-7% faster still and half the weight memory, but at fine-tuning
    learning rates an update stays invisible to the forward pass until its master has moved by
    half a bf16 step (norm weights near 1.0: 0.002-0.004, 100-200 steps at lr 2e-5), and it learnt
    measurably less in the quickstart's UFT run (docs/LOG.md, 2026-11-29). The saved model is
    then bf16. On a CUDA GPU, auto is bf16 where the GPU supports it (`torch.cuda.is_bf16_supported`),
    else fp32, unmeasured; on MPS fp32 (`unift.precision.choose`)."""
    device: str = "auto"
    """Where the policy, pi_ref, PPO's value head, the batches and the rollout engine live, placed
    by accelerate (`Accelerator`): auto (a CUDA GPU where torch sees one, else Apple's MPS, else the
    CPU; under `accelerate launch` each process's own GPU), cpu, cuda or mps. A device this
    machine lacks stops the run before the model loads."""
    diagnostics: bool = True
    """Compute pi_ref's log-probs for the implicit-reward diagnostics even when no objective
    needs them (plain SFT): a reference forward, about a third more compute on the steps that
    run it (`diagnostics_every`); false never does."""
    diagnostics_every: int = 10
    """Run that diagnostics-only reference pass on the first step, every N-th step and the last,
    like a logging interval (metrics.jsonl rows in between lack the plain-SFT sources' `rewards/`
    and `kl/ref` keys): on average 1/N of its cost. 1: every step. Objectives that need pi_ref
    (DPO, UNA, KL terms) compute it every step regardless."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of storing them:
    far less memory for long or many sequences (RL batches), about a third more compute."""
    seed: int = 0
    """One seed for Python, NumPy, torch and data order."""
    output_dir: str = "runs/run"
    """Run directory: config.yaml, metrics.jsonl, checkpoints, final model. A relative path is
    relative to the working directory, as in TRL (data files are looked for there first, then
    next to the config file)."""
    save_every: int = 0
    """Write a resumable checkpoint every N steps (0: only at the end)."""
    resume: bool = False
    """Continue from output_dir/checkpoint if it exists. The checkpoint's config must match this
    one except for the settings that cannot change the run (`unift.train.run.RESUME_SAFE`: eval,
    save_every, progress, output_dir, diagnostics, ...); other changes are refused, by name."""
    overwrite: bool = False
    """Replace a previous run in output_dir (its config.yaml, metrics, checkpoint, model, logs).
    Without it (or `resume`), an output_dir that holds a run is refused."""
    max_record_chars: int = MAX_RECORD_CHARS
    """Longest record of a source, in characters of text (prompt plus completion(s), or the
    message contents); a longer one is rejected naming its file and line, before any tokenising
    (whose memory grows with the text, not with max_length). JSONL lines are read only up to
    6x this (+4096) characters, room for JSON escapes."""
    progress: bool = True
    """Show a progress bar (and no other: transformers', huggingface_hub's and datasets' bars are
    off while it runs)."""
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Experiment trackers that get every metrics.jsonl row under its own names, and every
    evals.jsonl row as `eval/<label>/<metric>` (MLflow: `pass@1` as `pass_at_1`) (TRL's
    `report_to`): tensorboard (<run>/tb/), wandb (offline in <run>/wandb/ unless WANDB_MODE is
    set), mlflow (a sqlite store, <run>/mlflow.db, unless MLFLOW_TRACKING_URI is set), trackio
    (trackio's local database); [] for none. Written by the main process only, through
    accelerate's tracker classes (`unift.train.trackers`). A tracker whose package is missing is a
    config error naming the pip package."""
    samples_every: int = 1
    """Write a few decoded rollouts to samples.jsonl on the first, every N-th and the last step:
    per task source the first rollout of the first 2 prompts, with its prompt, hint, completion,
    reward, correct, and each reward function's term. 0: none. TRL's `log_completions: true` is
    accepted as 1, `false` as 0."""

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ConfigError(f"device: expected one of {', '.join(DEVICES)}, got {_short(self.device)}")
        _check_report_to(self.report_to)


def _check_report_to(names) -> None:
    from unift.train.trackers import check_report_to

    try:
        check_report_to(names)
    except ValueError as err:
        raise ConfigError(f"report_to: {err}") from None


DEVICES = ("auto", "cpu", "cuda", "mps")  # `RunConfig.device`


# -- validation ------------------------------------------------------------------------------


def _at_least(where: str, value, low) -> None:
    if not value >= low:
        raise ConfigError(f"{where}: expected an integer >= {low}, got {_short(value)}")


def _finite(where: str, value, low: float | None = None, high: float | None = None, *,
            strict_low: bool = False, strict_high: bool = False) -> None:
    """`value` is a finite number in the given range; the message names the key and the range."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if strict_low else value >= low
    if ok and high is not None:
        ok = value < high if strict_high else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if strict_low else '>='} {low}"
        hi = "" if high is None else f"{'<' if strict_high else '<='} {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise ConfigError(f"{where}: expected a finite number{' ' + bounds if bounds else ''}, got {_short(value)}")


def validate(config: RunConfig) -> None:
    """Raise ConfigError, naming the key, for a value no run can use (checked before the model
    loads, so a typo costs no time)."""
    if not config.sources:
        raise ConfigError("sources: the mixture needs at least one source")
    if config.resume and config.overwrite:
        raise ConfigError("resume and overwrite: choose one (continue the run in output_dir, or replace it)")
    _at_least("steps", config.steps, 1)
    _at_least("max_length", config.max_length, 2)  # a prompt token and a completion token
    _at_least("save_every", config.save_every, 0)
    _at_least("diagnostics_every", config.diagnostics_every, 1)
    _at_least("max_record_chars", config.max_record_chars, 1)
    _at_least("samples_every", config.samples_every, 0)
    _check_report_to(config.report_to)  # again: a Python caller may have changed it since
    _finite("max_flops", config.max_flops, 0)
    opt = config.optim
    _finite("optim.lr", opt.lr, 0, strict_low=True)
    _finite("optim.weight_decay", opt.weight_decay, 0)
    for i, b in enumerate(opt.betas):
        _finite(f"optim.betas.{i}", b, 0, 1, strict_high=True)
    _finite("optim.min_lr_ratio", opt.min_lr_ratio, 0, 1)
    _finite("optim.grad_clip", opt.grad_clip, 0)
    _at_least("optim.warmup_steps", opt.warmup_steps, 0)
    _at_least("optim.grad_accum", opt.grad_accum, 1)
    from unift.train import losses

    for i, sc in enumerate(config.sources):
        if sc.objective in losses.OBJECTIVES:  # (an unknown name is reported with the known ones later)
            try:
                losses.check_params(sc.objective, sc.params, f"sources.{i}.params")
            except ValueError as err:
                raise ConfigError(str(err)) from None
        _finite(f"sources.{i}.weight", sc.weight)
        if sc.assistant_turns not in ASSISTANT_TURNS:
            raise ConfigError(f"sources.{i}.assistant_turns: expected one of {', '.join(ASSISTANT_TURNS)}, "
                              f"got {_short(sc.assistant_turns)}")
        if sc.dataset is not None and sc.path is not None:
            raise ConfigError(f"sources.{i}: both path and dataset are given; use one or the other")
        if (sc.name or (sc.task if sc.kind == "task" else sc.kind)) == "eval":
            raise ConfigError(f"sources.{i}.name: 'eval' is taken by the evaluations' metrics in the trackers "
                              "(eval/<label>/<metric>); choose another name")
        _at_least(f"sources.{i}.batch_size", sc.batch_size, 1)
        _finite(f"sources.{i}.beta", sc.beta, 0)
        _check_rewards(sc, f"sources.{i}")
    ev = config.eval
    if ev.task is not None:
        _at_least("eval.n", ev.n, 1)
        _at_least("eval.k", ev.k, 1)
        _at_least("eval.max_new_tokens", ev.max_new_tokens, 1)
        _at_least("eval.every_steps", ev.every_steps, 0)
        _finite("eval.every_flops", ev.every_flops, 0)


def _check_rewards(sc: SourceConfig, where: str) -> None:
    """Reward functions and weights (their import is checked later, before the model loads)."""
    if sc.kind != "task":
        if sc.reward_funcs or sc.reward_weights is not None or sc.task_reward_weight != 1.0:
            raise ConfigError(f"{where}: reward_funcs, reward_weights and task_reward_weight apply to task sources, "
                              f"not to a {sc.kind} source")
        return
    _finite(f"{where}.task_reward_weight", sc.task_reward_weight, 0)
    if sc.reward_weights is not None:
        if len(sc.reward_weights) != len(sc.reward_funcs):
            raise ConfigError(f"{where}.reward_weights: {len(sc.reward_weights)} weight(s) for "
                              f"{len(sc.reward_funcs)} reward function(s) in reward_funcs")
        for j, w in enumerate(sc.reward_weights):
            _finite(f"{where}.reward_weights.{j}", w)
    if sc.task_reward_weight == 0 and not sc.reward_funcs:
        raise ConfigError(f"{where}.task_reward_weight: 0 leaves no reward; give reward_funcs to replace the "
                          "verifier's reward")
    if sc.rollout.dynamic_sampling and sc.params.get("adv_estimator") == "gae":
        raise ConfigError(f"{where}.rollout.dynamic_sampling: drops groups of equal rewards, whose group-relative "
                          "advantage is 0; with adv_estimator gae (a learned critic) they still have one")


# -- YAML + overrides -------------------------------------------------------------------------


class ConfigError(ValueError):
    """A config value no run can use; the message names the key."""


class UniftWarning(UserWarning):
    """An input unift accepts but doubts; the CLI shows it as one line."""


# -- TRL's names (docs/trl.md) -----------------------------------------------------------------


@dataclass(frozen=True)
class Alias:
    """A TRL config name accepted for the unift key of the same meaning."""

    key: str
    """unift's dotted key, inside the mapping the alias is given in."""
    values: dict | None = None
    """TRL's values -> unift's where they differ (other values are refused); None: the same."""
    also: str | None = None
    """A second key set from the same value unless given (TRL's epsilon_high defaults to epsilon)."""
    kinds: tuple[str, ...] = ()
    """Source kinds it applies to (empty: any)."""


_SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant", "constant_with_warmup": "constant"}
_TASK = ("task",)
TRL_ALIASES: dict[str, dict[str, Alias]] = {
    "run": {  # transformers' TrainingArguments
        "learning_rate": Alias("optim.lr"),
        "max_steps": Alias("steps"),
        "gradient_accumulation_steps": Alias("optim.grad_accum"),
        "warmup_steps": Alias("optim.warmup_steps"),
        "weight_decay": Alias("optim.weight_decay"),
        "max_grad_norm": Alias("optim.grad_clip"),
        "lr_scheduler_type": Alias("optim.schedule", _SCHEDULES),
        "save_steps": Alias("save_every"),
        "bf16": Alias("precision", {True: "bf16", False: "fp32"}),
        "log_completions": Alias("samples_every", {True: 1, False: 0}),  # TRL: at every logging step
    },
    "source": {  # GRPOConfig's sampling and loss settings, given on a task source
        "num_generations": Alias("rollout.num_generations", kinds=_TASK),
        "max_completion_length": Alias("rollout.max_new_tokens", kinds=_TASK),
        "temperature": Alias("rollout.temperature", kinds=_TASK),
        "top_p": Alias("rollout.top_p", kinds=_TASK),
        "num_iterations": Alias("rollout.ppo_epochs", kinds=_TASK),
        "scale_rewards": Alias("rollout.scale_rewards", {True: "group", False: "none", "group": "group",
                                                          "batch": "batch", "none": "none"}, kinds=_TASK),
        "epsilon": Alias("params.epsilon_low", also="params.epsilon_high", kinds=_TASK),
        "epsilon_high": Alias("params.epsilon_high", kinds=_TASK),
        "loss_type": Alias("params.aggregation", {"grpo": "sequence_mean", "dapo": "token_mean",
                                                  "dr_grpo": "constant"}, kinds=_TASK),
    },
}
"""TRL's names accepted in a run config, by where they go: the top level ("run") or a source.
`warmup_ratio` is converted too (`_warmup_ratio`); `beta` on a task source becomes params.c_kl
(`SourceConfig._beta_as_kl_weight`)."""

TRL_ELSEWHERE = {
    "per_device_train_batch_size": "unift's sources.N.batch_size counts prompts for all processes together; "
    "TRL's per_device_train_batch_size counts completions per process (GRPO: = batch_size x num_generations "
    "/ processes; SFT, DPO: = batch_size / processes)",
    "num_train_epochs": "unift counts optimiser steps: `steps` (TRL's max_steps)",
    "max_prompt_length": "unift has one `max_length` for prompt + completion; longer prompts are cut from the left",
    "beta": "beta is set per source (sources.N.beta); on a task source TRL's beta (the KL weight) is "
    "sources.N.params.c_kl",
    "model_name_or_path": "the model is `model.name`",
    "fp16": "precision: auto | bf16 | fp32 | bf16-master (no fp16 on CPUs)",
    "num_completions_to_print": "samples.jsonl holds the first rollout of the first 2 prompts per task source "
    "on each logged step (`samples_every`)",
    "logging_steps": "metrics.jsonl and the trackers get every step; samples.jsonl every `samples_every` steps",
}
"""TRL names unift does not accept as aliases, with where the setting lives (docs/trl.md)."""


def _path_get(data: dict, key: str):
    """The value at dotted `key` in nested mappings, or `_MISSING`."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _path_set(data: dict, key: str, value: Any, where: str) -> None:
    """Set dotted `key` in nested mappings, copying each one on the way (the caller's data is
    not changed)."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{where}: cannot set {key}: {part} is {_short(child)}, not a mapping")
        node[part] = child = dict(child)
        node = child
    node[last] = value


_MISSING = object()


def _apply_aliases(data: dict, section: str, where: str) -> tuple[dict, dict[str, str]]:
    """`data` with TRL's names moved to unift's keys, and {unift key: TRL name} for the moved
    ones. An alias given beside its unift key is refused, naming both."""
    aliases = TRL_ALIASES[section]
    if section == "run" and _fraction(data.get("warmup_steps")):  # transformers 5: a ratio of the steps
        if "warmup_ratio" in data:
            raise ConfigError("warmup_steps and warmup_ratio are both given as ratios; keep one")
        data = {**data, "warmup_ratio": data["warmup_steps"]}
        del data["warmup_steps"]
    given = [name for name in data if name in aliases]
    if section == "run" and "warmup_ratio" in data:
        given.append("warmup_ratio")
    if not given:
        return data, {}
    data, moved = dict(data), {}
    kind = data.get("kind", SourceConfig.kind)
    for name in given:
        if name == "warmup_ratio":
            continue
        alias, at = aliases[name], f"{where}.{name}" if where else name
        if alias.kinds and kind not in alias.kinds:
            raise ConfigError(f"{at}: TRL's {name} ({alias.key}) applies to {' and '.join(alias.kinds)} sources, "
                              f"not to a {kind} source")
        value = data.pop(name)
        if alias.values is not None:
            if not isinstance(value, str | bool) or value not in alias.values:
                raise ConfigError(f"{at}: {_short(value)} has no unift equivalent; accepted: "
                                  f"{', '.join(str(v) for v in alias.values)} (docs/trl.md)")
            value = alias.values[value]
        if _path_get(data, alias.key) is not _MISSING:
            raise ConfigError(f"{at}: {name} and {alias.key} are both given ({name} is TRL's name for "
                              f"{alias.key}); keep one")
        _path_set(data, alias.key, value, at)
        moved[alias.key] = name
    for name in given:
        also = name != "warmup_ratio" and aliases[name].also
        if also and _path_get(data, also) is _MISSING:
            _path_set(data, also, _path_get(data, aliases[name].key), where)
            moved[also] = name
    if "warmup_ratio" in given:
        _warmup_ratio(data, where)
        moved["optim.warmup_steps"] = "warmup_ratio"
    return data, moved


def _fraction(value) -> bool:
    return isinstance(value, float) and 0 < value < 1


def _warmup_ratio(data: dict, where: str) -> None:
    """TRL's warmup_ratio r (transformers 5: warmup_steps r < 1) -> optim.warmup_steps =
    ceil(r x steps), as transformers computes it."""
    at = f"{where}.warmup_ratio" if where else "warmup_ratio"
    ratio = data.pop("warmup_ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        raise ConfigError(f"{at}: expected a number in [0, 1], got {_short(ratio)}")
    if _path_get(data, "optim.warmup_steps") is not _MISSING:
        raise ConfigError(f"{at}: warmup_ratio and optim.warmup_steps are both given; keep one")
    steps = data.get("steps", RunConfig.steps)
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ConfigError(f"{at}: needs an integer `steps`, got {_short(steps)}")
    _path_set(data, "optim.warmup_steps", math.ceil(ratio * steps), at)


def _unknown_fields(unknown: set, section: str | None) -> str:
    """Why each unknown field is unknown, where a TRL user would look for it."""
    hints = []
    for name in sorted(unknown):
        if name in TRL_ELSEWHERE:
            hints.append(f"{name}: {TRL_ELSEWHERE[name]}")
        elif section == "run" and name in TRL_ALIASES["source"]:
            hints.append(f"{name}: a task source's setting (sources.N.{name}, TRL's name for "
                         f"sources.N.{TRL_ALIASES['source'][name].key})")
    return "".join(f"; {h}" for h in hints) + " (docs/trl.md)" * bool(hints)


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Build a value of (dataclass) type `tp` from plain YAML data, with clear errors."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, args[0], where)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_short(value)}")
        section = {RunConfig: "run", SourceConfig: "source"}.get(tp)
        value, moved = _apply_aliases(value, section, where) if section else (value, {})
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            at = f"{where}: " if where else ""
            raise ConfigError(f"{at}unknown field(s) {sorted(unknown)}; known: {sorted(names)}"
                              + _unknown_fields(unknown, section))
        try:
            kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in value.items()}
        except ConfigError as err:  # name the TRL name the user wrote
            name = next((n for key, n in moved.items() if str(err).startswith(f"{where}.{key}" if where else key)),
                        None)
            raise ConfigError(f"{err} (given as {name})" if name else str(err)) from None
        try:
            return tp(**kwargs)
        except ConfigError as err:  # a check in __post_init__: say which item of the config
            raise ConfigError(f"{where}.{err}" if where else str(err)) from None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_short(value)}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {_short(value)}")
        return tuple(_convert(v, a, f"{where}.{i}") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_short(value)}")
        return dict(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 1e-5 as a string
        except ValueError:
            pass
    if tp in (int, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {_short(value)}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {_short(value)}")
    if tp is float and not isinstance(value, float):
        raise ConfigError(f"{where}: expected a number, got {_short(value)}")
    return value


def _index(node: list, part: str, key: str) -> int:
    """`part` as an index into `node`, which may grow by one (`sources.2.x=...` adds the third
    source after two)."""
    if not part.isdigit():
        raise ConfigError(f"override {key}: {part!r} is not a list index")
    index = int(part)
    if index > len(node):
        raise ConfigError(f"override {key}: index {index} is past the end of a list of {len(node)} "
                          f"item(s); add items in order (the next one is {len(node)})")
    return index


def set_dotted(data: dict, key: str, value: Any) -> None:
    """data[a][b]... = value for key "a.b...." in YAML config data (list items by index; the
    next item of a list may be added)."""
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            index = _index(node, part, key)
            if index == len(node):  # `sources.2.x=...` may add the next list item
                node.append([] if nxt.isdigit() else {})
            node = node[index]
        elif isinstance(node, dict):
            if part not in node or node[part] is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
        else:
            raise ConfigError(f"override {key}: {'.'.join(parts[:i])} is {_short(node)}, not a mapping or list")
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, key)
        if index == len(node):
            node.append(value)
        else:
            node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {key}: {'.'.join(parts[:-1])} is {_short(node)}, not a mapping or list")


def load_config(path: str | Path | None = None, overrides: list[str] = (), cls=RunConfig):
    """Load `cls` from a YAML file (or defaults) and apply `key=value` overrides (YAML values)."""
    data: dict = {}
    if path is not None:
        if not Path(path).is_file():
            what = "is a directory" if Path(path).is_dir() else "no such file"
            raise ConfigError(f"{path}: {what}; expected a YAML config file")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the config: {err}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    return build_config(data, overrides, cls, where=str(path) if path else "config")


def build_config(data: dict, overrides: list[str] = (), cls=RunConfig, where: str = "config"):
    """`cls` from plain data (as YAML would give it) with `key=value` overrides applied."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: invalid YAML value: {str(err).splitlines()[0]}") from None
        set_dotted(data, key, parsed)
    try:
        return _convert(data, cls, "")
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def to_dict(config) -> dict:
    """The config in plain types; a source's `dataset` becomes its description (rows, columns,
    fingerprint), not a copy of the data."""
    if isinstance(config, RunConfig) and any(sc.dataset is not None for sc in config.sources):
        from unift.data.sources import describe

        config = copy.copy(config)
        config.sources = [copy.copy(sc) for sc in config.sources]
        for sc in config.sources:
            sc.dataset = None if sc.dataset is None else describe(sc.dataset)
    return dataclasses.asdict(config)


def dump_config(config, path: Path) -> None:
    data = to_dict(config)

    def plain(x):
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, list):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    path.write_text(yaml.safe_dump(plain(data), sort_keys=False))


def differences(saved: dict, current: dict, ignore=()) -> list[str]:
    """'key (old -> new)' for each dotted key whose value differs between two configs in plain
    types (`to_dict`), skipping the top-level keys in `ignore`. Used by resume (which settings
    changed since the checkpoint) and by `unift compare` (whether a finished run is this one)."""
    missing = object()
    out: list[str] = []

    def show(v) -> str:
        return "absent" if v is missing else f"{len(v)} items" if isinstance(v, list) else _short(v, 40)

    def walk(a, b, key: str) -> None:
        if "." not in key and key in ignore:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in dict.fromkeys([*a, *b]):
                walk(a.get(k, missing), b.get(k, missing), f"{key}.{k}" if key else str(k))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{key}.{i}")
        elif a != b:
            out.append(f"{key} ({show(a)} -> {show(b)})")

    walk(saved, current, "")
    return out
