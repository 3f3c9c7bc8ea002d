import math

import pytest
import torch

from unift.objectives.dpo import dpo_loss
from unift.objectives.una import una_binary, una_pairwise, una_score

SIG1 = 1 / (1 + math.exp(-1))  # sigma(1) = 0.73106


def test_una_pairwise_equals_dpo_sigmoid_on_random_tensors():
    g = torch.Generator().manual_seed(0)
    logps = [(-10 * torch.rand(64, generator=g)).requires_grad_(True) for _ in range(4)]
    for beta in (0.01, 0.1, 1.0):
        una, una_stats = una_pairwise(*logps, beta=beta)
        dpo, dpo_stats = dpo_loss(*logps, beta=beta, loss_type="sigmoid")
        assert torch.allclose(una, dpo, atol=1e-6)
        grads_una = torch.autograd.grad(una, logps)
        grads_dpo = torch.autograd.grad(dpo, logps)
        for a, b in zip(grads_una, grads_dpo, strict=True):
            assert torch.allclose(a, b, atol=1e-7)
        for key in ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"):
            assert torch.allclose(una_stats[key], dpo_stats[key])


# logratios [2, -2], beta 0.5 -> r = [1, -1], sigma(r) = [0.7311, 0.2689]
POLICY = torch.tensor([-1.0, -5.0])
REF = torch.tensor([-3.0, -3.0])


def test_una_binary_mse_by_hand():
    # labels [1, 0]: ((0.7311 - 1)^2 + (0.2689 - 0)^2) / 2 = (0.07233 + 0.07233) / 2 = 0.07233
    loss, stats = una_binary(POLICY, REF, torch.tensor([True, False]), beta=0.5, loss="mse")
    assert loss.item() == pytest.approx((1 - SIG1) ** 2, abs=1e-6)
    assert stats["rewards/implicit"].item() == pytest.approx(0.0)
    assert stats["rewards/positive"].item() == pytest.approx(1.0)
    assert stats["rewards/negative"].item() == pytest.approx(-1.0)
    assert stats["score/pred"].item() == pytest.approx(0.5)
    # labels swapped [0, 1]: (0.7311^2 + 0.7311^2) / 2 = 0.53445
    loss, _ = una_binary(POLICY, REF, torch.tensor([0.0, 1.0]), beta=0.5, loss="mse")
    assert loss.item() == pytest.approx(SIG1**2, abs=1e-6)


def test_una_binary_bce_by_hand():
    # labels [1, 0]: -log sigma(1) and -log(1 - sigma(-1)) = -log sigma(1): both 0.31326
    loss, _ = una_binary(POLICY, REF, torch.tensor([1.0, 0.0]), beta=0.5, loss="bce")
    assert loss.item() == pytest.approx(-math.log(SIG1), abs=1e-6)
    # labels [0, 1]: -log sigma(-1) = 1.31326 for both
    loss, _ = una_binary(POLICY, REF, torch.tensor([0.0, 1.0]), beta=0.5, loss="bce")
    assert loss.item() == pytest.approx(1.31326, abs=1e-5)


def test_una_binary_bce_is_finite_where_naive_log_of_sigmoid_is_not():
    # r = -200: sigma(r) underflows to 0 in float32, log(0) = -inf; logsigmoid gives 200.
    policy = torch.tensor([-300.0], requires_grad=True)
    loss, _ = una_binary(policy, torch.tensor([-100.0]), torch.tensor([1.0]), beta=1.0, loss="bce")
    loss.backward()
    assert loss.item() == pytest.approx(200.0)
    assert policy.grad.item() == pytest.approx(-1.0)


def test_una_binary_gradient_signs():
    # thumbs up raises log pi, thumbs down lowers it, for both losses
    for kind in ("mse", "bce"):
        policy = torch.tensor([-3.0, -3.0], requires_grad=True)
        una_binary(policy, REF, torch.tensor([1.0, 0.0]), beta=0.5, loss=kind)[0].backward()
        assert policy.grad[0] < 0 < policy.grad[1]


def test_una_binary_omits_absent_label_stats():
    _, stats = una_binary(POLICY, REF, torch.tensor([1.0, 1.0]), beta=0.5)
    assert "rewards/negative" not in stats and stats["rewards/positive"].item() == pytest.approx(
        0.0
    )


def test_una_score_mse_by_hand():
    # sigma(r) = [0.73106, 0.26894], scores [0.5, 0.25]:
    # (0.23106^2 + 0.01894^2) / 2 = (0.053388 + 0.000359) / 2 = 0.026873
    loss, stats = una_score(POLICY, REF, torch.tensor([0.5, 0.25]), beta=0.5)
    assert loss.item() == pytest.approx(0.026873, abs=1e-6)
    assert stats["score/target"].item() == pytest.approx(0.375)


def test_una_score_validates_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        una_score(POLICY, REF, torch.tensor([0.5, 1.5]), beta=0.5)
    with pytest.raises(ValueError):
        una_binary(POLICY, REF, torch.tensor([2.0, 0.0]), beta=0.5)
    with pytest.raises(ValueError):
        una_binary(POLICY, REF, torch.tensor([1.0, 0.0]), beta=0.5, loss="hinge")
