"""Group-relative policy gradient (GRPO family) and the UFT-hint loss.

Shapes: N = B rollouts, laid out group by group (the group_size rollouts of one prompt are
adjacent); token tensors (N, T); masks (N, T), 1 on the tokens that count.
"""

import torch

from unift.objectives.aggregate import aggregate
from unift.objectives.kl import KL_ESTIMATORS
from unift.objectives.sft import sft_nll

ADVANTAGE_SCALES = ("group", "batch", "none")


def group_advantages(
    rewards: torch.Tensor, groups: int | torch.Tensor, scale: str = "group", eps: float = 1e-6
) -> torch.Tensor:
    """Group-relative advantages (GRPO; Shao et al. 2024, DeepSeekMath).  (N,) -> (N,)

        A_i = (r_i - mean_group(r)) / (std + eps)

    groups: the group id of every rollout, (N,) (groups of any size, in any order: the rows of
    a prompt, retries included), or an int G for N / G adjacent groups of G.
    - "group": std of the rollout's own group (GRPO; docs/methods.md section 6.2);
    - "batch": std of all N rewards, the mean still per group (TRL's scale_rewards="batch");
    - "none":  no division, A_i = r_i - mean_group(r) (Dr. GRPO, Liu et al. 2025).
    The std is the unbiased sample std (Bessel's correction, n - 1), as `torch.std` computes
    it in TRL and in verl's GRPO advantage. eps defaults to 1e-6 as in the UFT-hint reference
    code (TRL uses 1e-4). A group whose rewards are all equal gets advantage 0, and so does a
    group of one (no baseline can be formed; no std is taken).
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; expected one of {ADVANTAGE_SCALES}")
    if isinstance(groups, int):
        if rewards.dim() != 1 or groups < 1 or rewards.numel() % groups != 0:
            raise ValueError(
                f"rewards must be (N,) with N a multiple of group_size; got {tuple(rewards.shape)}, "
                f"group_size={groups}"
            )
        groups = torch.arange(rewards.numel()) // groups
    if rewards.dim() != 1 or groups.shape != rewards.shape:
        raise ValueError(f"rewards and groups must both be (N,); got {tuple(rewards.shape)}, {tuple(groups.shape)}")
    adv = torch.zeros_like(rewards)
    for g in groups.unique():
        sel = groups == g
        r = rewards[sel]
        centred = r - r.mean()
        if scale == "group" and r.numel() > 1:
            centred = centred / (r.std() + eps)
        adv[sel] = centred
    if scale == "batch" and rewards.numel() > 1:
        adv = adv / (rewards.std() + eps)
    return adv


def ppo_clip_loss(
    token_logps: torch.Tensor,
    old_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    aggregation: str = "token_mean",
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate (PPO; Schulman et al. 2017, eq. 7), per token, then `aggregate`d.

        rho_t = exp(log pi(y_t) - log pi_old(y_t))
        loss_t = -min(rho_t A, clip(rho_t, 1 - epsilon_low, 1 + epsilon_high) A)

    epsilon_high > epsilon_low is DAPO's "clip-higher" (Yu et al. 2025 use 0.28). The choice of
    `aggregation` is what separates GRPO ("sequence_mean"), DAPO ("token_mean") and Dr. GRPO
    ("constant" with normalizer = N * max_completion_length).
    On-policy (old == current, detached) the gradient equals REINFORCE's, -A grad log pi (tested).

    token_logps, old_token_logps: (N, T); old is detached here. advantages: (N,) per rollout
    (or (N, T) per token), detached here. mask: (N, T) completion tokens.
    Stats (token means over this batch, whatever `aggregation` and `normalizer`, so they read the
    same with any accumulation): "loss/policy" (the per-token loss), "clip_fraction" (fraction of
    masked tokens where the clipped branch is the one taken, i.e. no gradient flows),
    "ratio_mean" (token mean of rho).
    """
    active = mask != 0
    log_ratio = torch.where(active, token_logps - old_token_logps.detach(), 0.0)  # (N, T)
    ratio = torch.exp(log_ratio)  # rho, (N, T); 1 off the mask
    adv = advantages.detach()
    adv = adv.unsqueeze(-1) if adv.dim() == 1 else adv  # (N, 1) or (N, T)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high) * adv
    per_token = -torch.min(unclipped, clipped)
    loss = aggregate(per_token, mask, aggregation, normalizer)
    with torch.no_grad():
        clipped_low = (ratio < 1.0 - epsilon_low) & (adv < 0)
        clipped_high = (ratio > 1.0 + epsilon_high) & (adv > 0)
        took_clip = clipped_low | clipped_high
        stats = {
            "loss/policy": aggregate(per_token, mask, "token_mean"),
            "clip_fraction": aggregate(took_clip.to(ratio.dtype), mask, "token_mean"),
            "ratio_mean": aggregate(ratio, mask, "token_mean"),
        }
    return loss, stats


def entropy_bonus(
    token_entropy: torch.Tensor,
    mask: torch.Tensor,
    aggregation: str = "token_mean",
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """loss = -aggregate(H_t): minimising it raises the policy's entropy.

    token_entropy: (N, T) entropy of pi(. | s_t) at each position, computed by the caller from
    the logits (this package sees log-probs of sampled tokens only). Add c_ent * loss to the
    total to get "- c_ent * entropy". Stats: "entropy" (its token mean over this batch).
    """
    entropy = aggregate(token_entropy, mask, aggregation, normalizer)
    return -entropy, {"entropy": aggregate(token_entropy.detach(), mask, "token_mean")}


def ufthint_loss(
    token_logps: torch.Tensor,
    old_token_logps: torch.Tensor | None,
    ref_token_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    hint_mask: torch.Tensor | None = None,
    token_entropy: torch.Tensor | None = None,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    c_ent: float = 0.001,
    c_nll: float = 0.001,
    c_kl: float = 0.001,
    kl_estimator: str = "k3",
    aggregation: str = "token_mean",
    normalizer: float | torch.Tensor | None = None,
    hint_normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """UFT-hint loss (Liu, Farina, Ozdaglar 2025, eq. 3.3 as run in their GRPO code):

        loss = PPO-clip(completion tokens)
               - c_ent * entropy(completion tokens)
               + c_nll * NLL(hint tokens, token mean over hint tokens)
               + c_kl  * KL_k3(pi || pi_ref)(completion tokens)

    The sequence is prompt + hint + completion. `completion_mask` marks the rolled-out tokens,
    `hint_mask` the hint tokens (a prefix of the reference solution placed after the prompt);
    they must not overlap. Hint tokens get only the NLL term: they never enter the policy
    gradient, the entropy or the KL. Policy gradient, entropy and KL share `aggregation` and
    `normalizer`; the hint NLL is a token mean over hint tokens (or / `hint_normalizer`), 0 when
    the batch holds no hint token.

    With hint_mask None (or c_nll 0) this is GRPO with a k3 KL and an entropy bonus; with
    c_nll 0 and hints it is the "RFT (cosine)" ablation. Terms with coefficient 0 are skipped;
    a non-zero c_kl needs ref_token_logps, a non-zero c_ent needs token_entropy.
    old_token_logps None means on-policy (the current log-probs, detached).

    token_logps, old_token_logps, ref_token_logps, token_entropy: (N, T) over the whole
    sequence; advantages: (N,). Stats, token means over this batch whatever the aggregation (so a
    trainer can average them over micro-batches): "loss/policy", "clip_fraction", "ratio_mean",
    and when their term is on: "kl", "entropy", "nll/hint", "hint/tokens".
    """
    if c_kl != 0 and ref_token_logps is None:
        raise ValueError("c_kl != 0 needs ref_token_logps (or pass c_kl=0)")
    if c_ent != 0 and token_entropy is None:
        raise ValueError("c_ent != 0 needs token_entropy (or pass c_ent=0)")
    if hint_mask is not None and ((completion_mask != 0) & (hint_mask != 0)).any():
        raise ValueError(
            "hint_mask and completion_mask overlap: a token is either hint or completion"
        )
    old = token_logps.detach() if old_token_logps is None else old_token_logps

    loss, stats = ppo_clip_loss(
        token_logps,
        old,
        advantages,
        completion_mask,
        epsilon_low,
        epsilon_high,
        aggregation=aggregation,
        normalizer=normalizer,
    )
    if c_ent != 0:
        ent_loss, ent_stats = entropy_bonus(token_entropy, completion_mask, aggregation, normalizer)
        loss = loss + c_ent * ent_loss
        stats.update(ent_stats)
    if c_kl != 0:
        # Zero padded positions before exp: arbitrary padded log-probs would overflow.
        active = completion_mask != 0
        kl_tokens = KL_ESTIMATORS[kl_estimator](
            torch.where(active, token_logps, 0.0), torch.where(active, ref_token_logps, 0.0)
        )
        kl = aggregate(kl_tokens, completion_mask, aggregation, normalizer)
        loss = loss + c_kl * kl
        stats["kl"] = aggregate(kl_tokens.detach(), completion_mask, "token_mean")
    if hint_mask is not None and c_nll != 0:
        nll, nll_stats = sft_nll(token_logps, hint_mask, "token_mean", hint_normalizer)
        loss = loss + c_nll * nll
        stats["nll/hint"] = nll_stats["nll"]
        stats["hint/tokens"] = nll_stats["tokens"]
    return loss, stats
