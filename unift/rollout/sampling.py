"""Next-token sampling (temperature, top-p, explicit generator) and stop-string detection.

Log-probs: `sample` returns log softmax(logits / T)[token], the log-probability under the model's
temperature-scaled distribution *before* top-p truncation (not renormalised over the nucleus).
That is the policy the trainer differentiates (its log-probs are of softmax(logits / T) too), so
the two agree up to numerics whatever top_p is. With T = 0 (greedy) it is the log-prob at T = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_TOP_P_CANDIDATES = 64  # nucleus searched among the top-k first; full sort only if it is larger


def sample(
    logits: Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """logits (B, V) -> (tokens (B,) int64, logprobs (B,) fp32). See the module docstring.

    Sampling is by inverse CDF with one uniform draw per row (a cumsum and a binary search):
    `torch.multinomial` and Gumbel/exponential noise over the vocabulary were 10-30x slower on this
    CPU at batch 64 x 49k.
    """
    x = logits.float()  # (B, V)
    if temperature > 0 and temperature != 1.0:
        x = x * (1.0 / temperature)
    peak = x.amax(dim=-1, keepdim=True)  # (B, 1)
    unnorm = (x - peak).exp_()  # (B, V) probabilities times z
    z = unnorm.sum(dim=-1, keepdim=True)  # (B, 1)
    if temperature <= 0:
        tokens = x.argmax(dim=-1)  # first maximum, as transformers' greedy search
    elif top_p < 1.0:
        tokens = _sample_top_p(unnorm, z, top_p, generator)
    else:
        cdf = unnorm.cumsum_(dim=-1)  # (B, V), last column == z up to rounding
        u = torch.rand(x.shape[0], 1, generator=generator) * cdf[:, -1:]
        tokens = torch.searchsorted(cdf, u, right=True).clamp_(max=x.shape[-1] - 1).squeeze(1)
    logprobs = x.gather(1, tokens[:, None]) - peak - z.log()
    return tokens, logprobs.squeeze(1)


def _sample_top_p(unnorm: Tensor, z: Tensor, top_p: float, generator: torch.Generator) -> Tensor:
    """Nucleus sampling: keep the most likely tokens while the mass *before* each is < top_p
    (at least one token), renormalise, sample. unnorm (B, V) >= 0, z (B, 1) its row sums."""
    B, V = unnorm.shape
    k = min(_TOP_P_CANDIDATES, V)
    vals, idx = unnorm.topk(k, dim=-1)  # (B, k) sorted descending
    covered = vals.sum(-1) >= top_p * z[:, 0]  # the nucleus lies inside the top-k
    if not bool(covered.all()):
        full = ~covered
        vals_full, idx_full = unnorm[full].sort(dim=-1, descending=True)
        vals = torch.cat([vals, vals.new_zeros(B, V - k)], dim=1)
        idx = torch.cat([idx, idx.new_zeros(B, V - k)], dim=1)
        vals[full], idx[full] = vals_full, idx_full
    before = vals.cumsum(-1) - vals  # mass strictly before each candidate
    vals = vals.masked_fill(before >= top_p * z, 0.0)
    cdf = vals.cumsum_(dim=-1)
    u = torch.rand(B, 1, generator=generator) * cdf[:, -1:]
    pick = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
    return idx.gather(1, pick).squeeze(1)


class StopStrings:
    """Finds stop strings in generated text incrementally: each step decodes only the last few
    tokens of a sequence (enough to contain the longest stop string), so the cost does not grow
    with the completion length. A stop string that first appears when token t is added stops the
    sequence after token t."""

    def __init__(self, tokenizer, stop_strings: Sequence[str]):
        self.tokenizer = tokenizer
        self.stops = [s for s in stop_strings if s]
        # a token decodes to >= 1 character (byte fallback pieces to U+FFFD), plus slack
        self.window = max((len(s) for s in self.stops), default=0) + 4

    def __bool__(self) -> bool:
        return bool(self.stops)

    def hits(self, sequences: Sequence[Sequence[int]]) -> list[bool]:
        """Whether each token sequence's tail contains a stop string."""
        tails = self.tokenizer.batch_decode(
            [seq[-self.window :] for seq in sequences], skip_special_tokens=True
        )
        return [any(s in tail for s in self.stops) for tail in tails]

    def cut(self, text: str) -> tuple[str, bool]:
        """Text up to and including the earliest-ending stop string; whether one was found."""
        ends = [text.find(s) + len(s) for s in self.stops if s in text]
        return (text[: min(ends)], True) if ends else (text, False)
