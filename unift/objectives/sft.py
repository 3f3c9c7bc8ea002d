"""Supervised fine-tuning: negative log-likelihood of demonstration tokens."""

import torch

from unift.objectives.aggregate import aggregate


def sft_nll(
    token_logps: torch.Tensor,
    mask: torch.Tensor,
    reduction: str = "token_mean",
    normalizer: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative log-likelihood of the masked (completion) tokens.

        loss = aggregate(-log pi(y_t | x, y_<t), mask, reduction)

    "token_mean" is the usual SFT cross-entropy (every token weighs the same; TRL's SFT
    default); "sequence_sum" is -log pi(y|x) per sequence averaged over sequences, the form
    that appears in maximum-likelihood derivations. `normalizer` goes to `aggregate`.

    pi_ref does not appear: nothing in this loss holds the model near its starting point
    (see docs/objectives.md and docs/methods.md section 4).

    token_logps: (B, T) log-probs of the demonstration tokens; mask: (B, T).
    Stats: "nll" = mean NLL per masked token (comparable across reductions),
    "tokens" = number of masked tokens.
    """
    if reduction not in ("token_mean", "sequence_sum"):
        raise ValueError(
            f"sft_nll reduction must be 'token_mean' or 'sequence_sum', not {reduction!r}"
        )
    loss = aggregate(-token_logps, mask, reduction, normalizer)
    stats = {
        "nll": aggregate(-token_logps.detach(), mask, "token_mean"),
        "tokens": (mask != 0).sum().to(token_logps.dtype),
    }
    return loss, stats
