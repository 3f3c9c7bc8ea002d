"""Per-token estimators of KL(pi || pi_ref) from tokens sampled from pi.

Source: J. Schulman, "Approximating KL divergence" (blog note, 2020). With
logr = log pi_ref(y_t) - log pi(y_t) for a token y_t ~ pi, so that E_pi[exp(logr)] = 1:

    k1 = -logr                       unbiased, high variance, can be negative
    k2 = 0.5 * logr^2                biased (exact to second order as pi -> pi_ref), >= 0
    k3 = exp(logr) - 1 - logr        unbiased, >= 0, low variance (GRPO's choice, DeepSeekMath)

Each function returns the (B, T) per-token values; the caller aggregates them with its
completion mask (`aggregate`). The values are computed everywhere: if padded positions may
hold arbitrary log-probs, zero them first (exp of a large padded difference overflows, and
inf * 0 is nan in the backward pass); `ufthint_loss` does this. No clamping is applied.
k3 is computed as expm1(logr) - logr, accurate and >= 0 even for logr near 0.
"""

from collections.abc import Callable

import torch


def kl_k1(token_logps: torch.Tensor, ref_token_logps: torch.Tensor) -> torch.Tensor:
    """k1 = log pi - log pi_ref per token.  (B, T) -> (B, T)"""
    return token_logps - ref_token_logps


def kl_k2(token_logps: torch.Tensor, ref_token_logps: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 * (log pi_ref - log pi)^2 per token.  (B, T) -> (B, T)"""
    return 0.5 * (ref_token_logps - token_logps) ** 2


def kl_k3(token_logps: torch.Tensor, ref_token_logps: torch.Tensor) -> torch.Tensor:
    """k3 = exp(logr) - 1 - logr, logr = log pi_ref - log pi, per token.  (B, T) -> (B, T)"""
    logr = ref_token_logps - token_logps
    # expm1, not exp(.) - 1: near logr = 0 (pi close to pi_ref, the usual case) the naive form
    # cancels catastrophically and can even turn negative.
    return torch.expm1(logr) - logr


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}
