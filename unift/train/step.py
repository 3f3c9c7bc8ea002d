"""One optimisation step over the mixture, readable top to bottom:

    for each micro-batch (gradient accumulation):
        for each source:  batch -> log-probs (pi_ref without grad, then pi) -> objective
        weighted sum of the sources' losses -> backward
    average gradients over processes -> clip -> optimiser step -> LR schedule -> metrics
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from unift.data.mixture import Stream, shard
from unift.data.tokenize import Batch, collate, tokenize_pair
from unift.precision import PRECISIONS
from unift.rollout.task_source import TaskRollout
from unift.train.distributed import Dist
from unift.train.logprobs import token_logps
from unift.train.losses import Objective, SourceTensors, diagnostics


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
    source: Source
    batch: Batch
    targets: torch.Tensor | None  # (B,) labels / scores
    truncated: int
    extra: dict = field(default_factory=dict)  # task sources: advantages, completion/hint masks
    stats: dict = field(default_factory=dict)  # task sources: rollout metrics (reward_mean, ...)


def encode(source: Source, records: list, tokenizer, max_length: int, *, step: int = 0,
           total_steps: int = 1, policy=None) -> SourceBatch:
    """Records -> token batch. Preferences become 2B rows: chosen ones, then rejected ones.
    Task sources run the rollout stage: problems -> hinted prompts -> rollouts -> rewards."""
    if source.kind == "task":
        batch, extra, stats = source.rollout.build(records, step, total_steps, policy)
        return SourceBatch(source, batch, None, 0, extra, stats)
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
    """One micro-batch from every source: the same global draw on every process, then its shard."""
    return [
        encode(s, shard(s.stream.take(s.batch_size), dist.rank, dist.world), tokenizer, max_length,
               step=step, total_steps=total_steps, policy=policy)
        for s in sources
    ]


def autocast(precision: str):
    """bf16: autocast of fp32 weights; bf16-master (weights already bf16) and fp32: none.
    `auto` must have been resolved (`unift.precision.choose`) before a step runs."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
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
) -> dict[str, float]:
    """Run one optimiser step; returns the step's metrics (averaged over processes)."""
    dist = dist or Dist()
    start = time.perf_counter()
    policy.train()
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = defaultdict(float)
    tokens = 0
    n_micro = len(micro_batches)
    for micro in micro_batches:
        total = 0.0
        for sb in micro:
            src, batch = sb.source, sb.batch
            # 1. log-probs: pi_ref once per batch (no grad), then pi with grad
            ref_logps = ref_full = None
            if "ref_logps" in sb.extra:  # a reused batch of rollouts (PPO epochs)
                ref_logps, ref_full = sb.extra["ref_logps"], sb.extra["ref_full"]
            elif src.objective.wants_ref(src.params) or diagnostics_ref:
                # the exact KL diagnostic needs pi_ref's (N, V) log-softmax: offline sources only
                # (task sources log the k3 estimate of their objective, at no memory cost)
                exact_kl = src.kind != "task"
                with torch.no_grad(), reference.model() as ref_model, autocast(precision):
                    ref = token_logps(ref_model, batch, return_full=exact_kl)
                ref, ref_full = ref if exact_kl else (ref, None)
                ref_logps = ref.logps
                if src.kind == "task":
                    sb.extra.update(ref_logps=ref_logps, ref_full=ref_full)
            with autocast(precision):
                pol = token_logps(policy, batch, ref_logprobs_full=ref_full,
                                  with_entropy=src.objective.needs_entropy and src.params.get("c_ent") != 0)
            if src.kind == "task":  # pi_old: the log-probs at the first use of these rollouts
                sb.extra.setdefault("old_logps", pol.logps.detach())
            # 2. objective (token-mean losses normalise by the global token count per process)
            n_tok = float(pol.mask.sum())
            x = SourceTensors(pol.logps, pol.mask, ref_logps, sb.targets, src.beta,
                              normalizer=dist.sum(n_tok) / dist.world if dist.world > 1 else None,
                              entropy=pol.entropy, extra=sb.extra)
            loss, stats = src.objective.compute(x, src.params)
            stats = {**sb.stats, **stats}
            total = total + src.weight * loss / n_micro
            # diagnostics: implicit rewards and the exact KL(pi || pi_ref) on completion tokens
            stats = {**stats, **diagnostics(x, src.kind)}
            if pol.kl_ref is not None:
                stats["kl/ref"] = (pol.kl_ref * pol.mask).sum() / pol.mask.sum().clamp(min=1)
            sums[f"{src.name}/loss"] += float(loss.detach()) / n_micro
            for key, value in stats.items():
                sums[f"{src.name}/{key}"] += float(value) / n_micro
            sums[f"{src.name}/truncated"] += sb.truncated
            tokens += batch.num_tokens
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
                   step_s=seconds)
    return metrics
