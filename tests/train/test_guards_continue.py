"""Continuing from a run directory (`model.name: <run dir>`, as in sequential recipes such as
SFT then DPO) starts from that run's trained weights: the ones saved in its model/, which
differ from the fresh initialisation."""

import pytest
import torch
from safetensors.torch import load_file

from tests.train.helpers import source, tiny_run
from unift import models
from unift.train.run import build_policy, train

FAST = {"optim.warmup_steps": 0, "optim.schedule": "constant", "precision": "fp32"}


def _saved(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


def _assert_params_equal(model, saved: dict[str, torch.Tensor]):
    state = model.state_dict()
    assert saved, "model.safetensors holds no tensor"
    for name, tensor in saved.items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three SFT steps at a high LR: weights far from the tiny init."""
    tmp = tmp_path_factory.mktemp("first")
    config = tiny_run(tmp, [source("demonstration", "sft", "demonstrations.jsonl")], steps=3,
                      **{"optim.lr": 1e-2, **FAST})
    return train(config)


def test_the_saved_model_is_the_trained_one(trained):
    fresh, _ = models.load("tiny")
    saved = _saved(trained)
    moved = [n for n, t in saved.items() if not torch.allclose(fresh.state_dict()[n], t, atol=1e-4)]
    assert len(moved) > len(saved) // 2, "3 steps at lr 1e-2 should move most tensors"


def test_model_name_of_a_run_directory_loads_its_saved_weights(tmp_path, trained):
    config = tiny_run(tmp_path, [source("preference", "dpo-sigmoid", "preferences.jsonl")], steps=1, **FAST)
    config.model.name = str(trained)
    policy, _, _ = build_policy(config)
    _assert_params_equal(policy, _saved(trained))


def test_a_run_continued_at_a_negligible_lr_saves_the_weights_it_started_from(tmp_path, trained):
    """End to end through `unift train`: model.name = the run directory, one step at LR 1e-30
    (the config wants lr > 0; an AdamW step of ~1e-30 is below fp32 resolution at these weights),
    so the second run saves the first one's weights."""
    config = tiny_run(tmp_path, [source("preference", "dpo-sigmoid", "preferences.jsonl")], steps=1,
                      **{"optim.lr": 1e-30, **FAST})
    config.model.name = str(trained)
    second = train(config)
    first = _saved(trained)
    assert set(_saved(second)) == set(first)
    for name, tensor in _saved(second).items():
        torch.testing.assert_close(tensor, first[name], rtol=0, atol=1e-12, msg=name)
