"""Objectives: pure functions of per-token log-probs and masks.

Each loss returns (loss, stats): a differentiable scalar and a dict of detached scalar
metrics named with "/" namespaces. Sequence log-probs are (B,) sums over completion tokens
(`sequence_logps`); token tensors and masks are (B, T). See docs/objectives.md.

The one table from objective names to these functions is the trainer's
(`unift.train.losses.OBJECTIVES`): it knows which inputs each family reads.
"""

from unift.objectives.aggregate import AGGREGATIONS, aggregate, average_logps, sequence_logps
from unift.objectives.dpo import DPO_LOSS_TYPES, dpo_loss, dpo_with_sft
from unift.objectives.implicit import implicit_reward, pair_stats, reward_stats
from unift.objectives.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3
from unift.objectives.mixed import (
    EXPERT_LOSSES,
    cosine_decay,
    off_policy_pg,
    phi_sft,
    prefix_advantages,
    top_entropy_mask,
)
from unift.objectives.policy_gradient import (
    ADVANTAGE_SCALES,
    entropy_bonus,
    group_advantages,
    ppo_clip_loss,
    ufthint_loss,
)
from unift.objectives.ppo import explained_variance, gae, last_token_rewards, value_loss, whiten
from unift.objectives.sft import sft_nll
from unift.objectives.uft_implicit import (
    token_implicit_rewards,
    uft_implicit_bce,
    uft_implicit_mse,
)
from unift.objectives.una import una_binary, una_pairwise, una_score

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "DPO_LOSS_TYPES",
    "EXPERT_LOSSES",
    "KL_ESTIMATORS",
    "aggregate",
    "cosine_decay",
    "off_policy_pg",
    "phi_sft",
    "prefix_advantages",
    "top_entropy_mask",
    "average_logps",
    "dpo_loss",
    "dpo_with_sft",
    "entropy_bonus",
    "explained_variance",
    "gae",
    "group_advantages",
    "implicit_reward",
    "pair_stats",
    "reward_stats",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "last_token_rewards",
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
    "value_loss",
    "whiten",
]
