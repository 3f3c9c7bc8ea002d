"""Direct preference optimisation and its TRL-known variants, on sequence log-probs (B,).

Notation: m = (log pi(y_c) - log pi_ref(y_c)) - (log pi(y_r) - log pi_ref(y_r)), the log-ratio
margin between chosen y_c and rejected y_r; r_c = beta * (log pi(y_c) - log pi_ref(y_c)) and
r_r likewise are the implicit rewards.
"""

import torch
import torch.nn.functional as F

from unift.objectives.implicit import implicit_reward, pair_stats
from unift.objectives.sft import sft_nll

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")


def _preference_stats(
    policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta
) -> dict[str, torch.Tensor]:
    """Detached implicit-reward statistics shared by every pairwise loss."""
    r_c = implicit_reward(policy_chosen, ref_chosen, beta)  # (B,)
    r_r = implicit_reward(policy_rejected, ref_rejected, beta)  # (B,)
    return {
        **pair_stats(r_c, r_r),
        "logps/chosen": policy_chosen.detach().mean(),
        "logps/rejected": policy_rejected.detach().mean(),
    }


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Pairwise preference loss, mean over the batch. All inputs are (B,).

    - "sigmoid" (DPO; Rafailov et al. 2023, eq. 7), with conservative label smoothing eps
      (cDPO; Mitchell 2023, "A note on DPO with noisy preferences", eq. 3):
          loss = -(1 - eps) log sigma(beta m) - eps log sigma(-beta m)
    - "ipo" (IPO; Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from
      Human Preferences", eq. 17; TRL's form):
          loss = (m - 1 / (2 beta))^2
      beta acts as a regulariser here: the margin is pulled to 1/(2 beta), not pushed to
      infinity. TRL computes IPO on LENGTH-AVERAGED log-probs (sum / number of completion
      tokens) and so should the caller: pass `average_logps(...)` for all four inputs. This
      function does not know the lengths and uses whatever it is given.
    - "hinge" (SLiC; Zhao et al. 2023, "SLiC-HF"; TRL's form):
          loss = relu(1 - beta m)
      zero, with zero gradient, once the margin exceeds 1/beta.

    Stats: "rewards/chosen", "rewards/rejected" (means of r_c, r_r), "rewards/margin"
    (mean r_c - r_r), "rewards/accuracy" (fraction with r_c > r_r), "logps/chosen",
    "logps/rejected" (policy sequence log-probs).
    """
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected one of {DPO_LOSS_TYPES}")
    if label_smoothing != 0.0 and loss_type != "sigmoid":
        raise ValueError("label_smoothing applies to loss_type='sigmoid' only")
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)  # m, (B,)
    if loss_type == "sigmoid":
        losses = -(1.0 - label_smoothing) * F.logsigmoid(beta * margin)
        losses = losses - label_smoothing * F.logsigmoid(-beta * margin)
    elif loss_type == "ipo":
        losses = (margin - 1.0 / (2.0 * beta)) ** 2
    else:  # hinge
        losses = torch.relu(1.0 - beta * margin)
    stats = _preference_stats(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    return losses.mean(), stats


def dpo_with_sft(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_token_logps: torch.Tensor,
    chosen_mask: torch.Tensor,
    beta: float,
    weights: dict[str, float] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of DPO-family terms and an SFT NLL term on the chosen completions.

        loss = sum_k w_k * L_k,  k in {"sigmoid", "ipo", "hinge", "sft"}

    Like TRL's `loss_type=[...]` with `loss_weights`. L_sft is the token-mean NLL of the chosen
    completion (`sft_nll(chosen_token_logps, chosen_mask)`), as in TRL's "sft" term (and RPO,
    Pang et al. 2024, up to their per-length normalisation). Every DPO term uses the same
    sequence log-probs you pass: if you mix "ipo" with another term, decide which length
    convention you want (see `dpo_loss`).

    Sequence inputs are (B,); chosen_token_logps and chosen_mask are (B, T).
    weights: default {"sigmoid": 1.0, "sft": 1.0}.
    Stats: those of `dpo_loss`, "loss/<term>" for each term (unweighted), and "nll".
    """
    weights = {"sigmoid": 1.0, "sft": 1.0} if weights is None else weights
    unknown = set(weights) - set(DPO_LOSS_TYPES) - {"sft"}
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; use {DPO_LOSS_TYPES} or 'sft'")
    total = torch.zeros((), dtype=policy_chosen.dtype, device=policy_chosen.device)
    stats = _preference_stats(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    for term, weight in weights.items():
        if term == "sft":
            term_loss, term_stats = sft_nll(chosen_token_logps, chosen_mask)
            stats["nll"] = term_stats["nll"]
        else:
            smoothing = label_smoothing if term == "sigmoid" else 0.0
            term_loss, _ = dpo_loss(
                policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, term, smoothing
            )
        total = total + weight * term_loss
        stats[f"loss/{term}"] = term_loss.detach()
    return total, stats
