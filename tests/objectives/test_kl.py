import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unift.objectives.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3


def test_estimators_by_hand():
    # pi(y) = 0.5, pi_ref(y) = 0.25 -> logr = log(0.25 / 0.5) = -0.69315
    # k1 = 0.69315 ; k2 = 0.5 * 0.69315^2 = 0.24023 ; k3 = 0.5 - 1 + 0.69315 = 0.19315
    logp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    assert kl_k1(logp, ref).item() == pytest.approx(0.69315, abs=1e-5)
    assert kl_k2(logp, ref).item() == pytest.approx(0.24023, abs=1e-5)
    assert kl_k3(logp, ref).item() == pytest.approx(0.19315, abs=1e-5)
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}
    assert kl_k3(ref, ref).item() == 0.0  # identical distributions -> 0


@settings(max_examples=200, deadline=None)
@given(st.floats(-30, 30), st.floats(-30, 30), st.sampled_from([torch.float32, torch.float64]))
def test_k3_and_k2_are_nonnegative(a, b, dtype):
    # (hypothesis found a ~ b ~ 0 breaking the naive exp(logr) - 1 - logr; k3 uses expm1)
    logp, ref = torch.tensor([[a]], dtype=dtype), torch.tensor([[b]], dtype=dtype)
    assert kl_k3(logp, ref).item() >= 0.0
    assert kl_k2(logp, ref).item() >= 0.0


def test_k3_accurate_near_zero_in_float32():
    # logr = 1e-4: k3 = logr^2 / 2 + O(logr^3) = 5e-9; the naive form loses every digit here.
    logp, ref = torch.zeros(1, 1), torch.full((1, 1), 1e-4)
    assert kl_k3(logp, ref).item() == pytest.approx(5e-9, rel=1e-3)


def _sampled_estimates(p, q, n=200_000):
    g = torch.Generator().manual_seed(0)
    p, q = torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64)
    y = torch.multinomial(p, n, replacement=True, generator=g)  # samples from pi = p
    logp, ref = p.log()[y].view(1, -1), q.log()[y].view(1, -1)
    true_kl = (p * (p / q).log()).sum().item()
    return true_kl, {name: fn(logp, ref).mean().item() for name, fn in KL_ESTIMATORS.items()}


def test_sampled_means_approach_true_kl_for_close_distributions():
    # KL(p || q) = 0.5 ln(0.5/0.4) + 0.3 ln(0.3/0.4) + 0 = 0.11157 - 0.08630 = 0.02527
    true_kl, est = _sampled_estimates([0.5, 0.3, 0.2], [0.4, 0.4, 0.2])
    assert true_kl == pytest.approx(0.02527, abs=1e-5)
    for name in ("k1", "k2", "k3"):  # k2's bias is second order: small when p ~ q
        assert est[name] == pytest.approx(true_kl, abs=3e-3), name


def test_k1_k3_unbiased_far_apart_k2_is_not():
    # KL = 0.7 ln 7 + 0.2 ln(2/3) + 0.1 ln(1/6) = 1.36214 - 0.08109 - 0.17918 = 1.10187
    true_kl, est = _sampled_estimates([0.7, 0.2, 0.1], [0.1, 0.3, 0.6])
    assert true_kl == pytest.approx(1.10187, abs=1e-4)
    assert est["k1"] == pytest.approx(true_kl, abs=0.02)
    assert est["k3"] == pytest.approx(true_kl, abs=0.02)
    assert abs(est["k2"] - true_kl) > 0.1
