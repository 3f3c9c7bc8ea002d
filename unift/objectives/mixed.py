"""Loss pieces of the methods that mix demonstrations into RL in one stage (docs/methods.md
section 8): LUFFY's policy shaping, Prefix-RFT's high-entropy prefix tokens and its prefix
advantage, CHORD's phi-weighted SFT and its mu schedule.

Expert tokens are tokens of a demonstration (the task's reference solution) placed where the
policy's own tokens would be: a whole expert completion (LUFFY, CHORD) or a demonstration prefix
followed by the policy's continuation (Prefix-RFT). They were not sampled from pi_old, so the
PPO ratio pi / pi_old does not apply to them; each method replaces it differently.

Shapes: token tensors and masks (N, T); advantages (N,).
"""

import math

import torch

from unift.objectives.aggregate import aggregate

EXPERT_LOSSES = ("none", "shaped", "is", "sft", "sft_phi")
"""How the `grpo` objective trains expert tokens (its param `expert_loss`):
none (not at all), shaped (LUFFY: -A f(pi), f = pi / (pi + gamma)), is (Prefix-RFT: -A pi, the
importance ratio with behaviour probability 1), sft (CHORD-mu: NLL), sft_phi (CHORD-phi: NLL
weighted by phi = p (1 - p))."""


def off_policy_pg(
    token_logps: torch.Tensor,
    advantages: torch.Tensor,
    expert_mask: torch.Tensor,
    shaping: str = "shaped",
    gamma: float = 0.1,
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Policy gradient on expert tokens, with the behaviour probability taken as 1.

        shaped (LUFFY, Yan et al. 2025, "Learning to Reason under Off-Policy Guidance", eq. 6;
                github.com/ElliottYan/LUFFY `off_policy_reshape="p_div_p_0.1"`):
            loss_t = -A f(pi_t),  f(p) = p / (p + gamma)
            d loss_t / d log pi_t = -A gamma p / (p + gamma)^2: tokens the policy finds unlikely
            keep a gradient instead of vanishing with p.
        is (Prefix-RFT, Huang et al. 2025, github.com/ZeroYuHuang/prefix_rft, reshaper
            "importance_sampling"):
            loss_t = -A pi_t

    No clipping (neither code clips these ratios). `aggregate`d as a token mean over
    `expert_mask` unless `normalizer` is given (the trainer passes the step's policy-gradient
    count, so expert and own tokens share one mean). advantages: (N,), detached here.
    Stats: "expert/prob" (token mean of pi on the masked tokens), "loss/expert".
    """
    if shaping not in ("shaped", "is"):
        raise ValueError(f"off_policy_pg shaping must be 'shaped' or 'is', not {shaping!r}")
    active = expert_mask != 0
    prob = torch.exp(torch.where(active, token_logps, 0.0))  # (N, T); 1 off the mask
    f = prob / (prob + gamma) if shaping == "shaped" else prob
    per_token = -advantages.detach().unsqueeze(-1) * f
    loss = aggregate(per_token, expert_mask, "token_mean", normalizer)
    with torch.no_grad():
        stats = {"expert/prob": aggregate(prob, expert_mask, "token_mean"),
                 "loss/expert": aggregate(per_token, expert_mask, "token_mean")}
    return loss, stats


def phi_sft(
    token_logps: torch.Tensor,
    mask: torch.Tensor,
    phi: bool = True,
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CHORD's SFT term on expert tokens (Zhang et al. 2025, "On-Policy RL Meets Off-Policy
    Experts", arXiv:2508.11408; Trinity-RFT `SFTPhiLossFn`):

        loss_t = -phi(p_t) log p_t,  phi(p) = p (1 - p), detached      (phi=True, CHORD-phi)
        loss_t = -log p_t                                                (phi=False, CHORD-mu)

    phi is largest at p = 0.5 and vanishes for tokens the policy already predicts (p -> 1) and for
    tokens it finds very unlikely (p -> 0), so the expert data shapes without overwriting.
    A token mean over `mask` (or / `normalizer`). Stats: "nll/expert" (plain NLL token mean),
    "expert/phi" (token mean of phi).
    """
    active = mask != 0
    logp = torch.where(active, token_logps, 0.0)
    p = torch.exp(logp.detach())
    weight = p * (1 - p) if phi else torch.ones_like(p)
    loss = aggregate(-weight * logp, mask, "token_mean", normalizer)
    with torch.no_grad():
        stats = {"nll/expert": aggregate(-logp, mask, "token_mean"),
                 "expert/phi": aggregate(p * (1 - p), mask, "token_mean")}
    return loss, stats


def top_entropy_mask(token_entropy: torch.Tensor, mask: torch.Tensor, share: float) -> torch.Tensor:
    """Per row, the `share` of its masked tokens with the highest entropy (Prefix-RFT trains only
    the top 20% highest-entropy prefix tokens). (N, T) -> (N, T) bool.

    A row with n masked tokens keeps n - floor(n * (1 - share)) of them (the official code drops
    floor(n * ratio) lowest-entropy tokens); ties are broken by position (the earlier is dropped).
    share >= 1 keeps every masked token.
    """
    active = mask != 0
    if share >= 1:
        return active
    keep = torch.zeros_like(active)
    ent = token_entropy.detach()
    for i in range(active.shape[0]):
        idx = active[i].nonzero().squeeze(-1)  # (n,)
        n = idx.numel()
        drop = math.floor(n * (1 - share))
        if n == 0:
            continue
        order = torch.sort(ent[i, idx], stable=True).indices  # lowest entropy first
        keep[i, idx[order[drop:]]] = True
    return keep


def prefix_advantages(
    rewards: torch.Tensor, groups: torch.Tensor, baseline: torch.Tensor, scale: str = "group", eps: float = 1e-6
) -> torch.Tensor:
    """Group advantages where only `baseline` rows form each group's statistics (Prefix-RFT,
    `compute_grpo_prefix_outcome_advantage`): (N,) -> (N,).

        baseline rows i:      A_i = (r_i - mean_B) / (std_B + eps)   (as `group_advantages`)
        other rows j (prefixed rollouts): A_j = r_j - mean_B, never divided by a std

    with mean_B, std_B over the baseline rows of the row's group (the unprefixed rollouts of its
    prompt). A group without baseline rows gets 0. `scale` applies to the baseline rows as in
    `group_advantages` (group | batch | none).
    """
    from unift.objectives.policy_gradient import group_advantages

    adv = torch.zeros_like(rewards)
    base = baseline.bool()
    if base.any():
        adv[base] = group_advantages(rewards[base], groups[base], scale, eps)
    for g in groups[~base].unique():
        sel = (groups == g) & ~base
        ref = rewards[(groups == g) & base]
        if ref.numel():
            adv[sel] = rewards[sel] - ref.mean()
    return adv


def cosine_decay(step: int, start: float, end: float, steps: int, warmup: int = 0) -> float:
    """A value going from `start` to `end` by a half cosine over `steps` steps after a linear
    warm-up from 0 to `start` over `warmup` steps; `end` afterwards (CHORD's mu schedule,
    Trinity-RFT `mu_schedule_function`; with steps 0 the value is `end` from the warm-up on).

        t < warmup:                 start * t / warmup
        warmup <= t < warmup + steps: end + (start - end) * (1 + cos(pi (t - warmup) / steps)) / 2
        later:                      end
    """
    if step < warmup:
        return start * step / warmup
    if step >= warmup + steps:
        return end
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / steps))
