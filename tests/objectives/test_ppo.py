"""PPO's critic terms (`unift.objectives.ppo`), worked out by hand: GAE on a 3-token trajectory,
its Monte-Carlo and TD limits, the clipped value loss and its gradient, whitening, explained
variance."""

import math

import pytest
import torch

from unift.objectives.ppo import explained_variance, gae, last_token_rewards, value_loss, whiten

NAN = float("nan")


def test_last_token_rewards_put_the_outcome_on_each_rows_last_masked_token():
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    out = last_token_rewards(torch.tensor([1.0, -2.0, 5.0]), mask)
    assert out.tolist() == [[0, 0, 0, 1.0, 0], [0, 0, -2.0, 0, 0], [0, 0, 0, 0, 0]]  # no token: no reward


def test_gae_on_a_three_token_trajectory_by_hand():
    # a prompt position, 3 completion tokens (positions 1-3), padding; reward 1 at the last token.
    # The same trajectory with gamma 0.9 (below) checks where gamma enters.
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    values = torch.tensor([[NAN, 0.5, 0.2, 0.4, NAN]])  # off the mask: anything
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # t=3: delta = 1 + 0 - 0.4 = 0.6 (terminal: V after = 0);    A = 0.6
    # t=2: delta = 0 + 0.4 - 0.2 = 0.2;                          A = 0.2 + 0.5 * 0.6 = 0.5
    # t=1: delta = 0 + 0.2 - 0.5 = -0.3;                         A = -0.3 + 0.5 * 0.5 = -0.05
    assert adv[0].tolist() == pytest.approx([0, -0.05, 0.5, 0.6, 0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0, 0.45, 0.7, 1.0, 0], abs=1e-6)  # R = A + V
    adv, _ = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=3: A = 0.6; t=2: delta = 0.9 * 0.4 - 0.2 = 0.16, A = 0.16 + 0.45 * 0.6 = 0.43
    # t=1: delta = 0.9 * 0.2 - 0.5 = -0.32, A = -0.32 + 0.45 * 0.43 = -0.1265
    assert adv[0].tolist() == pytest.approx([0, -0.1265, 0.43, 0.6, 0], abs=1e-6)


def test_gae_rows_are_independent_and_skip_unmasked_positions():
    # row 1 is row 0 of the test above with a hint token (unmasked) between its first two
    # completion tokens: the recursion jumps over it; row 0 ends earlier, its own terminal state.
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 0, 1, 1]])
    values = torch.tensor([[0.0, 0.3, 0.1, 9.0, 9.0], [0.0, 0.5, 9.0, 0.2, 0.4]])
    rewards = torch.tensor([[0.0, 0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: t=2: A = 2 - 0.1 = 1.9; t=1: delta = 0.1 - 0.3 = -0.2, A = -0.2 + 0.5 * 1.9 = 0.75
    assert adv[0].tolist() == pytest.approx([0, 0.75, 1.9, 0, 0], abs=1e-6)
    assert adv[1].tolist() == pytest.approx([0, -0.05, 0, 0.5, 0.6], abs=1e-6)


def test_gae_with_lambda_1_gamma_1_and_zero_values_is_the_monte_carlo_return():
    torch.manual_seed(0)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1]])
    rewards = torch.randn(2, 7) * mask
    adv, ret = gae(rewards, torch.zeros(2, 7), mask, gamma=1.0, lam=1.0)
    mc = rewards.flip(1).cumsum(1).flip(1) * mask  # G_t = sum_{k >= t} r_k, by a reversed cumsum
    assert torch.allclose(adv, mc, atol=1e-6) and torch.allclose(ret, mc, atol=1e-6)
    # outcome reward only: every token's advantage is the row's reward
    adv, _ = gae(last_token_rewards(torch.tensor([1.0, -0.5]), mask), torch.zeros(2, 7), mask, 1.0, 1.0)
    assert adv.tolist() == [[0, 0, 1, 1, 1, 1, 0], [0, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5]]


def test_gae_with_lambda_0_is_the_one_step_td_error():
    mask = torch.ones(1, 3)
    values = torch.tensor([[0.5, 0.2, 0.4]])
    adv, _ = gae(torch.tensor([[0.0, 0.0, 1.0]]), values, mask, gamma=0.9, lam=0.0)
    # delta_t = r_t + 0.9 V_{t+1} - V_t: 0.18 - 0.5, 0.36 - 0.2, 1 - 0.4
    assert adv[0].tolist() == pytest.approx([-0.32, 0.16, 0.6], abs=1e-6)


def test_clipped_value_loss_by_hand():
    # three tokens, V_old = 1 everywhere, clip 0.2, so V_clip = clamp(V, 0.8, 1.2):
    #   V = 1.5, R = 2: unclipped (1.5 - 2)^2 = 0.25, clipped (1.2 - 2)^2 = 0.64 -> 0.64, no gradient
    #   V = 0.9, R = 2: inside the clip range, both (0.9 - 2)^2 = 1.21 -> gradient 0.5 * 2 * (0.9 - 2) = -1.1
    #   V = 1.5, R = 1: unclipped 0.25, clipped (1.2 - 1)^2 = 0.04 -> 0.25, gradient 0.5 * 2 * 0.5 = 0.5
    # token mean: 0.5 * (0.64 + 1.21 + 0.25) / 3 = 0.35; gradients / 3
    values = torch.tensor([[1.5, 0.9, 1.5, 7.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, stats = value_loss(values, torch.ones(1, 4), torch.tensor([[2.0, 2.0, 1.0, 0.0]]), mask, clip=0.2)
    assert loss.item() == pytest.approx(0.35)
    loss.backward()
    assert values.grad[0].tolist() == pytest.approx([0.0, -1.1 / 3, 0.5 / 3, 0.0])
    assert stats["loss/value"].item() == pytest.approx(0.35)
    assert stats["value/clip_fraction"].item() == pytest.approx(1 / 3)
    assert stats["value/mean"].item() == pytest.approx((1.5 + 0.9 + 1.5) / 3)
    # unclipped (clip 0): 0.5 * (0.25 + 1.21 + 0.25) / 3 = 0.285
    loss, _ = value_loss(values, torch.ones(1, 4), torch.tensor([[2.0, 2.0, 1.0, 0.0]]), mask, clip=0.0)
    assert loss.item() == pytest.approx(0.285)


def test_value_loss_divides_by_a_given_normalizer():
    values = torch.tensor([[1.0, 3.0]])
    loss, _ = value_loss(values, values, torch.zeros(1, 2), torch.ones(1, 2), normalizer=10.0)
    assert loss.item() == pytest.approx(0.5 * (1 + 9) / 10)  # the step's token count, not this batch's 2


def test_whiten_by_hand():
    out = whiten(torch.tensor([[1.0, 2.0, 3.0, NAN]]), torch.tensor([[1, 1, 1, 0]]))
    assert out[0].tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0])  # mean 2, sample std 1
    assert whiten(torch.tensor([[4.0, 0.0]]), torch.tensor([[1, 0]])).tolist() == [[0.0, 0.0]]  # one: centred


def test_explained_variance_by_hand():
    # R = [1, 2, 3, 4]: mean 2.5, Var = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    # V = [1, 2, 2, 5]: R - V = [0, 0, 1, -1], Var = 0.5;  EV = 1 - 0.5 / 1.25 = 0.6
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0, NAN]])
    assert explained_variance(torch.tensor([[1.0, 2.0, 2.0, 5.0, NAN]]), returns, mask).item() == pytest.approx(0.6)
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)  # a perfect critic
    assert explained_variance(torch.full((1, 5), 7.0), returns, mask).item() == pytest.approx(0.0)  # a constant
    assert math.isnan(explained_variance(torch.zeros(1, 5), torch.ones(1, 5), mask).item())  # Var[R] = 0
