"""The one objective table (`unift.train.losses.OBJECTIVES`): every name returns a scalar loss
with a gradient and detached scalar stats from the inputs of its record kind."""

import torch

import unift.objectives as obj
from unift.rollout.task_source import RolloutBatch
from unift.train import losses

MASK = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])  # 2 rows: 2 and 1 completion tokens
REF = torch.tensor([[0.0, -2.0, -1.0], [0.0, -1.5, 0.0]])


def tensors(kind: str) -> losses.SourceTensors:
    logps = torch.tensor([[0.0, -1.0, -2.0], [0.0, -3.0, 0.0]], requires_grad=True)
    targets = {"binary": torch.tensor([1.0, 0.0]), "score": torch.tensor([0.9, 0.2])}.get(kind)
    rollout = None
    if kind == "task":
        rollout = RolloutBatch(None, torch.tensor([1.0, -1.0]), torch.tensor([1.0, 0.0]), MASK.bool(),
                               torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2), torch.zeros(2, dtype=torch.bool), 4)
    return losses.SourceTensors(logps, MASK, REF, targets, 0.1, entropy=torch.ones(2, 3), rollout=rollout,
                                pairs=kind == "preference")


def test_every_objective_returns_a_scalar_with_gradient_and_detached_stats():
    assert {"sft", "dpo-sigmoid", "dpo-ipo", "dpo-hinge", "una-pairwise", "una-binary-mse", "una-binary-bce",
            "una-score-mse", "uft-implicit-mse", "uft-implicit-bce", "grpo"} <= set(losses.OBJECTIVES)
    for name, objective in losses.OBJECTIVES.items():
        for kind in objective.kinds:
            loss, stats = objective.compute(tensors(kind), {})
            assert loss.dim() == 0 and loss.requires_grad, name
            assert stats, name
            for key, value in stats.items():
                assert torch.as_tensor(value).dim() == 0 and not torch.as_tensor(value).requires_grad, (name, key)


def test_implicit_reward_stats_by_hand():
    # r_c = 0.1 * (-1 - -3) = 0.2, r_r = 0.1 * (-5 - -3) = -0.2
    r_c = obj.implicit_reward(torch.tensor([-1.0]), torch.tensor([-3.0]), 0.1)
    r_r = obj.implicit_reward(torch.tensor([-5.0]), torch.tensor([-3.0]), 0.1)
    stats = obj.pair_stats(r_c, r_r)
    assert abs(float(stats["rewards/margin"]) - 0.4) < 1e-6
    assert float(stats["rewards/accuracy"]) == 1.0
    labelled = obj.reward_stats(torch.tensor([0.2, -0.4, 0.6]), torch.tensor([1.0, 0.0, 1.0]))
    assert abs(float(labelled["rewards/positive"]) - 0.4) < 1e-6  # mean of 0.2 and 0.6
    assert abs(float(labelled["rewards/negative"]) + 0.4) < 1e-6
    assert "rewards/negative" not in obj.reward_stats(torch.tensor([0.1]), torch.tensor([1.0]))


def test_public_names_are_exported():
    for name in obj.__all__:
        assert hasattr(obj, name)
