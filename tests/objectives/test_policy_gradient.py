import math

import pytest
import torch

from unift.objectives.aggregate import AGGREGATIONS, aggregate
from unift.objectives.policy_gradient import (
    entropy_bonus,
    group_advantages,
    ppo_clip_loss,
    ufthint_loss,
)

# ---------------------------------------------------------------- advantages


def test_group_advantages_by_hand():
    # group A = [1, 0, 0, 1]: mean 0.5, unbiased std = sqrt(4 * 0.25 / 3) = 0.57735
    #   -> (r - 0.5) / 0.57735 = +-0.86603
    # group B = [0.1] * 4: all equal -> 0
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.1, 0.1, 0.1, 0.1])
    adv = group_advantages(rewards, 4)
    s = 0.5 / math.sqrt(1 / 3)
    assert torch.allclose(adv, torch.tensor([s, -s, -s, s, 0, 0, 0, 0]), atol=1e-5)
    # "batch": mean per group, std over all 8: mean 0.3, squared deviations
    # 2 * 0.49 + 2 * 0.09 + 4 * 0.04 = 1.32, / 7 = 0.18857, std 0.43425 -> 0.5 / 0.43425 = 1.15142
    adv = group_advantages(rewards, 4, scale="batch")
    assert torch.allclose(adv[:4], torch.tensor([1.15142, -1.15142, -1.15142, 1.15142]), atol=1e-4)
    assert torch.allclose(adv[4:], torch.zeros(4), atol=1e-6)
    # "none": just centred
    adv = group_advantages(rewards, 4, scale="none")
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]), atol=1e-6)


def test_group_advantages_with_group_ids_by_hand():
    # what the trainer passes: a group id per row, groups of unequal size in any order (retries)
    # group 0 = rows 1, 3, 4 = [3, 0, 0]: mean 1, deviations [2, -1, -1], unbiased std
    #   sqrt((4 + 1 + 1) / 2) = sqrt(3) -> [1.15470, -0.57735, -0.57735]
    # group 2 = rows 0, 2 = [1, 0]: mean 0.5, std sqrt(0.5) = 0.70711 -> [0.70711, -0.70711]
    # group 5 = row 5 alone: no baseline -> 0
    rewards = torch.tensor([1.0, 3.0, 0.0, 0.0, 0.0, 7.0])
    groups = torch.tensor([2, 0, 2, 0, 0, 5])
    adv = group_advantages(rewards, groups)
    r3, r2 = 1 / math.sqrt(3), 1 / math.sqrt(2)
    assert torch.allclose(adv, torch.tensor([r2, 2 * r3, -r2, -r3, -r3, 0.0]), atol=1e-5)
    # "none": centred within each group only
    assert torch.allclose(group_advantages(rewards, groups, scale="none"),
                          torch.tensor([0.5, 2.0, -0.5, -1.0, -1.0, 0.0]), atol=1e-6)
    # "batch": the same centring over the std of all 6 rewards: mean 11/6, squared deviations
    # 59 - 6 * (11/6)^2 = 38.8333, / 5 = 7.76667, std 2.78687
    assert torch.allclose(group_advantages(rewards, groups, scale="batch"),
                          torch.tensor([0.5, 2.0, -0.5, -1.0, -1.0, 0.0]) / 2.78687, atol=1e-5)
    with pytest.raises(ValueError, match="both be"):
        group_advantages(rewards, groups[:5])


def test_group_advantages_edge_cases():
    assert torch.equal(group_advantages(torch.tensor([1.0, 0.3]), 1), torch.zeros(2))
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(4), 2, scale="global")


# ---------------------------------------------------------------- PPO-clip

# One sequence of 3 tokens with ratios rho = [1, 1.5, 0.5] (old log-probs 0 for simplicity).
LOGPS = torch.log(torch.tensor([[1.0, 1.5, 0.5], [1.0, 1.5, 0.5]]))
OLD = torch.zeros(2, 3)
FULL = torch.ones(2, 3, dtype=torch.bool)


def test_ppo_clip_by_hand():
    # eps 0.2 -> clip(rho) = [1, 1.2, 0.8].
    # A = +1: min(rho, clip(rho)) = [1, 1.2, 0.5] -> loss tokens [-1, -1.2, -0.5]
    # A = -1: min(-rho, -clip(rho)) = [-1, -1.5, -0.8] -> loss tokens [1, 1.5, 0.8]
    # token mean over 6 tokens: (-2.7 + 3.3) / 6 = 0.1
    loss, stats = ppo_clip_loss(LOGPS, OLD, torch.tensor([1.0, -1.0]), FULL)
    assert loss.item() == pytest.approx(0.1, abs=1e-6)
    # clipped branch taken: rho 1.5 with A > 0, rho 0.5 with A < 0 -> 2 of 6 tokens
    assert stats["clip_fraction"].item() == pytest.approx(2 / 6)
    # ratio mean (1 + 1.5 + 0.5) * 2 / 6 = 1
    assert stats["ratio_mean"].item() == pytest.approx(1.0)


def test_ppo_clip_higher_by_hand():
    # DAPO's clip-higher, eps_high 0.28: A = +1, rho 1.5 -> clipped to 1.28 instead of 1.2
    # loss tokens [-1, -1.28, -0.5] -> mean -2.78 / 3 = -0.92667
    loss, _ = ppo_clip_loss(LOGPS[:1], OLD[:1], torch.tensor([1.0]), FULL[:1], epsilon_high=0.28)
    assert loss.item() == pytest.approx(-2.78 / 3, abs=1e-6)


def test_clipped_tokens_get_no_gradient():
    logps = LOGPS[:1].clone().requires_grad_(True)
    ppo_clip_loss(logps, OLD[:1], torch.tensor([1.0]), FULL[:1])[0].backward()
    # token 1 (rho 1.5 > 1.2, A > 0) is clipped: zero gradient; token 0: -A * rho / 3 = -1/3;
    # token 2 (rho 0.5, A > 0, unclipped branch is the min): -0.5 / 3
    assert torch.allclose(logps.grad, torch.tensor([[-1 / 3, 0.0, -0.5 / 3]]))


# Unequal lengths: sequence 0 has 3 tokens and A = +1, sequence 1 has 1 token and A = -1.
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
ADV = torch.tensor([1.0, -1.0])


@pytest.mark.parametrize(
    "aggregation, normalizer, expected",
    [
        # on-policy, rho = 1: loss tokens are -A: [-1, -1, -1] and [+1]
        ("token_mean", None, -0.5),  # DAPO: (-3 + 1) / 4 tokens
        ("sequence_mean", None, 0.0),  # GRPO: (-3/3 + 1/1) / 2
        ("constant", 8, -0.25),  # Dr. GRPO: (-3 + 1) / (B * max_len = 2 * 4)
        ("sequence_sum", None, -1.0),  # (-3 + 1) / 2
    ],
)
def test_grpo_dapo_drgrpo_differ_on_unequal_lengths(aggregation, normalizer, expected):
    logps = torch.full((2, 4), -1.0)
    loss, _ = ppo_clip_loss(logps, logps, ADV, MASK, aggregation=aggregation, normalizer=normalizer)
    assert loss.item() == pytest.approx(expected)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_on_policy_ppo_gradient_equals_reinforce_gradient(aggregation):
    # With old = current (detached) the ratio is 1 and its gradient is grad log pi, so
    # grad PPO-clip = grad of -A log pi (REINFORCE), under the same aggregation.
    g = torch.Generator().manual_seed(0)
    logps = (-3 * torch.rand(6, 7, generator=g)).requires_grad_(True)
    adv = torch.randn(6, generator=g)
    lengths = torch.tensor([7, 1, 4, 5, 2, 6])
    mask = torch.arange(7) < lengths[:, None]  # (6, 7), unequal lengths
    norm = 6 * 7 if aggregation == "constant" else None
    ppo, _ = ppo_clip_loss(logps, logps.detach(), adv, mask, 0.1, 0.3, aggregation, norm)
    reinforce = aggregate(-adv[:, None] * logps, mask, aggregation, norm)
    # values differ (rho = 1 gives -A per token), gradients must not
    assert ppo.item() == pytest.approx(
        aggregate(-adv[:, None].expand(6, 7), mask, aggregation, norm).item()
    )
    (g_ppo,) = torch.autograd.grad(ppo, logps)
    (g_reinforce,) = torch.autograd.grad(reinforce, logps)
    assert torch.allclose(g_ppo, g_reinforce, atol=1e-7)
    assert g_ppo.abs().sum() > 0


def test_ppo_padding_changes_nothing_even_extreme_values():
    logps = torch.full((2, 4), -1.0, requires_grad=True)
    old = torch.full((2, 4), -1.2)
    old_padded = torch.where(MASK, old, torch.tensor(-1e4))  # exp(1e4) would overflow
    base, _ = ppo_clip_loss(logps, old, ADV, MASK)
    (g_base,) = torch.autograd.grad(base, logps)
    loss, stats = ppo_clip_loss(logps, old_padded, ADV, MASK)
    (g,) = torch.autograd.grad(loss, logps)
    assert loss.item() == base.item() and torch.equal(g, g_base)
    assert torch.isfinite(stats["ratio_mean"])


def test_entropy_bonus():
    # entropies [1, 3, (pad) 100] and [2, pad, pad]: token mean (1 + 3 + 2) / 3 = 2 -> loss -2
    ent = torch.tensor([[1.0, 3.0, 100.0], [2.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    loss, stats = entropy_bonus(ent, mask)
    assert loss.item() == pytest.approx(-2.0) and stats["entropy"].item() == pytest.approx(2.0)
    # sequence_mean: (4/2 + 2/1) / 2 = 2 as well; sequence_sum: (4 + 2) / 2 = 3 -> loss -3
    assert entropy_bonus(ent, mask, "sequence_sum")[0].item() == pytest.approx(-3.0)


# ---------------------------------------------------------------- UFT-hint

# One rollout: [prompt, hint, hint, completion, completion, pad]
HINT = torch.tensor([[0, 1, 1, 0, 0, 0]], dtype=torch.bool)
COMP = torch.tensor([[0, 0, 0, 1, 1, 0]], dtype=torch.bool)
TOK = torch.tensor([[-9.0, -1.0, -3.0, -0.5, -1.0, 7.0]])
# ref - logp on completion tokens = [0, ln 2] -> k3 = [0, 2 - 1 - ln 2 = 0.30685]
REF = torch.tensor([[0.0, 0.0, 0.0, -0.5, -1.0 + math.log(2.0), 0.0]])
ENT = torch.tensor([[0.0, 0.0, 0.0, 1.0, 3.0, 0.0]])
COEF = {"c_ent": 0.1, "c_nll": 0.5, "c_kl": 1.0}


def test_ufthint_loss_by_hand():
    # on-policy (old None), A = 2:   PG = token mean of -A * 1 over 2 completion tokens = -2
    # entropy mean (1 + 3) / 2 = 2:  - 0.1 * 2 = -0.2
    # hint NLL (1 + 3) / 2 = 2:      + 0.5 * 2 = +1
    # k3 mean (0 + 0.30685) / 2:     + 1.0 * 0.15343
    # total = -2 - 0.2 + 1 + 0.15343 = -1.04657
    loss, stats = ufthint_loss(TOK, None, REF, torch.tensor([2.0]), COMP, HINT, ENT, **COEF)
    assert loss.item() == pytest.approx(-1.04657, abs=1e-5)
    assert stats["loss/policy"].item() == pytest.approx(-2.0)
    assert stats["entropy"].item() == pytest.approx(2.0)
    assert stats["nll/hint"].item() == pytest.approx(2.0)
    assert stats["hint/tokens"].item() == 2
    assert stats["kl"].item() == pytest.approx(0.15343, abs=1e-5)


def test_ufthint_stats_are_this_batchs_token_means_whatever_the_normaliser():
    """A trainer divides the loss by the whole step's token count (here 8 of which this batch
    holds 2): the loss scales by 2/8, the logged means do not (they are averaged over micro-batches)."""
    loss, stats = ufthint_loss(TOK, None, REF, torch.tensor([2.0]), COMP, HINT, ENT, **COEF)
    part, part_stats = ufthint_loss(TOK, None, REF, torch.tensor([2.0]), COMP, HINT, ENT, normalizer=8.0,
                                    hint_normalizer=8.0, **COEF)
    assert part.item() == pytest.approx(loss.item() * 2 / 8)
    for key in ("loss/policy", "entropy", "kl", "nll/hint"):
        assert part_stats[key].item() == pytest.approx(stats[key].item()), key


def test_ufthint_gradient_by_token_and_hint_isolation():
    tok = TOK.clone().requires_grad_(True)
    loss, _ = ufthint_loss(tok, None, REF, torch.tensor([2.0]), COMP, HINT, ENT, **COEF)
    (g,) = torch.autograd.grad(loss, tok)
    # prompt / pad: 0.  hint: only NLL, 0.5 * (-1 / 2 hint tokens) = -0.25 each.
    # completion: PG -A / 2 = -1 each; KL d k3 / d logp = 1 - exp(logr) = [0, -1], * 1.0 / 2
    #   -> [-1 + 0, -1 - 0.5] = [-1, -1.5]
    assert torch.allclose(g, torch.tensor([[0.0, -0.25, -0.25, -1.0, -1.5, 0.0]]))
    # Old/ref log-probs and entropies at hint, prompt and pad positions never matter.
    off = ~COMP
    junk = torch.tensor([[1e4, -1e4, 1e4, 0.0, 0.0, -1e4]])
    old = torch.where(off, junk, TOK)
    args = (
        torch.where(off, junk, REF),
        torch.tensor([2.0]),
        COMP,
        HINT,
        torch.where(off, junk, ENT),
    )
    loss2, _ = ufthint_loss(tok, old, *args, **COEF)
    (g2,) = torch.autograd.grad(loss2, tok)
    assert loss2.item() == pytest.approx(loss.item()) and torch.allclose(g2, g)


def test_ufthint_without_hints_is_grpo_and_checks_inputs():
    adv = torch.tensor([2.0])
    loss, stats = ufthint_loss(TOK, None, None, adv, COMP, None, None, c_ent=0, c_kl=0)
    assert loss.item() == pytest.approx(-2.0) and "nll/hint" not in stats and "kl" not in stats
    # a batch after T_hint (empty hint mask) has NLL 0
    empty = torch.zeros_like(HINT)
    loss, _ = ufthint_loss(TOK, None, REF, adv, COMP, empty, ENT, **COEF)
    assert loss.item() == pytest.approx(-2 - 0.2 + 0.15343, abs=1e-5)
    with pytest.raises(ValueError, match="overlap"):
        ufthint_loss(TOK, None, REF, adv, COMP, COMP, ENT, **COEF)
    with pytest.raises(ValueError, match="ref_token_logps"):
        ufthint_loss(TOK, None, None, adv, COMP, HINT, ENT)
    with pytest.raises(ValueError, match="token_entropy"):
        ufthint_loss(TOK, None, REF, adv, COMP, HINT, None)
