"""Next-token sampling (temperature, top-p, explicit generator) and stop-string detection.

Log-probs: `sample` returns log softmax(logits / T)[token], the log-probability under the model's
temperature-scaled distribution *before* top-p truncation (not renormalised over the nucleus).
That is the policy the trainer differentiates (its log-probs are of softmax(logits / T) too), so
the two agree up to numerics whatever top_p is. With T = 0 (greedy) it is the log-prob at T = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_TOP_P_CANDIDATES = (64, 1024)  # nucleus searched among the top-k, k growing; full sort last
_BLOCK = 256  # inverse-CDF sampling: pick a block of the vocabulary, then a token inside it


def sample(
    logits: Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator,
    work: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """logits (B, V) -> (tokens (B,) int64, logprobs (B,) fp32). See the module docstring.
    `work`: an optional fp32 buffer of at least (B, V) reused for the fp32 copy of the logits.

    One fp32 copy of the logits, one exp pass, block sums; sampling is by inverse CDF with one
    uniform draw per row (`inverse_cdf`). `torch.multinomial` and exponential/Gumbel noise over
    the vocabulary were 5-10x slower on this CPU at batch 64 x 49k.
    """
    if work is None:
        x = logits.to(torch.float32, copy=True)  # (B, V)
    else:
        x = work[: logits.shape[0]].copy_(logits)
    scale = 1.0 / temperature if temperature > 0 else 1.0
    if scale != 1.0:
        x.mul_(scale)
    peak = x.amax(dim=-1, keepdim=True)  # (B, 1)
    greedy = x.argmax(dim=-1) if temperature <= 0 else None  # first maximum, as transformers
    weights = x.sub_(peak).exp_()  # (B, V) probabilities times z
    z = weights.sum(dim=-1, keepdim=True)  # (B, 1)
    if greedy is not None:
        tokens = greedy
    elif top_p < 1.0:
        tokens = _sample_top_p(weights, z, top_p, generator)
    else:
        tokens = inverse_cdf(weights, generator)
    x_token = logits.gather(1, tokens[:, None]).float()
    if scale != 1.0:
        x_token = x_token * scale  # the same float ops as x, so the same value
    return tokens, (x_token - peak - z.log()).squeeze(1)


def inverse_cdf(weights: Tensor, generator: torch.Generator) -> Tensor:
    """One index per row of non-negative weights (B, V), with probability weight / row sum.

    Two levels: block masses (B, V/256) choose a block, a cumsum inside it the token, so no
    (B, V) cumsum. Rounding can put the draw past the last non-zero weight; it is clamped there,
    so a zero-weight token is never returned."""
    B, V = weights.shape
    n_blocks = -(-V // _BLOCK)
    if n_blocks * _BLOCK != V:
        weights = F.pad(weights, (0, n_blocks * _BLOCK - V))
    blocks = weights.view(B, n_blocks, _BLOCK)
    mass = blocks.sum(dim=-1)  # (B, n_blocks)
    cdf = mass.cumsum(dim=-1)
    u = torch.rand(B, 1, generator=generator) * cdf[:, -1:]  # (B, 1)
    b = torch.searchsorted(cdf, u, right=True)
    b = torch.minimum(b, (cdf < cdf[:, -1:]).sum(-1, keepdim=True))  # last block with mass
    u = u - (cdf.gather(1, b) - mass.gather(1, b))  # draw within the block
    inner = blocks[torch.arange(B), b[:, 0]].cumsum(dim=-1)  # (B, _BLOCK)
    j = torch.searchsorted(inner, u, right=True)
    j = torch.minimum(j, (inner < inner[:, -1:]).sum(-1, keepdim=True))  # last non-zero weight
    return (b * _BLOCK + j).squeeze(1)


def _sample_top_p(weights: Tensor, z: Tensor, top_p: float, generator: torch.Generator) -> Tensor:
    """Nucleus sampling: keep the most likely tokens while the mass *before* each is < top_p
    (at least one token), renormalise, sample. weights (B, V) >= 0, z (B, 1) their row sums.

    The nucleus is looked for among the top 64, then the top 1024 tokens of the rows it did not
    fit in, and only then by a full sort (~4 ms per row of 49k here)."""
    B, V = weights.shape
    tokens = torch.empty(B, dtype=torch.long)
    todo = torch.arange(B)  # rows whose nucleus is not found yet
    for k in (*_TOP_P_CANDIDATES, V):
        k = min(k, V)
        w = weights if len(todo) == B else weights.index_select(0, todo)
        vals, idx = w.topk(k, dim=-1) if k < V else w.sort(dim=-1, descending=True)  # (n, k)
        limit = top_p * z.index_select(0, todo)  # (n, 1)
        covered = (
            (vals.sum(-1, keepdim=True) >= limit)[:, 0]
            if k < V
            else torch.ones(len(todo), dtype=torch.bool)
        )
        if bool(covered.any()):
            vals, idx, limit = vals[covered], idx[covered], limit[covered]
            before = vals.cumsum(-1) - vals  # mass strictly before each candidate
            vals = vals.masked_fill(before >= limit, 0.0)
            tokens[todo[covered]] = idx.gather(1, inverse_cdf(vals, generator)[:, None]).squeeze(1)
        todo = todo[~covered]
        if len(todo) == 0:
            break
    return tokens


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
