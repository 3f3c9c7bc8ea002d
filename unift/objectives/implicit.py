"""Implicit rewards, the one quantity every alignment objective here is written in.

    r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))      (DPO, Rafailov et al. 2023, eq. 5)

Sequence log-probs are (B,). The statistics are detached means, logged under "rewards/...";
one copy serves the losses (dpo, una, uft_implicit) and the trainer's diagnostics.
"""

import torch


def implicit_reward(policy: torch.Tensor, ref: torch.Tensor, beta: float) -> torch.Tensor:
    """r = beta * (policy - ref), (B,) (with the gradient of `policy`)."""
    return beta * (policy - ref)


def pair_stats(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """"rewards/chosen", "rewards/rejected" (means), "rewards/margin" (mean r_c - r_r),
    "rewards/accuracy" (share with r_c > r_r)."""
    r_c, r_r = r_chosen.detach(), r_rejected.detach()
    return {
        "rewards/chosen": r_c.mean(),
        "rewards/rejected": r_r.mean(),
        "rewards/margin": (r_c - r_r).mean(),
        "rewards/accuracy": (r_c > r_r).to(r_c.dtype).mean(),
    }


def reward_stats(r: torch.Tensor, labels: torch.Tensor | None = None,
                 predicted: bool = True) -> dict[str, torch.Tensor]:
    """"rewards/implicit" (mean r), "score/pred" (mean sigma(r), when `predicted`), and with
    labels "rewards/positive" / "rewards/negative": the mean r of label-1 / label-0 examples,
    present only when the batch holds one (an absent key rather than a fake 0)."""
    r = r.detach()
    stats = {"rewards/implicit": r.mean()}
    if predicted:
        stats["score/pred"] = torch.sigmoid(r).mean()
    if labels is not None:
        positive = labels.detach() > 0.5
        if positive.any():
            stats["rewards/positive"] = r[positive].mean()
        if (~positive).any():
            stats["rewards/negative"] = r[~positive].mean()
    return stats
