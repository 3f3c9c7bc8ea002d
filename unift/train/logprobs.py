"""Per-token log-probabilities of completion tokens, computing the LM head only where needed.

Three things keep this cheap on a CPU (each measured in docs/LOG.md, 2026-11-22):

1. Packing: a right-padded batch runs through the decoder as one row of its real tokens, back
   to back, with position ids restarting at each sequence and attention computed causally
   inside each sequence (`_varlen_sdpa`); no work is spent on padding.
2. The (vocabulary-sized) head runs only at positions whose next token is a completion token:
   for a 49k vocabulary that is most of the memory of a naive `model(input_ids).logits`.
3. The log-prob of the target token is `logit - logsumexp(logits)`, computed in row chunks by
   `_target_logp` without materialising an (N, V) fp32 log-softmax or its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from unift.data.tokenize import Batch

_VARLEN = "unift_varlen_sdpa"
_CHUNK = 128  # rows of (N, V) logits handled at once in fp32 (128 x 49k x 4 B = 25 MB)


def _parts(model):
    """(decoder, lm_head) of a causal LM, looking through a PEFT wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


@dataclass
class TokenLogps:
    """Shapes (B, T-1): position t holds the log-prob of token t+1 given tokens <= t."""

    logps: torch.Tensor
    mask: torch.Tensor  # bool, completion targets
    entropy: torch.Tensor | None = None  # token entropy of pi (detached unless asked)
    kl_ref: torch.Tensor | None = None  # exact per-token KL(pi || pi_ref) (detached)


# -- packing ----------------------------------------------------------------------------------


def _varlen_sdpa(module, query, key, value, attention_mask, *, unift_lengths, **kwargs):
    """Causal attention within each of several sequences packed back to back in one row.

    query (1, heads, L, D), key/value (1, kv_heads, L, D); `unift_lengths` sums to L. Returns
    (1, L, heads, D) like `sdpa_attention_forward`, whose causal kernel runs per sequence."""
    outputs, start = [], 0
    for n in unift_lengths:
        part = slice(start, start + n)
        out, _ = sdpa_attention_forward(module, query[:, :, part], key[:, :, part], value[:, :, part],
                                        None, **kwargs)
        outputs.append(out)
        start += n
    return torch.cat(outputs, dim=1), None


# Not registered as a mask function either, so transformers builds no (L, L) mask for it.
AttentionInterface.register(_VARLEN, _varlen_sdpa)


def _right_padded_lengths(attention_mask: torch.Tensor) -> list[int] | None:
    """Row lengths if every row is 1s then 0s (as `collate` makes them), else None."""
    lengths = attention_mask.sum(1)
    positions = torch.arange(attention_mask.shape[1])
    if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
        return None
    return lengths.tolist()


def _hidden_states(decoder, batch: Batch, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Decoder outputs (N, H) at positions (rows[i], cols[i]) of the padded batch.

    Packs the real tokens into one row when the batch is right-padded and the model uses SDPA
    attention; otherwise runs the padded batch with its attention mask."""
    config = decoder.config
    lengths = _right_padded_lengths(batch.attention_mask)
    # Packing swaps the attention implementation for one call; activation checkpointing would
    # recompute the layers after the swap is undone, so checkpointed models run padded.
    checkpointed = getattr(decoder, "gradient_checkpointing", False) and torch.is_grad_enabled()
    if lengths is None or config._attn_implementation != "sdpa" or min(lengths) == max(lengths) or checkpointed:
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return hidden[rows, cols]
    real = batch.attention_mask.bool()
    input_ids = batch.input_ids[real][None]  # (1, L)
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]  # (1, L), restarting at 0
    starts = torch.tensor([0, *lengths[:-1]]).cumsum(0)  # (B,) offset of each row in the pack
    config._attn_implementation = _VARLEN
    try:
        hidden = decoder(input_ids=input_ids, position_ids=position_ids, unift_lengths=lengths).last_hidden_state
    finally:
        config._attn_implementation = "sdpa"
    return hidden[0, starts[rows] + cols]


# -- target log-probs -------------------------------------------------------------------------


class _TargetLogp(torch.autograd.Function):
    """log_softmax(logits)[target] = logit[target] - logsumexp(logits), row chunk by row chunk.

    Forward keeps only the logits (their own dtype) and the (N,) fp32 logsumexp; backward
    writes d/dlogits = g * (onehot(target) - softmax(logits)) chunk by chunk."""

    @staticmethod
    def forward(ctx, logits, targets):  # (N, V), (N,) -> (N,) fp32
        lse = torch.empty(logits.shape[0], dtype=torch.float32)
        for i in range(0, logits.shape[0], _CHUNK):
            lse[i:i + _CHUNK] = torch.logsumexp(logits[i:i + _CHUNK].float(), dim=-1)
        ctx.save_for_backward(logits, targets, lse)
        return logits.gather(-1, targets[:, None]).squeeze(-1).float() - lse

    @staticmethod
    def backward(ctx, grad):  # (N,) -> (N, V)
        logits, targets, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        for i in range(0, logits.shape[0], _CHUNK):
            c = slice(i, i + _CHUNK)
            g = grad[c, None].float()
            d = (logits[c].float() - lse[c, None]).exp_().mul_(-g)  # -g * softmax
            d.scatter_add_(-1, targets[c, None], g)
            out[c] = d
        return out, None


class _Entropy(torch.autograd.Function):
    """Entropy of softmax(logits) per row, H = lse - sum_v p_v logit_v, row chunk by row chunk.

    Backward: dH/dlogit_v = -p_v (log p_v + H). Keeps the logits and two (N,) vectors instead of
    an (N, V) fp32 log-softmax, its exp and their product (the naive graph holds all three)."""

    @staticmethod
    def forward(ctx, logits):  # (N, V) -> (N,) fp32
        lse = torch.empty(logits.shape[0], dtype=torch.float32)
        entropy = torch.empty(logits.shape[0], dtype=torch.float32)
        for i in range(0, logits.shape[0], _CHUNK):
            x = logits[i:i + _CHUNK].float()
            lse[i:i + _CHUNK] = torch.logsumexp(x, dim=-1)
            logp = x - lse[i:i + _CHUNK, None]
            entropy[i:i + _CHUNK] = -(logp.exp() * logp).sum(-1)
        ctx.save_for_backward(logits, lse, entropy)
        return entropy

    @staticmethod
    def backward(ctx, grad):  # (N,) -> (N, V)
        logits, lse, entropy = ctx.saved_tensors
        out = torch.empty_like(logits)
        for i in range(0, logits.shape[0], _CHUNK):
            c = slice(i, i + _CHUNK)
            logp = logits[c].float() - lse[c, None]
            out[c] = -grad[c, None] * logp.exp() * (logp + entropy[c, None])
        return out


def _kl_to_ref(logits: torch.Tensor, ref_full: torch.Tensor) -> torch.Tensor:
    """sum_v p(v) (log p(v) - log q(v)) per row, detached and chunked; logits (N, V)."""
    kl = torch.empty(logits.shape[0], dtype=torch.float32)
    with torch.no_grad():
        for i in range(0, logits.shape[0], _CHUNK):
            logp = F.log_softmax(logits[i:i + _CHUNK].detach().float(), dim=-1)
            kl[i:i + _CHUNK] = (logp.exp() * (logp - ref_full[i:i + _CHUNK])).sum(-1)
    return kl


def token_logps(
    model,
    batch: Batch,
    *,
    with_entropy: bool = False,
    ref_logprobs_full: torch.Tensor | None = None,
    return_full: bool = False,
):
    """Log-probs of the completion tokens of `batch` under `model`.

    ref_logprobs_full: (N, V) log-softmax of pi_ref at the same N completion positions (from a
      previous `return_full=True` call on the reference); if given, the exact per-token
      KL(pi || pi_ref) summed over the vocabulary is returned in `kl_ref` (detached).
    return_full: also return the (N, V) log-softmax (detached), for the reference pass.
    """
    decoder, head = _parts(model)
    target_mask = batch.loss_mask[:, 1:]  # (B, T-1)
    rows, cols = target_mask.nonzero(as_tuple=True)  # (N,) each, row-major like boolean indexing
    h = _hidden_states(decoder, batch, rows, cols)  # (N, H): only positions that predict a completion token
    targets = batch.input_ids[rows, cols + 1]  # (N,)
    logits = head(h)  # (N, V)

    def scatter(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(target_mask.shape, dtype=values.dtype)
        return out.masked_scatter(target_mask, values)

    picked = _TargetLogp.apply(logits, targets)  # (N,)
    entropy = scatter(_Entropy.apply(logits)) if with_entropy else None
    kl = None if ref_logprobs_full is None else scatter(_kl_to_ref(logits, ref_logprobs_full))
    if not return_full:
        return TokenLogps(scatter(picked), target_mask, entropy, kl)
    full = torch.cat([F.log_softmax(logits[i:i + _CHUNK].detach().float(), dim=-1)
                      for i in range(0, logits.shape[0], _CHUNK)])  # (N, V), for the reference pass
    return TokenLogps(scatter(picked), target_mask, entropy, kl), full
