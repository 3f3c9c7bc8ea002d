"""One optimisation step over the mixture, readable top to bottom:

    draw: every source's micro-batches (task sources run their rollout stage here: problems ->
          hinted prompts -> rollouts -> rewards -> advantages, `unift.rollout.task_source`)
    count: each source's rows and tokens over the whole step (all micro-batches, processes)
    for each micro-batch (gradient accumulation):
        for each source:  log-probs (pi_ref without grad, then pi, and V(s_t) from the value
                          head if the objective asks: PPO) -> objective, whose means divide
                          by the step's counts, so accumulation changes no number
        weighted sum of the sources' losses -> backward
    average gradients over processes -> clip -> optimiser step -> LR schedule -> metrics
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from unift.data.mixture import Stream, shard
from unift.data.tokenize import Batch, collate, tokenize_pair
from unift.precision import PRECISIONS
from unift.rollout.task_source import RolloutBatch, TaskRollout
from unift.train.distributed import Dist
from unift.train.flops import ModelFlops
from unift.train.logprobs import token_logps
from unift.train.losses import Objective, SourceTensors, StepCounts, diagnostics


@dataclass
class Source:
    """A source at run time: its stream of records and how its loss is computed."""

    name: str
    kind: str
    objective: Objective
    stream: Stream
    weight: float = 1.0
    batch_size: int = 4
    beta: float = 0.1
    params: dict = field(default_factory=dict)
    rollout: TaskRollout | None = None  # task sources: the rollout stage


@dataclass
class SourceBatch:
    """One source's micro-batch: records as tokens, or a mini-batch of rollouts."""

    source: Source
    batch: Batch
    targets: torch.Tensor | None = None  # (B,) labels / scores
    truncated: int = 0
    rollout: RolloutBatch | None = None  # task sources: advantages, masks, pi_old / pi_ref log-probs
    ref_logps: torch.Tensor | None = None  # pi_ref, once computed (kept by a rollout across PPO epochs)

    def tensors(self, logps, mask, ref_logps, counts: StepCounts | None, entropy, values=None) -> SourceTensors:
        s = self.source
        return SourceTensors(logps, mask, ref_logps, self.targets, s.beta, counts, entropy, self.rollout,
                             pairs=s.kind == "preference", values=values)

    @property
    def stats(self) -> dict:
        return self.rollout.stats if self.rollout else {}

    @property
    def samples(self) -> list:
        return self.rollout.samples if self.rollout else []


def encode(source: Source, records: list, tokenizer, max_length: int) -> SourceBatch:
    """Records -> token batch. Preferences become 2B rows: chosen ones, then rejected ones."""
    if source.kind == "preference":
        pairs = [(r.prompt, r.chosen) for r in records] + [(r.prompt, r.rejected) for r in records]
    else:
        pairs = [(r.prompt, r.completion) for r in records]
    items = [tokenize_pair(tokenizer, p, c, max_length) for p, c in pairs]
    targets = None
    if source.kind in ("binary", "score"):
        targets = torch.tensor([r.target for r in records], dtype=torch.float32)
    return SourceBatch(source, collate(items, tokenizer.pad_token_id), targets, sum(t.truncated for t in items))


def draw(sources: list[Source], tokenizer, max_length: int, dist: Dist, *, step: int = 0,
         total_steps: int = 1, policy=None) -> list[SourceBatch]:
    """One micro-batch from every source: the same global draw on every process, then its shard.
    A task source's rollout stage draws a rollout batch's problems when it needs new ones and
    serves it mini-batch by mini-batch."""
    out = []
    for s in sources:
        if s.rollout is None:
            records = shard(s.stream.take(s.batch_size), dist.rank, dist.world)
            out.append(encode(s, records, tokenizer, max_length))
            continue
        problems = shard(s.stream.take(s.rollout.problems_needed(s.batch_size)), dist.rank, dist.world)
        rb = s.rollout.next(problems, step, total_steps, policy)
        out.append(SourceBatch(s, rb.batch, rollout=rb, ref_logps=rb.ref_logps))
    return out


def step_counts(micro_batches: list[list[SourceBatch]], dist: Dist) -> dict[str, StepCounts]:
    """Each source's rows and tokens over the whole step (micro-batches and processes), per process."""
    local: dict[str, list[float]] = {}
    for micro in micro_batches:
        for sb in micro:
            mask = sb.batch.loss_mask[:, 1:]
            counts = dataclasses.astuple(StepCounts.local(sb.tensors(mask, mask, None, None, None)))
            before = local.get(sb.source.name, [0.0] * len(counts))
            local[sb.source.name] = [x + y for x, y in zip(before, counts, strict=True)]
    return {name: StepCounts(*(dist.sum(v) / dist.world for v in values)) for name, values in local.items()}


def move_tensors(obj, device: torch.device):
    """Move the tensor fields of a dataclass (a Batch, a RolloutBatch, ...) to `device`, in place:
    a rollout's later PPO epochs share its objects (pi_old set at the first use must reach them).
    Tensors already there stay as they are (on the CPU: all of them)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, torch.Tensor):
            setattr(obj, f.name, value.to(device))
    return obj


def to_device(sb: SourceBatch, device: torch.device) -> SourceBatch:
    """A micro-batch's tokens, targets and rollout tensors (masks, advantages, log-probs) on `device`."""
    for obj in (sb, sb.batch, sb.rollout, sb.rollout and sb.rollout.batch):
        if obj is not None:
            move_tensors(obj, device)
    return sb


def autocast(precision: str, device_type: str = "cpu"):
    """bf16: autocast of fp32 weights on `device_type` (cpu, cuda, mps); bf16-master (weights
    already bf16) and fp32: none. `auto` must have been resolved (`unift.precision.choose`)
    before a step runs."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision in PRECISIONS and precision != "auto":
        return contextlib.nullcontext()
    raise ValueError(f"precision must be one of bf16, bf16-master, fp32 (auto resolved by "
                     f"unift.precision.choose), not {precision!r}")


def train_step(
    policy,
    reference,
    micro_batches: list[list[SourceBatch]],
    optimizer,
    scheduler,
    *,
    precision: str = "bf16",
    grad_clip: float = 1.0,
    diagnostics_ref: bool = True,
    dist: Dist | None = None,
    size: ModelFlops | None = None,
    value_head=None,
) -> dict[str, float]:
    """Run one optimiser step on micro-batches already drawn (`draw`, rollouts included);
    returns the step's metrics (averaged over processes; `flops`: the step's compute summed
    over processes, rollouts included, counted with `size`). value_head: PPO's critic
    (`unift.models.ValueHead`, its parameters in `optimizer`), for objectives that read values."""
    dist = dist or Dist()
    start = time.perf_counter()
    device = next(policy.parameters()).device  # batches go where the policy is
    for micro in micro_batches:
        for sb in micro:
            to_device(sb, device)
    policy.train()
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = defaultdict(float)
    tokens, flops = 0, 0.0
    n_micro = len(micro_batches)
    counts = step_counts(micro_batches, dist)
    for micro in micro_batches:
        total = 0.0
        for sb in micro:
            src, batch = sb.source, sb.batch
            # 1. log-probs: pi_ref once per batch (no grad), then pi with grad
            ref_full = None
            if sb.ref_logps is None and (src.objective.wants_ref(src.params) or diagnostics_ref):
                # the exact KL diagnostic needs pi_ref's (N, V) log-softmax where the objective allows it
                exact_kl = src.objective.exact_kl
                with torch.no_grad(), reference.model() as ref_model, autocast(precision, device.type):
                    ref = token_logps(ref_model, batch, return_full=exact_kl)
                sb.ref_logps, ref_full = ref.logps, ref.full
                if sb.rollout is not None:  # later PPO epochs reuse it
                    sb.rollout.ref_logps = ref.logps
                flops += size.forward(ref.tokens, ref.head_rows) if size else 0.0
            wants_values = src.objective.wants_values(src.params)
            if wants_values and value_head is None:
                raise ValueError(f"source {src.name}: its objective reads values; train_step needs a value_head")
            with autocast(precision, device.type):
                pol = token_logps(policy, batch, ref_logprobs_full=ref_full,
                                  with_entropy=src.objective.wants_entropy(src.params),
                                  value_head=value_head if wants_values else None)
            if size:
                flops += size.forward(pol.tokens, pol.head_rows) + size.backward(pol.tokens, pol.head_rows)
            if sb.rollout is not None:  # on-policy rows: pi_old = pi (and V_old = V), detached
                sb.rollout.on_policy(pol.logps, pol.values)
            # 2. objective: its means divide by the whole step's counts
            x = sb.tensors(pol.logps, pol.mask, sb.ref_logps, counts[src.name], pol.entropy, pol.values)
            loss, stats = src.objective.compute(x, src.params)
            stats = {**sb.stats, **stats}
            total = total + src.weight * loss
            # diagnostics: implicit rewards and the exact KL(pi || pi_ref) on completion tokens
            stats = {**stats, **diagnostics(x, src.kind)}
            if pol.kl_ref is not None:
                stats["kl/ref"] = (pol.kl_ref * pol.mask).sum() / pol.mask.sum().clamp(min=1)
            sums[f"{src.name}/loss"] += float(loss.detach())
            for key, value in stats.items():
                sums[f"{src.name}/{key}"] += float(value) / n_micro
            sums[f"{src.name}/truncated"] += sb.truncated
            tokens += batch.num_tokens
            flops += sb.stats.get("flops/rollout", 0.0)
        # 3. backward
        total.backward()
        if hasattr(optimizer, "collect_grads"):  # bf16-master: accumulate in fp32 master grads
            optimizer.collect_grads()
    # 4. optimiser step (on what the optimiser updates: the weights, or their fp32 masters)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    dist.average_gradients(params)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    # 5. metrics, averaged over processes (token counts summed)
    seconds = time.perf_counter() - start
    metrics = {key: dist.mean(value) for key, value in sums.items()}
    metrics["loss"] = sum(s.weight * metrics[f"{s.name}/loss"] for s in (sb.source for sb in micro_batches[0]))
    tokens = int(dist.sum(tokens))
    metrics.update(lr=lr, grad_norm=float(grad_norm), tokens=tokens, tokens_per_s=tokens / seconds,
                   step_s=seconds, flops=dist.sum(flops))
    return metrics
