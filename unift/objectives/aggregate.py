"""Reducing per-token values to sequences and to one scalar.

Token aggregation is where GRPO, DAPO and Dr. GRPO actually differ, so it lives in one
function, `aggregate`, that every token-level objective calls.

Conventions for the whole package:
- token tensors are (B, T) floats; `mask` is (B, T), bool or 0/1 float, 1 on the tokens that count;
- values under mask 0 may be anything (even inf or nan): they are selected away with
  `torch.where`, never merely multiplied by 0 (inf * 0 = nan).
"""

import torch

AGGREGATIONS = ("token_mean", "sequence_mean", "constant", "sequence_sum")


def apply_mask(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero `values` outside `mask`; return (masked values, float mask), both (B, T)."""
    m = mask.to(values.dtype)
    return torch.where(m != 0, values * m, torch.zeros_like(values)), m


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(y|x) = sum of the masked token log-probs.  (B, T) -> (B,)"""
    values, _ = apply_mask(token_logps, mask)
    return values.sum(-1)


def average_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-averaged log-prob: sum of masked token log-probs / number of masked tokens.

    (B, T) -> (B,). What TRL feeds its IPO loss; a row with no tokens gives 0.
    """
    values, m = apply_mask(token_logps, mask)
    return values.sum(-1) / m.sum(-1).clamp(min=1.0)


def aggregate(
    token_values: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token_mean",
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce per-token values (B, T) to a scalar over the masked tokens.

    Modes (x_{i,t} the value of token t of sequence i, |y_i| its number of masked tokens):
    - "token_mean":    sum_{i,t} x_{i,t} / sum_i |y_i|. Every token weighs the same, whatever
      its sequence's length (DAPO, Yu et al. 2025; TRL's "dapo" and "bnpo").
    - "sequence_mean": (1/B) sum_i (1/|y_i|) sum_t x_{i,t}. Every sequence weighs the same, so a
      token of a short sequence weighs more (GRPO, Shao et al. 2024; TRL's "grpo").
      A sequence with no masked token contributes 0 and still counts in B (as in TRL).
    - "constant":      sum_{i,t} x_{i,t} / normalizer, with a normalizer fixed in advance,
      e.g. B * max_completion_length (Dr. GRPO, Liu et al. 2025). `normalizer` is required:
      the padded width T changes from batch to batch, so it would not be a constant.
    - "sequence_sum":  (1/B) sum_i sum_t x_{i,t}: the per-sequence sum, as in a sequence-level
      NLL -log pi(y|x), averaged over sequences.

    `normalizer`: required for "constant"; for the other modes an optional override of the
    local count they divide by: tokens for "token_mean", sequences for "sequence_mean" and
    "sequence_sum".
    In distributed or accumulated training, pass the count of the WHOLE optimiser step (all
    processes, all micro-batches), divided by the number of processes if the gradients are
    averaged across processes (DDP does). Summing the micro-batch losses then yields exactly the
    mean over the global batch, whatever each shard's length.
    With no tokens at all, token_mean returns 0 (the count is clamped to 1).
    """
    values, m = apply_mask(token_values, mask)
    if mode == "token_mean":
        denom = m.sum().clamp(min=1.0) if normalizer is None else normalizer
        return values.sum() / denom
    if mode == "constant":
        if normalizer is None:
            raise ValueError('aggregate(mode="constant") needs a normalizer, e.g. B * max_len')
        return values.sum() / normalizer
    rows = values.shape[0] if normalizer is None else normalizer
    if mode == "sequence_mean":
        return (values.sum(-1) / m.sum(-1).clamp(min=1.0)).sum() / rows
    if mode == "sequence_sum":
        return values.sum(-1).sum() / rows
    raise ValueError(f"unknown aggregation {mode!r}; expected one of {AGGREGATIONS}")
