"""precision "bf16-master": a bf16 model trained through fp32 master weights (unift.train.optim)."""

import pytest
import torch

from tests.train.helpers import source, tiny_run
from unift.train.checkpoint import load
from unift.train.metrics import read_metrics
from unift.train.optim import MasterAdamW
from unift.train.run import train


def constant_gradient_steps(optimizer, param, steps):
    for _ in range(steps):
        param.grad = torch.ones_like(param)
        optimizer.step()
        optimizer.zero_grad()


def test_masters_keep_updates_below_bf16_resolution():
    # AdamW with a constant gradient moves a weight by lr per step (m_hat / sqrt(v_hat) = 1).
    # From 1.0 with lr 1e-3: bf16 steps below 1.0 are 2^-8 = 0.00390625 apart, so
    # 0.999 -> 1.0, 0.998 -> 0.99609375, ..., 0.995 -> 0.99609375, 0.994 -> 0.9921875.
    model_weight = torch.nn.Parameter(torch.ones(1, dtype=torch.bfloat16))
    optimizer = MasterAdamW([model_weight], lr=1e-3, weight_decay=0.0)
    expected = [1.0, 0.99609375, 0.99609375, 0.99609375, 0.99609375, 0.9921875]
    for step, want in enumerate(expected, start=1):
        constant_gradient_steps(optimizer, model_weight, 1)
        assert optimizer.masters[0].item() == pytest.approx(1 - step * 1e-3, abs=1e-6)
        assert model_weight.item() == want
    # plain AdamW on the bf16 weight loses every update: 1.0 - 0.001 rounds back to 1.0
    plain_weight = torch.nn.Parameter(torch.ones(1, dtype=torch.bfloat16))
    constant_gradient_steps(torch.optim.AdamW([plain_weight], lr=1e-3, weight_decay=0.0), plain_weight, 6)
    assert plain_weight.item() == 1.0


def test_micro_batch_gradients_accumulate_in_fp32():
    weight = torch.nn.Parameter(torch.ones(1, dtype=torch.bfloat16))
    optimizer = MasterAdamW([weight], lr=1e-3)
    for grad in (1.0, 2.0**-9):  # in bf16, 1 + 2^-9 rounds to 1
        weight.grad = torch.full((1,), grad, dtype=torch.bfloat16)
        optimizer.collect_grads()
        assert weight.grad is None
    assert optimizer.masters[0].grad.item() == 1 + 2.0**-9


def test_resume_restores_the_fp32_masters(tmp_path):
    # the schedule's horizon is `steps` either way; max_flops=1 stops the first run after step 1
    def config(name, **kw):
        return tiny_run(tmp_path / name, [source("demonstration", "sft", "demonstrations.jsonl", batch_size=4)],
                        steps=5, precision="bf16-master", diagnostics=False,
                        **{"optim.lr": 3e-3, "optim.warmup_steps": 0}, **kw)

    straight = read_metrics(train(config("straight")))
    assert straight[-1]["loss"] < straight[0]["loss"]
    stopped = config("resumed", max_flops=1)
    train(stopped)
    assert len(read_metrics(stopped.output_dir)) == 1
    stopped.max_flops, stopped.resume = 0.0, True
    resumed = read_metrics(train(stopped))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    want, got = load(tmp_path / "straight" / "run"), load(tmp_path / "resumed" / "run")
    for a, b in zip(want["optimizer"]["masters"], got["optimizer"]["masters"], strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    for name, value in want["model"].items():
        assert value.dtype == torch.bfloat16 and torch.equal(value, got["model"][name])
