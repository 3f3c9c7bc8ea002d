"""Counted FLOPs (unift.train.flops, docs/flops.md) against torch's FlopCounterMode over the same
step: the products the formula counts are the ones the step runs (attention scores, which it
leaves out, are the difference), for offline (sft, dpo) and rollout (rft, uft) steps."""

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.rl.test_rl_trainer import config_with
from tests.train.helpers import source
from unift.rollout import decoder
from unift.train.flops import ModelFlops
from unift.train.run import build_policy, build_sources
from unift.train.step import draw, train_step

# body and head of comparable size, as in the embedded model (body 106M, head 28M)
MODEL = "tiny:layers=4,hidden=256,intermediate=768"


def task(preset: str) -> dict:
    # uft: hints of about half the solution (p = 0.5): partial hints are rolled out, full ones not
    hint = {"T_hint": 1.0, "p_high": 0.5, "p_low": 0.5}
    return {"name": "countdown", "kind": "task", "task": "countdown", "objective": "grpo", "preset": preset,
            "batch_size": 3, "rollout": {"num_generations": 3, "max_new_tokens": 12, "hint": hint}}


CASES = {
    "sft": [source("demonstration", "sft", "demonstrations.jsonl", batch_size=4)],
    "dpo": [source("preference", "dpo-sigmoid", "preferences.jsonl", batch_size=4)],
    "rft": [task("rft")],
    "uft": [task("uft")],
}


def test_model_flops_of_a_tied_llama():
    config = config_with(Path("."), [])
    config.model.name = MODEL
    size = ModelFlops.from_model(build_policy(config)[0])
    # head: vocabulary 49152 x hidden 256; body per layer: q, o 256x256, k, v 256x128, MLP 3 x 256x768,
    # two norms of 256; plus the final norm
    assert size.head == 49152 * 256
    assert size.body == 4 * (2 * 256 * 256 + 2 * 256 * 128 + 3 * 256 * 768 + 2 * 256) + 256
    assert size.forward(10, 3) == 2 * (size.body * 10 + size.head * 3)
    assert size.backward(10, 3) == 2 * size.forward(10, 3)  # every weight trains


@pytest.mark.parametrize("name", list(CASES))
def test_counted_flops_agree_with_flop_counter(tmp_path, monkeypatch, name):
    monkeypatch.setattr(decoder, "can_prepack", lambda dtype: False)  # oneDNN's packed linear is not counted
    config = config_with(tmp_path, CASES[name], precision="fp32")
    config.model.name = MODEL
    policy, tokenizer, _ = build_policy(config)
    from unift.models import ReferencePolicy

    reference = ReferencePolicy(policy)
    sources = build_sources(config, tmp_path, policy, tokenizer, rollout_dtype="float32")
    opt = torch.optim.SGD(policy.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with FlopCounterMode(display=False) as counter:
        micro = [draw(sources, tokenizer, 128, _dist(), step=0, total_steps=2, policy=policy)]
        metrics = train_step(policy, reference, micro, opt, sched, precision="fp32", diagnostics_ref=False,
                             size=ModelFlops.from_model(policy))
    measured = counter.get_total_flops()
    # the issue asks for 15%; the count is 1.6-2% under the measured products (attention scores),
    # and 5% still catches a forgotten pass (rollouts alone are 12-25% of these steps)
    assert metrics["flops"] == pytest.approx(measured, rel=0.05), (name, metrics["flops"] / measured)


def _dist():
    from unift.train.distributed import Dist

    return Dist()
