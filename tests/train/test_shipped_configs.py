"""Every shipped config (configs/, configs/recipes/, configs/experiments/) builds as `unift train`
would build it, task sources included, and its first step computes finite losses: the run's
sources, LoRA, LR schedule, one draw (rollouts for task sources) and one train_step at LR 0.
The model is swapped for the tiny one; the model name itself must be a known model or the
output of another shipped config (a recipe's second stage)."""

import copy
import math
from pathlib import Path

import pytest
import torch

from unift import models, precision
from unift.config import load_config
from unift.train.distributed import Dist
from unift.train.run import build_sources, hold_steps, lr_lambda
from unift.train.step import draw, train_step

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if p.parent != ROOT / "configs" / "accelerate")


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny")


def test_configs_are_found():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in CONFIGS}
    assert {"quickstart.yaml", "tiny-rl.yaml", "recipes/lr-reduction-dpo.yaml",
            "experiments/diag-sft.yaml"} <= names
    assert any(s.kind == "task" for p in CONFIGS for s in load_config(p).sources)  # task sources are built


def _known_model(name: str) -> bool:
    outputs = {Path(load_config(p).output_dir) for p in CONFIGS}
    return name.startswith("tiny") or name == models.EMBEDDED or Path(name) in outputs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT / "configs").as_posix())
def test_shipped_config_builds_and_computes_its_first_losses(path, tiny):
    config = load_config(path)
    assert _known_model(config.model.name), f"model.name {config.model.name!r}: not a model nor a shipped run"
    assert config.precision in precision.PRECISIONS
    # the LR schedule over the whole run
    opt = config.optim
    lrs = [lr_lambda(t, warmup=opt.warmup_steps, total=config.steps, schedule=opt.schedule,
                     min_ratio=opt.min_lr_ratio, hold=hold_steps(config)) for t in range(config.steps)]
    assert all(0.0 <= m <= 1.0 for m in lrs) and max(lrs) > 0, lrs
    # the policy: tiny in place of the config's model, with the config's LoRA
    policy, tokenizer = tiny
    policy = copy.deepcopy(policy)
    if config.model.lora is not None:
        lora = config.model.lora
        policy = models.apply_lora(policy, lora.r, lora.alpha, lora.dropout, lora.target_modules)
    sources = build_sources(config, path.parent, policy, tokenizer, rollout_dtype="float32")
    assert [s.name for s in sources] == [sc.name or sc.task or sc.kind for sc in config.sources]
    # one step at LR 0: every source's batch (rollouts included) and objective with its params
    micro = [draw(sources, tokenizer, config.max_length, Dist(), step=0, total_steps=config.steps, policy=policy)]
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    metrics = train_step(policy, models.ReferencePolicy(policy), micro, optimizer, scheduler, precision="fp32",
                         grad_clip=opt.grad_clip, diagnostics_ref=True)
    for s in sources:
        assert math.isfinite(metrics[f"{s.name}/loss"]), s.name
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])
