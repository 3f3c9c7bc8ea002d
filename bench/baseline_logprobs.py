"""The log-prob path before the bench work of 2026-11-22 (padded rows, full fp32 log-softmax),
kept verbatim to measure the change in `unift/train/logprobs.py` side by side."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unift.data.tokenize import Batch


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
    hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    target_mask = batch.loss_mask[:, 1:]  # (B, T-1)
    h = hidden[:, :-1][target_mask]  # (N, H): only positions that predict a completion token
    targets = batch.input_ids[:, 1:][target_mask]  # (N,)
    logits = head(h).float()  # (N, V)
    full = F.log_softmax(logits, dim=-1)
    picked = full.gather(-1, targets[:, None]).squeeze(-1)  # (N,)

    def scatter(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(target_mask.shape, dtype=values.dtype)
        return out.masked_scatter(target_mask, values)

    entropy = kl = None
    if with_entropy or ref_logprobs_full is not None:
        p = full.exp()
        if with_entropy:
            entropy = scatter(-(p * full).sum(-1))
        if ref_logprobs_full is not None:
            with torch.no_grad():
                kl = scatter((p * (full - ref_logprobs_full)).sum(-1).detach())
    result = TokenLogps(scatter(picked), target_mask, entropy, kl)
    if return_full:
        return result, full.detach()
    return result
