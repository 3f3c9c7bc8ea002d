"""Hand-worked tests of the demonstration-mixing loss pieces (unift.objectives.mixed)."""

import math

import pytest
import torch

from unift.objectives.mixed import (
    cosine_decay,
    off_policy_pg,
    phi_sft,
    prefix_advantages,
    top_entropy_mask,
)


def test_luffy_shaping_value_and_gradient_by_hand():
    # one expert token with p = 0.1, A = 2, gamma = 0.1:
    #   f = 0.1 / 0.2 = 0.5, loss = -A f = -1.0
    #   d loss / d log p = -A * gamma * p / (p + gamma)^2 = -2 * 0.1 * 0.1 / 0.04 = -0.5
    logp = torch.tensor([[math.log(0.1), 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 0]])
    loss, stats = off_policy_pg(logp, torch.tensor([2.0]), mask, "shaped", 0.1)
    assert float(loss) == pytest.approx(-1.0)
    loss.backward()
    assert logp.grad[0, 0] == pytest.approx(-0.5)
    assert logp.grad[0, 1] == 0  # off the mask: no gradient
    assert float(stats["expert/prob"]) == pytest.approx(0.1)
    # plain REINFORCE would give -A = -2 per log p: shaping damps confident tokens more than rare
    # ones: p = 0.9 -> -2 * 0.1 * 0.9 / 1.0^2 = -0.18
    logp = torch.tensor([[math.log(0.9)]], requires_grad=True)
    off_policy_pg(logp, torch.tensor([2.0]), torch.ones(1, 1), "shaped", 0.1)[0].backward()
    assert logp.grad[0, 0] == pytest.approx(-0.18)


def test_prefix_rft_ratio_is_pi_and_shares_the_normalizer():
    # "is": loss_t = -A p_t. Tokens p = 0.5 (A = 1) and p = 0.25 (A = -1), normalizer 4:
    #   (-0.5 + 0.25) / 4 = -0.0625; d/d log p = -A p / 4 -> -0.125 and +0.0625
    logp = torch.log(torch.tensor([[0.5], [0.25]])).requires_grad_()
    loss, _ = off_policy_pg(logp, torch.tensor([1.0, -1.0]), torch.ones(2, 1), "is", normalizer=4.0)
    assert float(loss) == pytest.approx(-0.0625)
    loss.backward()
    assert logp.grad.squeeze().tolist() == pytest.approx([-0.125, 0.0625])


def test_phi_sft_by_hand():
    # tokens p = 0.5 and p = 0.9: phi = 0.25 and 0.09 (detached)
    #   loss = (0.25 * ln 2 + 0.09 * -ln 0.9) / 2 = (0.173287 + 0.009482) / 2 = 0.0913845
    #   d loss / d log p = -phi / 2 -> -0.125, -0.045
    logp = torch.log(torch.tensor([[0.5, 0.9]])).requires_grad_()
    loss, stats = phi_sft(logp, torch.ones(1, 2), phi=True)
    assert float(loss) == pytest.approx((0.25 * math.log(2) - 0.09 * math.log(0.9)) / 2)
    loss.backward()
    assert logp.grad.squeeze().tolist() == pytest.approx([-0.125, -0.045])
    assert float(stats["nll/expert"]) == pytest.approx((math.log(2) - math.log(0.9)) / 2)
    # phi off: the plain token-mean NLL, gradient -1/2 per token
    logp = torch.log(torch.tensor([[0.5, 0.9]])).requires_grad_()
    loss, _ = phi_sft(logp, torch.ones(1, 2), phi=False)
    assert float(loss) == pytest.approx((math.log(2) - math.log(0.9)) / 2)


def test_top_entropy_mask_keeps_the_highest_entropy_share_per_row():
    ent = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 9.0],
                        [2.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0],   # 5 tokens: drop floor(5 * 0.8) = 4, keep 0.9
                         [1, 1, 0, 0, 0, 0]])  # 2 tokens: drop floor(1.6) = 1, keep 2.0
    keep = top_entropy_mask(ent, mask, 0.2)
    assert keep.tolist() == [[False, True, False, False, False, False],
                             [True, False, False, False, False, False]]
    # 0.6 of 5 tokens: drop floor(2) = 2 (0.1, 0.3), keep 0.9, 0.5, 0.7; the unmasked 9.0 never
    assert top_entropy_mask(ent, mask, 0.6)[0].tolist() == [False, True, True, False, True, False]
    assert torch.equal(top_entropy_mask(ent, mask, 1.0), mask.bool())


def test_prefix_advantages_by_hand():
    # group 0: unprefixed rewards [1, 0, 0] (mean 1/3, std sqrt(1/3) = 0.57735), prefixed 1
    #   baseline rows: (1 - 1/3) / 0.57735 = 1.1547, (0 - 1/3) / 0.57735 = -0.57735
    #   prefixed row: 1 - 1/3 = 0.6667 (no std)
    # group 1: unprefixed [0.5], prefixed 0 -> baseline of one row: 0; prefixed 0 - 0.5 = -0.5
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    baseline = torch.tensor([True, True, True, False, True, False])
    adv = prefix_advantages(rewards, groups, baseline, "group")
    assert adv.tolist() == pytest.approx([1.1547, -0.57735, -0.57735, 2 / 3, 0.0, -0.5], abs=1e-4)
    # every row in the baseline: exactly group_advantages
    from unift.objectives import group_advantages

    assert torch.equal(prefix_advantages(rewards, groups, torch.ones(6, dtype=torch.bool)),
                       group_advantages(rewards, groups))


def test_cosine_decay_is_chord_mu_schedule():
    # 0.9 -> 0.05 over 10 steps after 2 warm-up steps
    assert cosine_decay(0, 0.9, 0.05, 10, warmup=2) == 0.0
    assert cosine_decay(1, 0.9, 0.05, 10, warmup=2) == pytest.approx(0.45)
    assert cosine_decay(2, 0.9, 0.05, 10, warmup=2) == pytest.approx(0.9)
    assert cosine_decay(7, 0.9, 0.05, 10, warmup=2) == pytest.approx(0.475)  # halfway: the mean
    assert cosine_decay(12, 0.9, 0.05, 10, warmup=2) == 0.05
    assert cosine_decay(5, 0.1, 0.1, 0) == 0.1  # CHORD-phi: fixed
