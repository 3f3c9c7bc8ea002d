"""Per-token log-probabilities of completion tokens, computing the LM head only where needed.

Three things keep this cheap on a CPU (each measured in docs/LOG.md, 2026-11-22):

1. Packing: a right-padded batch runs through the decoder as one row of its real tokens, back
   to back, with position ids restarting at each sequence and attention computed causally
   inside each sequence (`_varlen_sdpa`); no work is spent on padding. Rows that share a
   prompt (the G rollouts of a GRPO group, DPO's chosen and rejected) share one copy of it:
   the prompt runs once and each row's own tokens attend to it.
2. The (vocabulary-sized) head runs only at positions whose next token is a completion token:
   for a 49k vocabulary that is most of the memory of a naive `model(input_ids).logits`.
3. The log-prob of the target token is `logit - logsumexp(logits)`, computed in row chunks by
   `_target_logp` without materialising an (N, V) fp32 log-softmax or its gradient.
"""

from __future__ import annotations

import functools
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
    full: torch.Tensor | None = None  # (N, V) log-softmax at the N target positions (detached), if asked
    tokens: int = 0  # tokens the decoder ran (a shared prompt once): the FLOP count's `tokens`
    head_rows: int = 0  # positions the LM head ran at (N): the FLOP count's `head_rows`
    values: torch.Tensor | None = None  # a value head's V(s_t) from the same hidden states, if given


# -- packing ----------------------------------------------------------------------------------

_MIN_SHARED = 32  # shortest common prefix worth sharing (tokens saved per extra row)


@dataclass
class _Group:
    """Rows packed as one shared prefix (their common first `prefix` tokens, once) followed by
    each row's own suffix. A group of one row has no prefix: the row is packed whole."""

    prefix: int  # shared tokens
    suffixes: list[int]  # length of each row's own tokens, in pack order

    @property
    def sizes(self) -> list[int]:
        """Lengths of the group's pieces in pack order: the prefix (if any), then the suffixes."""
        return ([self.prefix] if self.prefix else []) + self.suffixes


def _groups(ids: torch.Tensor, lengths: list[int]) -> list[tuple[int, list[int]]]:
    """Rows sharing a prefix of at least `_MIN_SHARED` tokens: [(prefix length, rows)].

    Greedy in row order: a row joins the first group whose first row shares >= _MIN_SHARED
    tokens with it, and the group's prefix shrinks to what all its rows share. Every row keeps
    at least one token of its own. GRPO groups (G rollouts of one prompt) and DPO pairs (chosen
    and rejected of one prompt) share their prompts this way."""
    groups: list[tuple[int, list[int]]] = []
    for r, n in enumerate(lengths):
        for g, (prefix, rows) in enumerate(groups):
            m = min(n, lengths[rows[0]]) - 1
            same = int((ids[r, :m] == ids[rows[0], :m]).int().cumprod(0).sum()) if m > 0 else 0
            if same >= _MIN_SHARED:
                groups[g] = (min(prefix, same), rows + [r])
                break
        else:
            groups.append((n - 1, [r]))
    return [(prefix if len(rows) > 1 else 0, rows) for prefix, rows in groups]


def _pack(batch: Batch, lengths: list[int]):
    """-> input_ids (1, L), position_ids (1, L), groups, index (B, T): the pack offset of every
    real position of the padded batch (shared prefix positions map to the group's one copy)."""
    ids = batch.input_ids
    tokens, positions, groups = [], [], []
    index = torch.zeros(ids.shape, dtype=torch.long, device=ids.device)
    offset = 0
    for prefix, rows in _groups(ids, lengths):
        tokens.append(ids[rows[0], :prefix])
        positions.append(torch.arange(prefix, device=ids.device))
        index[rows, :prefix] = torch.arange(offset, offset + prefix, device=ids.device)
        offset += prefix
        for r in rows:
            n = lengths[r] - prefix
            tokens.append(ids[r, prefix:lengths[r]])
            positions.append(torch.arange(prefix, lengths[r], device=ids.device))
            index[r, prefix:lengths[r]] = torch.arange(offset, offset + n, device=ids.device)
            offset += n
        groups.append(_Group(prefix, [lengths[r] - prefix for r in rows]))
    return torch.cat(tokens)[None], torch.cat(positions)[None], groups, index


_EAGER_MAX = 512 * 512  # blocks up to this many (query, key) pairs run as plain matmuls


@functools.lru_cache(maxsize=1024)
def _block_mask(prefix: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, prefix + n) bool on `device`: n queries see the `prefix` keys before them, then
    themselves causally. Cached: every layer of every pass asks for the same few shapes (callers
    never modify it)."""
    own = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    return torch.cat([torch.ones(n, prefix, dtype=torch.bool, device=device), own], 1)


def _attend(module, q, k, v, prefix: int, **kwargs):
    """Attention of one block: q (1, H, n, D) over k/v (1, KV, prefix + n, D), the first `prefix`
    keys fully visible and the last n causal. -> (1, n, H, D).

    Short blocks run as plain matmuls: the KV-head groups fold into the query rows (no repeat of
    k/v) and the softmax runs in fp32; at a few hundred tokens this is ~2x faster than SDPA's CPU
    kernels, forward and backward (docs/LOG.md). Longer blocks use SDPA (it never builds the
    full score matrix)."""
    _, H, n, D = q.shape
    KV, m = k.shape[1], k.shape[2]
    if n * m > _EAGER_MAX:
        mask = _block_mask(prefix, n, q.device)[None, None] if prefix else None
        return sdpa_attention_forward(module, q, k, v, mask, **kwargs)[0]
    scores = torch.matmul(q.reshape(KV, H // KV * n, D), k[0].transpose(1, 2)) * module.scaling
    scores = scores.view(KV, H // KV, n, m).masked_fill(~_block_mask(prefix, n, q.device), float("-inf"))
    probs = scores.softmax(-1, dtype=torch.float32).to(v.dtype).view(KV, H // KV * n, m)
    return torch.matmul(probs, v[0]).view(H, n, D).transpose(0, 1)[None]


def _varlen_sdpa(module, query, key, value, attention_mask, *, unift_groups, **kwargs):
    """Causal attention within the rows of a pack (`_pack`), sharing group prefixes.

    query (1, heads, L, D), key/value (1, kv_heads, L, D). Returns (1, L, heads, D) like
    `sdpa_attention_forward`. Per group: the prefix attends causally to itself; each suffix
    attends to the prefix and causally to itself. The pack is cut with `split` (its backward is
    one concatenation; a slice's backward would write a zero tensor of the whole pack per cut)."""
    sizes = [n for group in unift_groups for n in group.sizes]
    qs, ks, vs = (iter(t.split(sizes, dim=2)) for t in (query, key, value))
    outputs = []
    for group in unift_groups:
        if group.prefix:
            kp, vp = next(ks), next(vs)
            outputs.append(_attend(module, next(qs), kp, vp, 0, **kwargs))
        for _ in group.suffixes:
            q, k, v = next(qs), next(ks), next(vs)
            if group.prefix:
                k, v = torch.cat([kp, k], 2), torch.cat([vp, v], 2)
            outputs.append(_attend(module, q, k, v, group.prefix, **kwargs))
    return torch.cat(outputs, dim=1), None


def _sdpa_or_varlen(module, query, key, value, attention_mask, **kwargs):
    """transformers' "sdpa" attention, unless the call carries a pack (`unift_groups`).

    `_hidden_states` runs a pack under the `_VARLEN` name, which has no mask function, so
    transformers builds no (L, L) mask for it. Activation checkpointing re-runs the layers in
    backward, after the name is back to "sdpa": registered under "sdpa" too, this function sends
    those re-runs (which carry the same `unift_groups`) to the same pack attention."""
    if "unift_groups" in kwargs:
        return _varlen_sdpa(module, query, key, value, attention_mask, **kwargs)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(_VARLEN, _varlen_sdpa)
AttentionInterface.register("sdpa", _sdpa_or_varlen)


def _right_padded_lengths(attention_mask: torch.Tensor) -> list[int] | None:
    """Row lengths if every row is 1s then 0s (as `collate` makes them), else None."""
    lengths = attention_mask.sum(1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None]):
        return None
    return lengths.tolist()


def _hidden_states(decoder, batch: Batch, rows: torch.Tensor, cols: torch.Tensor, *,
                   pack: bool = True) -> tuple[torch.Tensor, int]:
    """Decoder outputs (N, H) at positions (rows[i], cols[i]) of the padded batch, and the
    number of tokens the decoder ran.

    Packs the real tokens into one row (shared prompts once, `_pack`) when the batch is
    right-padded and the model uses SDPA attention; otherwise runs the padded batch with its
    attention mask."""
    config = decoder.config
    lengths = _right_padded_lengths(batch.attention_mask)
    if not pack or lengths is None or config._attn_implementation != "sdpa":
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return hidden[rows, cols], batch.input_ids.numel()
    input_ids, position_ids, groups, index = _pack(batch, lengths)
    config._attn_implementation = _VARLEN
    try:
        hidden = decoder(input_ids=input_ids, position_ids=position_ids, unift_groups=groups).last_hidden_state
    finally:
        config._attn_implementation = "sdpa"
    return hidden[0, index[rows, cols]], input_ids.shape[1]


# -- target log-probs -------------------------------------------------------------------------


class _TargetLogp(torch.autograd.Function):
    """log_softmax(logits)[target] = logit[target] - logsumexp(logits), row chunk by row chunk.

    Forward keeps only the logits (their own dtype) and the (N,) fp32 logsumexp; backward
    writes d/dlogits = g * (onehot(target) - softmax(logits)) chunk by chunk."""

    @staticmethod
    def forward(ctx, logits, targets):  # (N, V), (N,) -> (N,) fp32
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
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
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        entropy = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
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
    kl = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
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
    pack: bool = True,
    value_head=None,
):
    """Log-probs of the completion tokens of `batch` under `model`.

    ref_logprobs_full: (N, V) log-softmax of pi_ref at the same N completion positions (from a
      previous `return_full=True` call on the reference); if given, the exact per-token
      KL(pi || pi_ref) summed over the vocabulary is returned in `kl_ref` (detached).
    return_full: also compute the (N, V) log-softmax (detached, in `full`), for the reference pass.
    pack: False runs the padded batch as it is (the reference the packed path is tested against).
    value_head: (N, H) -> (N,), e.g. `unift.models.ValueHead`; its values at the same positions
      (PPO's V(s_t), with gradient unless under no_grad) are returned in `values`.
    """
    decoder, head = _parts(model)
    target_mask = batch.loss_mask[:, 1:]  # (B, T-1)
    rows, cols = target_mask.nonzero(as_tuple=True)  # (N,) each, row-major like boolean indexing
    # (N, H): only the positions that predict a completion token
    h, tokens = _hidden_states(decoder, batch, rows, cols, pack=pack)
    targets = batch.input_ids[rows, cols + 1]  # (N,)
    logits = head(h)  # (N, V)

    def scatter(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(target_mask.shape, dtype=values.dtype, device=values.device)
        return out.masked_scatter(target_mask, values)

    picked = _TargetLogp.apply(logits, targets)  # (N,)
    entropy = scatter(_Entropy.apply(logits)) if with_entropy else None
    kl = None if ref_logprobs_full is None else scatter(_kl_to_ref(logits, ref_logprobs_full))
    full = None
    if return_full:
        full = torch.cat([F.log_softmax(logits[i:i + _CHUNK].detach().float(), dim=-1)
                          for i in range(0, logits.shape[0], _CHUNK)])  # (N, V)
    values = None if value_head is None else scatter(value_head(h).float())
    return TokenLogps(scatter(picked), target_mask, entropy, kl, full, tokens, int(rows.numel()), values)
