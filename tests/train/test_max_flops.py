"""A FLOP budget (`max_flops`): the run stops at the step boundary nearest it, and with
`max_flops_fill` trains past `steps` at the schedules' final values until it gets there."""

from __future__ import annotations

import pytest

from tests.train.helpers import source, tiny_run
from unift.train.metrics import read_metrics
from unift.train.run import train

LR, FLOOR = 1e-3, 0.1


def config(tmp_path, name, **kw):
    return tiny_run(tmp_path / name, [source("demonstration", "sft", "demonstrations.jsonl", batch_size=4)],
                    **{"steps": 2, "diagnostics": False, "optim.lr": LR, "optim.min_lr_ratio": FLOOR,
                       "optim.warmup_steps": 0, **kw})


@pytest.fixture(scope="module")
def step_flops(tmp_path_factory):
    """FLOPs of each step of this config (every step the same: 4 of the same records' tokens)."""
    rows = read_metrics(train(config(tmp_path_factory.mktemp("one"), "one", steps=4)))
    return [b["flops"] - a["flops"] for a, b in zip([{"flops": 0.0}, *rows[:-1]], rows, strict=True)]


def test_fill_trains_past_steps_at_the_final_lr_to_the_budget(tmp_path, step_flops):
    budget = sum(step_flops[:4]) * (1 + 1e-9)  # 4 steps' worth: twice the 2 planned steps
    rows = read_metrics(train(config(tmp_path, "fill", max_flops=budget, max_flops_fill=True)))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # cosine over the 2 planned steps: LR, then the floor, held there for the steps past them
    assert [r["lr"] for r in rows] == pytest.approx([LR, LR * FLOOR, LR * FLOOR, LR * FLOOR])
    assert rows[-1]["flops"] == pytest.approx(sum(step_flops[:4]))


def test_without_fill_the_run_ends_at_steps_under_the_budget(tmp_path, step_flops):
    rows = read_metrics(train(config(tmp_path, "plain", max_flops=sum(step_flops[:4]) * 1.01)))
    assert [r["step"] for r in rows] == [1, 2]


def test_fill_stops_at_the_boundary_nearest_the_budget(tmp_path, step_flops):
    # 3.4 steps' worth: step 4 would end 0.6 of a step past it, stopping after 3 is 0.4 short
    rows = read_metrics(train(config(tmp_path, "near", max_flops=sum(step_flops[:3]) + 0.4 * step_flops[3],
                                     max_flops_fill=True)))
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_fill_goes_at_most_steps_further(tmp_path, step_flops):
    rows = read_metrics(train(config(tmp_path, "cap", max_flops=100 * sum(step_flops), max_flops_fill=True)))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
