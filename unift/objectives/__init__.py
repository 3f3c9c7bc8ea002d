"""Objectives: pure functions of per-token log-probs and masks.

Each loss returns (loss, stats): a differentiable scalar and a dict of detached scalar
metrics named with "/" namespaces. Sequence log-probs are (B,) sums over completion tokens
(`sequence_logps`); token tensors and masks are (B, T). See docs/objectives.md.

`LOSSES` maps a name to its function (loss_type variants bound with functools.partial);
the signatures differ by family (sequence log-probs for preference and feedback losses,
token log-probs and masks for SFT), so the caller picks the inputs by family.
"""

from collections.abc import Callable
from functools import partial

from unift.objectives.aggregate import AGGREGATIONS, aggregate, average_logps, sequence_logps
from unift.objectives.dpo import DPO_LOSS_TYPES, dpo_loss, dpo_with_sft
from unift.objectives.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3
from unift.objectives.policy_gradient import (
    ADVANTAGE_SCALES,
    entropy_bonus,
    group_advantages,
    ppo_clip_loss,
    ufthint_loss,
)
from unift.objectives.sft import sft_nll
from unift.objectives.uft_implicit import (
    token_implicit_rewards,
    uft_implicit_bce,
    uft_implicit_mse,
)
from unift.objectives.una import una_binary, una_pairwise, una_score

LOSSES: dict[str, Callable] = {
    # demonstrations: (token_logps, mask)
    "sft": sft_nll,
    # pairs: (policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    "dpo-sigmoid": partial(dpo_loss, loss_type="sigmoid"),
    "dpo-ipo": partial(dpo_loss, loss_type="ipo"),  # expects length-averaged logps
    "dpo-hinge": partial(dpo_loss, loss_type="hinge"),
    "una-pairwise": una_pairwise,
    # binary feedback: (policy, ref, labels, beta)
    "una-binary-mse": partial(una_binary, loss="mse"),
    "una-binary-bce": partial(una_binary, loss="bce"),
    # scored feedback: (policy, ref, scores, beta)
    "una-score-mse": una_score,
    # demonstrations keeping pi_ref in the gradient: (policy, ref, beta)
    "uft-implicit-mse": uft_implicit_mse,
    "uft-implicit-bce": uft_implicit_bce,
}

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "DPO_LOSS_TYPES",
    "KL_ESTIMATORS",
    "LOSSES",
    "aggregate",
    "average_logps",
    "dpo_loss",
    "dpo_with_sft",
    "entropy_bonus",
    "group_advantages",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "ppo_clip_loss",
    "sequence_logps",
    "sft_nll",
    "token_implicit_rewards",
    "uft_implicit_bce",
    "uft_implicit_mse",
    "ufthint_loss",
    "una_binary",
    "una_pairwise",
    "una_score",
]
