"""Token and row means are exact over the whole optimiser step: splitting the same global batch
into micro-batches (gradient accumulation) or over processes changes no gradient, for every
kind of objective, GRPO included (with fixed rollouts). Micro-batches of unequal token counts
make a per-micro-batch mean (the bug this guards against) visibly wrong."""

import copy
import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests.train.helpers import DATA
from unift import models
from unift.config import RolloutSpec
from unift.data.mixture import Stream
from unift.data.records import load_jsonl
from unift.rollout.task_source import Row, TaskRollout
from unift.train import losses
from unift.train.distributed import Dist, init
from unift.train.run import rollout_args
from unift.train.step import Source, SourceBatch, encode, step_counts, train_step

MODEL = "tiny:layers=2,hidden=64,intermediate=128"


@pytest.fixture(scope="module")
def tiny():
    policy, tokenizer = models.load(MODEL)
    return policy, tokenizer


def offline(kind: str, objective: str, path: str, params: dict | None = None) -> tuple[Source, list]:
    records = load_jsonl(DATA / path, kind)[:4]
    src = Source(objective, kind, losses.get(objective, kind), Stream(records, 0, 0), beta=0.1,
                 params=params or {})
    return src, records


def rollout_rows() -> list[Row]:
    """Two prompts x 2 rollouts of very unequal lengths, hints on the first prompt."""
    return [
        Row([1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11, 12, 13], 1.0, True, 0),
        Row([1, 2, 3, 4], [5, 6], [7, 8], 0.0, False, 0),
        Row([1, 2, 9], [], [4], 1.0, True, 1),
        Row([1, 2, 9], [], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], 0.5, False, 1),
    ]


def grpo_batches(tokenizer, groups: list[list[int]], aggregation: str) -> tuple[Source, list[SourceBatch]]:
    """Fixed rollouts (advantages over all four rows), one SourceBatch per list of row indices."""
    rollout = TaskRollout(None, tokenizer, None, seed=0, **rollout_args(RolloutSpec(max_new_tokens=16)))
    rows = rollout_rows()
    adv = torch.tensor([1.0, -1.0, 0.5, -0.25])
    params = {"c_kl": 0.01, "c_ent": 0.01, "c_nll": 0.5, "aggregation": aggregation}
    src = Source("task", "task", losses.get("grpo", "task"), None, params=params, rollout=rollout)
    out = []
    for sel in groups:
        rb = rollout.collate([rows[i] for i in sel], adv[sel], [1 if rows[i].hint_ids else 0 for i in sel])
        out.append(SourceBatch(src, rb.batch, rollout=rb))
    return src, out


def gradients(policy, micro_batches, dist: Dist | None = None) -> list[torch.Tensor]:
    """Gradients of one train_step (lr 0, no clipping) on a fresh copy of `policy`."""
    policy = copy.deepcopy(policy)
    reference = models.ReferencePolicy(policy)
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    train_step(policy, reference, copy.deepcopy(micro_batches), opt, sched, precision="fp32", grad_clip=0.0,
               diagnostics_ref=False, dist=dist)
    return [p.grad.clone() for p in policy.parameters()]


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=2e-4, atol=1e-7)


def differs(a, b) -> bool:
    return any(not torch.allclose(x, y, rtol=1e-3, atol=1e-6) for x, y in zip(a, b, strict=True))


OFFLINE = [
    ("demonstration", "sft", "demonstrations.jsonl", {}),
    ("preference", "dpo-sigmoid", "preferences.jsonl", {"sft_weight": 1.0}),
    ("preference", "una-pairwise", "preferences.jsonl", {}),
    ("binary", "una-binary-mse", "binary.jsonl", {}),
]


@pytest.mark.parametrize("kind,objective,path,params", OFFLINE, ids=[c[1] for c in OFFLINE])
def test_grad_accum_2_equals_1_on_the_same_global_batch(tiny, kind, objective, path, params):
    policy, tokenizer = tiny
    src, records = offline(kind, objective, path, params)
    whole = [[encode(src, records, tokenizer, 128)]]
    halves = [[encode(src, records[:1], tokenizer, 128)], [encode(src, records[1:], tokenizer, 128)]]
    one, two = gradients(policy, whole), gradients(policy, halves)
    assert_same(two, one)
    # the comparison is sensitive: the first micro-batch alone gives another gradient
    assert differs(gradients(policy, halves[:1]), one)


def test_a_run_with_grad_accum_2_trains_on_every_micro_batch(tmp_path):
    """Through `unift train`'s loop: 2 micro-batches of 2 draw the same 4 records per source as
    one of 4 (each stream hands its records out in order), so every step's losses, gradient norm
    and token count equal the single-micro-batch run's. A run loop that drew one micro-batch, or
    a step that skipped one, would train on half the batch: other losses, tokens and weights."""
    from tests.train.helpers import source, tiny_run
    from unift.train.metrics import read_metrics
    from unift.train.run import train

    def run(name: str, batch_size: int, grad_accum: int) -> list[dict]:
        sources = [source("demonstration", "sft", "demonstrations.jsonl", name="demo", batch_size=batch_size,
                          weight=0.5),
                   source("preference", "dpo-sigmoid", "preferences.jsonl", name="pref", batch_size=batch_size,
                          weight=0.5)]
        config = tiny_run(tmp_path / name, sources, steps=3, precision="fp32",
                          **{"optim.lr": 1e-3, "optim.warmup_steps": 0, "optim.grad_accum": grad_accum})
        return read_metrics(train(config))

    one, two = run("one", 4, 1), run("two", 2, 2)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):  # steps 2 and 3: the same update was made before them
        for key in ("loss", "demo/loss", "pref/loss", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
        assert b["tokens"] == a["tokens"]


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "constant"])
def test_grpo_grad_accum_2_equals_1_with_fixed_rollouts(tiny, aggregation):
    policy, tokenizer = tiny
    _, whole = grpo_batches(tokenizer, [[0, 1, 2, 3]], aggregation)
    _, halves = grpo_batches(tokenizer, [[0, 1], [2, 3]], aggregation)
    one = gradients(policy, [whole])
    assert_same(gradients(policy, [[halves[0]], [halves[1]]]), one)
    assert differs(gradients(policy, [[halves[0]]]), one)  # no micro-batch may be dropped


def test_constant_aggregation_divides_by_rollouts_times_max_new_tokens(tiny):
    """Dr. GRPO: the policy term is sum / (4 rollouts x 16 max_new_tokens), not a token mean."""
    policy, tokenizer = tiny
    src, (sb,) = grpo_batches(tokenizer, [[0, 1, 2, 3]], "constant")
    src.params.update(c_kl=0.0, c_ent=0.0, c_nll=0.0)
    comp = sb.rollout.completion_mask
    logps = torch.zeros(comp.shape)  # on-policy ratio 1: each token's loss is -A of its row
    sb.rollout.old_logps = logps
    x = losses.SourceTensors(logps, comp, None, None, 0.1, rollout=sb.rollout)
    loss, _ = src.objective.compute(x, src.params)
    # rows have 7, 2, 1, 11 completion tokens and advantages 1, -1, 0.5, -0.25:
    # sum over tokens of -A = -(7 - 2 + 0.5 - 2.75) = -2.75; / (4 x 16) = -0.04296875
    # (a token mean would give -2.75 / 21 = -0.131)
    assert float(loss) == pytest.approx(-0.04296875)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, shards, out_dir: str):
    torch.set_num_threads(1)
    # what `accelerate launch` sets; accelerate's Accelerator then joins the processes (gloo)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    dist = init("cpu")
    try:
        assert (dist.rank, dist.world, dist.device.type) == (rank, 2, "cpu")
        policy, tokenizer = models.load(MODEL)
        _, batches = grpo_batches(tokenizer, [shards[rank]], "token_mean")
        grads = gradients(policy, [batches], dist)
        torch.save(grads, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_equal_one_for_grpo(tiny, tmp_path):
    """Process 0 holds 9 completion tokens, process 1 holds 12: averaging two per-process token
    means would weigh them equally; the step's token count weighs every token the same. Both
    sides run through accelerate's Accelerator (`unift.train.distributed.init`), as the trainer."""
    policy, tokenizer = tiny
    _, whole = grpo_batches(tokenizer, [[0, 1, 2, 3]], "token_mean")
    one = gradients(policy, [whole], init("cpu"))
    mp.spawn(_worker, args=(_free_port(), [[0, 1], [2, 3]], str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):  # averaged gradients: the same on both processes, and the single-process ones
        assert_same(torch.load(tmp_path / f"rank{rank}.pt"), one)


def expert_batches(tokenizer, groups: list[list[int]], params: dict) -> tuple[Source, list[SourceBatch]]:
    """rollout_rows plus an expert row per prompt (LUFFY's / CHORD's) and a prefixed rollout
    (Prefix-RFT's): expert tokens of unequal counts in every micro-batch."""
    rollout = TaskRollout(None, tokenizer, None, seed=0, **rollout_args(RolloutSpec(max_new_tokens=16)))
    rows = rollout_rows()[:2] + [Row([1, 2, 3, 4], [], [20, 21, 22], 1.0, True, 0, kind="expert"),
                                 Row([1, 2, 9], [30, 31, 32, 33], [34], 1.0, True, 1, kind="prefix", baseline=False),
                                 *rollout_rows()[2:]]
    adv = torch.tensor([1.0, -1.0, 0.5, 0.75, 0.5, -0.25])
    src = Source("task", "task", losses.get("grpo", "task"), None, params=params, rollout=rollout)
    out = []
    for sel in groups:
        rb = rollout.collate([rows[i] for i in sel], adv[sel], [0] * len(sel), step=3, total_steps=10)
        out.append(SourceBatch(src, rb.batch, rollout=rb))
    return src, out


EXPERT = [
    {"expert_loss": "shaped", "aggregation": "token_mean"},
    {"expert_loss": "shaped", "aggregation": "constant"},
    {"expert_loss": "is", "expert_top_entropy": 0.5},
    {"expert_loss": "sft", "mu_start": 0.9, "mu_end": 0.1, "mu_decay": 1.0},
    {"expert_loss": "sft_phi", "mu_start": 0.1, "mu_end": 0.1},
]


@pytest.mark.parametrize("params", EXPERT, ids=[p["expert_loss"] + "-" + p.get("aggregation", "") for p in EXPERT])
def test_expert_losses_grad_accum_2_equals_1(tiny, params):
    """Expert tokens are 3 of micro-batch 1 and 4 of micro-batch 2: the expert and policy-gradient
    means divide by the step's expert tokens (StepCounts.expert_tokens), not each micro-batch's."""
    policy, tokenizer = tiny
    params = {"c_kl": 0.0, "c_ent": 0.01, "c_nll": 0.5, **params}
    _, whole = expert_batches(tokenizer, [[0, 1, 2, 3, 4, 5]], params)
    _, halves = expert_batches(tokenizer, [[0, 1, 2], [3, 4, 5]], params)
    one = gradients(policy, [whole])
    assert_same(gradients(policy, [[halves[0]], [halves[1]]]), one)
    counts = step_counts([[halves[0]], [halves[1]]], Dist())["task"]  # 3 + 4 expert tokens, 22 own
    assert (counts.expert_tokens, counts.tokens, counts.rows) == (7, 22, 6)
    # and the expert term matters: without it the gradient differs
    _, plain = expert_batches(tokenizer, [[0, 1, 2, 3, 4, 5]], {**params, "expert_loss": "none"})
    assert differs(gradients(policy, [plain]), one)


def test_shaped_expert_tokens_share_the_policy_gradient_token_mean(tiny):
    """LUFFY under token_mean: one mean over own and expert tokens. Rows (advantage: own tokens,
    expert tokens): row 0 (1: 7, 0), row 1 (-1: 2, 0), expert row (0.5: 0, 3), prefixed row (0.75:
    1, 4), row 2 (0.5: 1, 0), row 3 (-0.25: 11, 0); own tokens 22, expert tokens 7, divisor 29.
    With log pi = log 0.5 everywhere (on-policy ratio 1) an own token gives -A, an expert token
    -A * 0.5 / (0.5 + 0.1) = -A * 5/6:
        own:    -(7 * 1 + 2 * -1 + 1 * 0.75 + 1 * 0.5 + 11 * -0.25) = -(7 - 2 + 0.75 + 0.5 - 2.75) = -3.5
        expert: -(3 * 0.5 + 4 * 0.75) * 5/6 = -4.5 * 5/6 = -3.75
        loss = (-3.5 - 3.75) / 29 = -0.25 (a mean over own tokens only would give -3.5 / 22 - 3.75 / 7)"""
    _, tokenizer = tiny
    src, (sb,) = expert_batches(tokenizer, [[0, 1, 2, 3, 4, 5]], {"c_kl": 0.0, "c_ent": 0.0, "c_nll": 0.0,
                                                                  "expert_loss": "shaped"})
    rb = sb.rollout
    logps = torch.full(rb.completion_mask.shape, math.log(0.5))
    rb.old_logps = logps
    assert int(rb.completion_mask.sum()) == 22 and int(rb.expert_mask.sum()) == 7
    x = losses.SourceTensors(logps, rb.completion_mask | rb.expert_mask, None, None, 0.1, rollout=rb)
    loss, stats = src.objective.compute(x, src.params)
    assert float(loss) == pytest.approx((-3.5 - 3.75) / 29)
    assert float(stats["expert/prob"]) == pytest.approx(0.5)
