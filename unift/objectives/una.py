"""UNA: one implicit-reward loss for pairwise, binary and scored feedback.

Source: Wang et al., "UNA: Unifying Alignments of RLHF/PPO, DPO and KTO by a Generalized
Implicit Reward Function" (2024). The implicit reward of a completion is
r = beta * (log pi(y|x) - log pi_ref(y|x)) on sequence log-probs (sum over completion tokens),
its implicit score is sigma(r), and the loss compares sigma(r) with the feedback.
The paper prints a minus sign in front of its MSE; the loss minimised here is the positive
square (docs/methods.md section 2). Equation numbers are not pinned here.
"""

import torch
import torch.nn.functional as F

from unift.objectives.implicit import implicit_reward, pair_stats, reward_stats


def una_pairwise(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pairwise UNA: loss = mean -log sigma(r_chosen - r_rejected). Inputs (B,).

    Identical to DPO's sigmoid loss (tested); kept separate so the UNA family reads as one.
    Stats: "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy",
    "rewards/implicit" (mean over both sides).
    """
    r_c = implicit_reward(policy_chosen, ref_chosen, beta)  # (B,)
    r_r = implicit_reward(policy_rejected, ref_rejected, beta)  # (B,)
    loss = -F.logsigmoid(r_c - r_r).mean()
    stats = {**pair_stats(r_c, r_r), "rewards/implicit": torch.cat([r_c, r_r]).detach().mean()}
    return loss, stats


def una_binary(
    policy: torch.Tensor,
    ref: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    loss: str = "mse",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Binary feedback (thumbs up = 1, down = 0), mean over the batch. Inputs (B,).

    - "mse": (sigma(r) - label)^2
    - "bce": -label log sigma(r) - (1 - label) log(1 - sigma(r)),
             computed as -label logsigmoid(r) - (1 - label) logsigmoid(-r) for stability.
    labels: (B,) bool or float in [0, 1].
    Stats: "rewards/implicit", "rewards/positive", "rewards/negative", "score/pred".
    """
    labels = labels.to(policy.dtype)
    if ((labels < 0) | (labels > 1)).any():
        raise ValueError("una_binary labels must lie in [0, 1] (1 = thumbs up, 0 = down)")
    r = implicit_reward(policy, ref, beta)  # (B,)
    if loss == "mse":
        losses = (torch.sigmoid(r) - labels) ** 2
    elif loss == "bce":
        losses = -labels * F.logsigmoid(r) - (1.0 - labels) * F.logsigmoid(-r)
    else:
        raise ValueError(f"una_binary loss must be 'mse' or 'bce', not {loss!r}")
    return losses.mean(), reward_stats(r, labels)


def una_score(
    policy: torch.Tensor,
    ref: torch.Tensor,
    scores: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scored feedback: loss = mean (sigma(r) - s)^2, s in [0, 1]. Inputs (B,).

    Scores from a reward model or a judge must be rescaled to [0, 1] by the caller.
    Stats: "rewards/implicit", "score/pred" (mean sigma(r)), "score/target" (mean s).
    """
    scores = scores.to(policy.dtype)
    if ((scores < 0) | (scores > 1)).any() or torch.isnan(scores).any():
        lo, hi = scores.min().item(), scores.max().item()
        raise ValueError(
            f"una_score scores must lie in [0, 1]; got range [{lo}, {hi}]. Rescale them."
        )
    r = implicit_reward(policy, ref, beta)  # (B,)
    stats = reward_stats(r)
    stats["score/target"] = scores.detach().mean()
    return ((torch.sigmoid(r) - scores) ** 2).mean(), stats
