"""A lean Llama-family decoder for sampling on CPU.

Why not `transformers.generate`: on this 2-core CPU (SmolLM2-135M, bf16, batch 64) a decode step
of `generate` costs ~240 ms while the model's matrix products need ~50: the rest is cache
objects, mask building and generic attention. This module keeps its own copy of the weights
(`Decoder.sync` copies them in from the training model, LoRA merged) and runs the forward pass
with plain tensor ops:

    x = embed[ids]                                             # (B, T, D)
    per layer:  x += o_proj(attention(rope(q), rope(k), v))   # GQA over the KV cache
                x += down(silu(gate(x')) * up(x'))            # x' = rms_norm(x)
    logits = lm_head(rms_norm(x[:, -1]))                       # (B, V)

Layout choices (measurements in docs/LOG.md, 2026-11-22):
- q/k/v and gate/up are fused into one matrix each; the 1/sqrt(head_dim) attention scale is
  folded into the q weights (or into Qwen3's q-norm weight);
- `prefill` encodes each distinct prompt once into a *prompt cache* (P, kv_heads, Lp, head_dim),
  and the columns all prompts share (system prompt, instructions: `prompt_layout` puts the
  common prefix first) only once;
  the G samples of a prompt share it during decoding: the prompt part of attention is one
  (S*G x hd) @ (hd x Lp) product per prompt and kv head, so the prompt keys/values are read once
  per prompt instead of once per sample. Decode attention is memory-bound here (the KV cache
  does not fit in L3), so this is what matters;
- the per-sample *completion cache* (B, kv_heads, capacity, head_dim) is one contiguous tensor
  per layer, and attention runs over its whole capacity with an additive mask: a bf16 batched
  matmul over a slice of a longer buffer was ~4x slower on CPU. The engine grows it in chunks;
- weights are also kept in oneDNN's blocked layout (`prepack`, redone at every `sync`), which
  makes the few-row products of decoding 1.4-1.8x faster in bf16 (AMX Xeon) and 1.3-2.4x in
  fp32 (AVX2-only EPYC);
- attention is batched matmuls with the kv-head groups folded into the query rows (no
  `repeat_kv` copy) and a bf16 softmax (fp32 inside the kernel); torch's
  scaled_dot_product_attention was ~10x slower in bf16 here.

Supported: LlamaForCausalLM, Qwen2ForCausalLM (q/k/v bias), Qwen3ForCausalLM (per-head q/k norm).
`unsupported_reason(config)` says why another model is not; the engine then falls back to
`transformers.generate`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
_STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn", "longrope")
NEG_INF = float("-inf")


def unsupported_reason(config) -> str | None:
    """None if `Decoder` reproduces this model's forward pass, else a short reason."""
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {config.model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"hidden_act {config.hidden_act!r}"
    if getattr(config, "mlp_bias", False):
        return "mlp_bias"
    if getattr(config, "use_sliding_window", False):
        return "sliding-window attention"
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return "non-full attention layers"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in _STATIC_ROPE_TYPES:
        return f"rope_type {rope_type!r}"
    return None


# ---------------------------------------------------------------------------------------------
# Linear layers on oneDNN-prepacked weights


@functools.cache
def can_prepack(dtype: torch.dtype) -> bool:
    """Whether this torch build and CPU run oneDNN's prepacked linear in `dtype` (tried once)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        w = torch.eye(16, dtype=dtype)
        x = torch.ones(2, 16, dtype=dtype)
        return torch.equal(linear(x, w, prepack(w)), x)
    except RuntimeError:
        return False


def prepack(weight: Tensor) -> Tensor:
    """`weight` (out, in) reordered into oneDNN's blocked layout for `linear`. A product of a few
    rows by these weights runs faster than on the plain row-major matrix: bf16 ~1.8x at 16 rows
    (1.4x at 64) on an AMX Xeon, identical results; fp32 1.3-2.4x at 16-64 rows on an AVX2-only
    CPU (docs/LOG.md). The copy is opaque: re-pack after every weight change."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, 16)


def linear(x: Tensor, weight: Tensor, packed: Tensor | None, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, on the prepacked copy when there is one."""
    if packed is None:
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


# ---------------------------------------------------------------------------------------------
# Reading (LoRA-merged) weights from a Hugging Face / PEFT model


def _base_model(model):
    """The plain transformers model under a PEFT wrapper (same modules, adapters still attached)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def effective_weight(linear) -> Tensor:
    """The weight a (possibly LoRA-wrapped) linear layer applies: W + sum_a scale_a * B_a @ A_a."""
    base = getattr(linear, "base_layer", None)
    if base is None:
        return linear.weight
    weight = base.weight
    if getattr(linear, "merged", False) or getattr(linear, "disable_adapters", False):
        return weight  # merged: already inside W; disabled: not applied
    for name in linear.active_adapters:
        if name not in getattr(linear, "lora_A", {}):
            continue
        if getattr(linear, "use_dora", {}).get(name, False):
            raise NotImplementedError("DoRA adapters are not supported by the rollout decoder")
        weight = weight + linear.get_delta_weight(name).to(weight.dtype)
    return weight


def effective_bias(linear) -> Tensor | None:
    return getattr(linear, "base_layer", linear).bias


# ---------------------------------------------------------------------------------------------
# Caches


@dataclass
class PromptCache:
    """Keys/values of P distinct prompts, left-padded to Lp: k[l], v[l] (P, kv_heads, Lp, hd);
    mask (P, Lp) additive (0 real token, -inf padding)."""

    k: list[Tensor]
    v: list[Tensor]
    mask: Tensor

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def select(self, prompts: Tensor) -> None:
        self.k = [k.index_select(0, prompts) for k in self.k]
        self.v = [v.index_select(0, prompts) for v in self.v]
        self.mask = self.mask.index_select(0, prompts)


class Slots:
    """Where each sample row's queries sit in the per-prompt layout (P, S), S = most rows of any
    prompt. `identity` when rows are exactly prompt-major with S rows per prompt (no gather)."""

    def __init__(self, row_prompt: list[int], num_prompts: int, device: torch.device | str = "cpu"):
        B, P = len(row_prompt), num_prompts
        counts = [0] * P
        slot_of_row = []
        for p in row_prompt:
            slot_of_row.append((p, counts[p]))
            counts[p] += 1
        self.P, self.S = P, max(counts)
        self.identity = B == P * self.S and all(
            p == r // self.S and s == r % self.S for r, (p, s) in enumerate(slot_of_row)
        )
        row_slots = [p * self.S + s for p, s in slot_of_row]
        slot_rows = [B] * (P * self.S)  # B: an all-zero padding row
        for r, slot in enumerate(row_slots):
            slot_rows[slot] = r
        self.row_slots = torch.tensor(row_slots, device=device)  # (B,)
        self.slot_rows = torch.tensor(slot_rows, device=device)  # (P * S,)

    def to_slots(self, t: Tensor) -> Tensor:
        """(B, KV, G, X) -> (P, KV, S * G, X)."""
        B, KV, G, X = t.shape
        if not self.identity:
            t = torch.cat([t, t.new_zeros(1, KV, G, X)]).index_select(0, self.slot_rows)
        return t.view(self.P, self.S, KV, G, X).transpose(1, 2).reshape(self.P, KV, self.S * G, X)

    def from_slots(self, u: Tensor) -> Tensor:
        """(P, KV, S * G, X) -> (B, KV, G, X)."""
        P, KV, SG, X = u.shape
        G = SG // self.S
        t = u.view(P, KV, self.S, G, X).transpose(1, 2).reshape(P * self.S, KV, G, X)
        return t if self.identity else t.index_select(0, self.row_slots)


@dataclass
class RowCache:
    """Decoding state of B sample rows: the shared prompt cache, each row's prompt, and each row's
    own completion keys/values k[l], v[l] (B, kv_heads, capacity, hd) of which `length` columns
    are written. mask (B, 1, 1, Lp + capacity) is the additive mask over [prompt | completion]
    columns, in the decoder dtype; the caller opens a column (sets it to 0) before writing it."""

    prompt: PromptCache
    row_prompt: list[int]
    k: list[Tensor]
    v: list[Tensor]
    mask: Tensor
    length: int = 0

    def __post_init__(self):
        self.slots = Slots(self.row_prompt, self.prompt.mask.shape[0], self.mask.device)

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    def grow(self, capacity: int) -> None:
        """Reallocate the completion part with room for `capacity` columns."""
        old_capacity = self.capacity
        if capacity <= old_capacity:
            return
        for cache in (self.k, self.v):
            for i, old in enumerate(cache):
                new = old.new_zeros(*old.shape[:2], capacity, old.shape[3])  # zeros: never NaN
                new[:, :, : self.length] = old[:, :, : self.length]
                cache[i] = new
        extra = self.mask.new_full((*self.mask.shape[:-1], capacity - old_capacity), NEG_INF)
        self.mask = torch.cat([self.mask, extra], dim=-1)

    def select(self, rows: list[int]) -> None:
        """Keep only the sample rows `rows`, in that order (and only the prompts they use)."""
        index = torch.tensor(rows, device=self.mask.device)
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]
        self.mask = self.mask.index_select(0, index)
        kept = [self.row_prompt[r] for r in rows]
        used = sorted(set(kept))
        if len(used) < self.prompt.mask.shape[0]:
            self.prompt.select(torch.tensor(used, device=self.mask.device))
        renumber = {p: i for i, p in enumerate(used)}
        self.row_prompt = [renumber[p] for p in kept]
        self.slots = Slots(self.row_prompt, len(used), self.mask.device)


# ---------------------------------------------------------------------------------------------
# Prompt layout


def prompt_layout(prompts: list[list[int]], pad_id: int = 0, share: bool = True) -> tuple[Tensor, Tensor, int]:
    """ids, valid (P, Lp) and `shared` for `Decoder.prefill`: the prompts' longest common prefix
    in the first `shared` columns (at most every prompt's length - 1; 0 for one prompt or
    share=False), then each prompt's rest right-aligned, padding in between, so every prompt ends
    at column Lp - 1. RL prompts share their system prompt and instructions: the prefill encodes
    those columns once. Rotary positions count real tokens only, so the padding in the middle
    changes nothing."""
    shared = min(len(p) for p in prompts) - 1 if share and len(prompts) > 1 else 0
    first = prompts[0]
    for p in prompts[1:]:
        shared = next((i for i in range(shared) if p[i] != first[i]), shared)
    Lp = shared + max(len(p) - shared for p in prompts)
    ids = torch.full((len(prompts), Lp), pad_id, dtype=torch.long)
    valid = torch.zeros(len(prompts), Lp, dtype=torch.bool)
    ids[:, :shared] = torch.tensor(first[:shared], dtype=torch.long)
    valid[:, :shared] = True
    for i, p in enumerate(prompts):
        rest = p[shared:]
        ids[i, Lp - len(rest) :] = torch.tensor(rest, dtype=torch.long)
        valid[i, Lp - len(rest) :] = True
    return ids, valid, shared


# ---------------------------------------------------------------------------------------------
# The decoder


@dataclass
class _Layer:
    wqkv: Tensor  # ((H + 2 KV) * hd, D), q rows pre-scaled by 1/sqrt(hd) unless q_norm exists
    bqkv: Tensor | None  # ((H + 2 KV) * hd,) Qwen2 only
    wo: Tensor  # (D, H * hd)
    wgu: Tensor  # (2 I, D): gate rows then up rows
    wd: Tensor  # (D, I)
    ln1: Tensor  # (D,)
    ln2: Tensor  # (D,)
    q_norm: Tensor | None  # (hd,) Qwen3 only, pre-scaled by 1/sqrt(hd)
    k_norm: Tensor | None  # (hd,)
    packed: dict[str, Tensor] = field(default_factory=dict)  # prepacked wqkv, wo, wgu, wd


class Decoder:
    """A bf16 or fp32 copy of a Llama-family causal LM with cache-aware prefill and decode, on the
    model's device (oneDNN prepacking only on the CPU)."""

    def __init__(self, model, dtype: torch.dtype = torch.bfloat16, pack: bool | None = None):
        config = model.config
        reason = unsupported_reason(config)
        if reason is not None:
            raise ValueError(f"Decoder does not support this model: {reason}")
        self.dtype = dtype
        self.device = _base_model(model).get_input_embeddings().weight.device
        if pack is None:
            pack = self.device.type == "cpu" and can_prepack(dtype)
        self.pack = pack
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.hidden = config.hidden_size
        self.eps = config.rms_norm_eps
        base = _base_model(model)
        self._rotary = base.model.rotary_emb  # reused to build cos/sin tables for any rope type
        self._cos = self._sin = None
        self.layers: list[_Layer] = []
        H, KV, hd, D = self.n_heads, self.n_kv, self.head_dim, self.hidden

        def empty(*shape):
            return torch.empty(*shape, dtype=dtype, device=self.device)

        for layer in base.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            inter = getattr(mlp.gate_proj, "base_layer", mlp.gate_proj).weight.shape[0]
            self.layers.append(
                _Layer(
                    wqkv=empty((H + 2 * KV) * hd, D),
                    bqkv=empty((H + 2 * KV) * hd)
                    if effective_bias(attn.q_proj) is not None
                    else None,
                    wo=empty(D, H * hd),
                    wgu=empty(2 * inter, D),
                    wd=empty(D, inter),
                    ln1=empty(D),
                    ln2=empty(D),
                    q_norm=empty(hd) if hasattr(attn, "q_norm") else None,
                    k_norm=empty(hd) if hasattr(attn, "k_norm") else None,
                )
            )
        embed = base.get_input_embeddings().weight
        head = base.get_output_embeddings().weight
        self.tied = head is embed or head.data_ptr() == embed.data_ptr()
        self.embed = empty(*embed.shape)
        self.lm_head = self.embed if self.tied else empty(*head.shape)
        self.norm = empty(D)
        self.sync(model)

    @torch.no_grad()
    def sync(self, model) -> None:
        """Copy the weights of `model` (the training model, any dtype; LoRA merged) into this copy."""
        base = _base_model(model)
        scale = self.head_dim**-0.5
        for ours, layer in zip(self.layers, base.model.layers, strict=True):
            attn, mlp = layer.self_attn, layer.mlp
            wq, wk, wv = (effective_weight(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
            q_scale = 1.0 if ours.q_norm is not None else scale  # Qwen3: scale after the q-norm
            ours.wqkv.copy_(torch.cat([wq.float() * q_scale, wk.float(), wv.float()]))
            if ours.bqkv is not None:
                bq, bk, bv = (effective_bias(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
                ours.bqkv.copy_(torch.cat([bq.float() * q_scale, bk.float(), bv.float()]))
            ours.wo.copy_(effective_weight(attn.o_proj))
            inter = ours.wd.shape[1]
            ours.wgu[:inter].copy_(effective_weight(mlp.gate_proj))
            ours.wgu[inter:].copy_(effective_weight(mlp.up_proj))
            ours.wd.copy_(effective_weight(mlp.down_proj))
            ours.ln1.copy_(layer.input_layernorm.weight)
            ours.ln2.copy_(layer.post_attention_layernorm.weight)
            if ours.q_norm is not None:
                ours.q_norm.copy_(attn.q_norm.weight.float() * scale)
                ours.k_norm.copy_(attn.k_norm.weight)
        self.embed.copy_(base.get_input_embeddings().weight)
        if not self.tied:
            self.lm_head.copy_(effective_weight(base.get_output_embeddings()))
        self.norm.copy_(base.model.norm.weight)
        self.packed_head = None
        if self.pack:
            self.packed_head = prepack(self.lm_head)
            for ours in self.layers:
                ours.packed = {name: prepack(getattr(ours, name)) for name in ("wqkv", "wo", "wgu", "wd")}

    # -- pieces -------------------------------------------------------------------------------

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin for integer `positions` (B, T) -> (B, T, 1, hd) each, for (B, T, heads, hd)."""
        needed = int(positions.max()) + 1
        if self._cos is None or self._cos.shape[0] < needed:
            size = max(needed, 2 * (0 if self._cos is None else self._cos.shape[0]), 1024)
            x = torch.zeros(1, dtype=torch.float32, device=self.device)
            cos, sin = self._rotary(x, torch.arange(size, device=self.device)[None])  # (1, size, hd) fp32, as HF
            half = cos.shape[-1] // 2
            sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)  # sign of rotate_half
            self._cos, self._sin = cos[0].to(self.dtype), sin[0].to(self.dtype)
        return self._cos[positions].unsqueeze(2), self._sin[positions].unsqueeze(2)

    def _qkv(self, layer: _Layer, x: Tensor, cos: Tensor, sin: Tensor):
        """x (B, T, D) -> q (B, T, H, hd), k (B, T, KV, hd), v (B, T, KV, hd), q/k rotated."""
        B, T, _ = x.shape
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        h = F.rms_norm(x, (self.hidden,), layer.ln1, self.eps)
        qkv = linear(h, layer.wqkv, layer.packed.get("wqkv"), layer.bqkv).view(B, T, H + 2 * KV, hd)
        qk = qkv[:, :, : H + KV]
        if layer.q_norm is not None:
            qk = torch.cat(
                [
                    F.rms_norm(qk[:, :, :H], (hd,), layer.q_norm, self.eps),
                    F.rms_norm(qk[:, :, H:], (hd,), layer.k_norm, self.eps),
                ],
                dim=2,
            )
        # rope: x * cos + rotate_half(x) * sin, the sign of rotate_half folded into `sin`
        qk = qk * cos + qk.roll(hd // 2, dims=-1) * sin
        return qk[:, :, :H], qk[:, :, H:], qkv[:, :, H + KV :]

    def _mlp_residual(self, layer: _Layer, x: Tensor, attn_out: Tensor) -> Tensor:
        x = x + linear(attn_out, layer.wo, layer.packed.get("wo"))
        h = F.rms_norm(x, (self.hidden,), layer.ln2, self.eps)
        gate, up = linear(h, layer.wgu, layer.packed.get("wgu")).chunk(2, dim=-1)
        return x + linear(F.silu(gate) * up, layer.wd, layer.packed.get("wd"))

    def logits(self, hidden: Tensor, out: Tensor | None = None) -> Tensor:
        """Final-normed hidden (B, D) -> logits (B, V) in the decoder dtype. With plain weights,
        into `out` if given (a reused buffer: fresh multi-MB allocations page-fault at ~1 ms/MB
        on this VM); the prepacked head has no `out=` and allocates."""
        if self.packed_head is not None:
            return linear(hidden, self.lm_head, self.packed_head)
        if out is None:
            return F.linear(hidden, self.lm_head)
        return torch.mm(hidden, self.lm_head.t(), out=out[: hidden.shape[0]])

    # -- prefill ------------------------------------------------------------------------------

    @torch.inference_mode()
    def prefill(
        self, ids: Tensor, valid: Tensor, max_tokens: int = 2048, shared: int = 0
    ) -> tuple[PromptCache, Tensor]:
        """Encode prompts ids (P, Lp) (`valid` (P, Lp) marks real tokens, laid out by
        `prompt_layout`: every prompt ends at column Lp - 1) into a prompt cache; returns it and
        the final-normed hidden state at the last column (P, D). The first `shared` columns,
        identical in every row, are encoded once and copied. At most `max_tokens` query tokens
        go through one forward (bounds memory)."""
        ids, valid = ids.to(self.device), valid.to(self.device)
        P, Lp = ids.shape
        shape = (P, self.n_kv, Lp, self.head_dim)
        cache = PromptCache(
            k=[torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers],
            v=[torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers],
            mask=torch.zeros(P, Lp, device=self.device).masked_fill_(~valid, NEG_INF),
        )
        positions = (valid.cumsum(1) - 1).clamp_(min=0)  # real tokens at 0..len-1, as HF
        if shared:  # the common prefix once, as a batch of one, then copied to every prompt
            first = slice(0, 1)
            self._encode(ids[first], valid[first], positions[first], [k[first] for k in cache.k],
                         [v[first] for v in cache.v], 0, shared, max_tokens)
            for kv in (*cache.k, *cache.v):
                kv[1:, :, :shared] = kv[:1, :, :shared]
        x = self._encode(ids, valid, positions, cache.k, cache.v, shared, Lp, max_tokens)
        return cache, F.rms_norm(x[:, -1], (self.hidden,), self.norm, self.eps)

    def _encode(self, ids, valid, positions, k_caches, v_caches, start: int, end: int, max_tokens: int):
        """Run prompt columns [start, end) of every row through the layers, writing their keys and
        values into the caches; each query attends to the real cached columns up to its own.
        Returns the hidden states of the last chunk of columns (P, T, D)."""
        P, Lp = ids.shape
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        G = H // KV
        causal = torch.ones(Lp, Lp, dtype=torch.bool, device=ids.device).tril_()
        step = max(1, max_tokens // P)
        x = None
        for s in range(start, end, step):
            e = min(end, s + step)
            T = e - s
            # query i sees real keys j <= i; a padding query sees itself only (no empty rows)
            allowed = causal[s:e] & valid[:, None, :]  # (P, T, Lp)
            allowed[:, torch.arange(T, device=ids.device), torch.arange(s, e, device=ids.device)] = True
            mask = torch.zeros(P, 1, 1, T, Lp, dtype=self.dtype, device=ids.device).masked_fill_(
                ~allowed[:, None, None], NEG_INF
            )
            cos, sin = self.rope(positions[:, s:e])
            x = F.embedding(ids[:, s:e], self.embed)  # (P, T, D)
            for layer, k_cache, v_cache in zip(self.layers, k_caches, v_caches, strict=True):
                q, k, v = self._qkv(layer, x, cos, sin)
                k_cache[:, :, s:e] = k.transpose(1, 2)
                v_cache[:, :, s:e] = v.transpose(1, 2)
                # query rows ordered (group, position): one matmul per kv head, no repeat_kv
                q = q.reshape(P, T, KV, G, hd).permute(0, 2, 3, 1, 4).reshape(P, KV, G * T, hd)
                scores = torch.matmul(q, k_cache.transpose(-1, -2)).view(P, KV, G, T, Lp) + mask
                probs = torch.softmax(scores, dim=-1).view(P, KV, G * T, Lp)
                out = torch.matmul(probs, v_cache).view(P, KV, G, T, hd)
                out = out.permute(0, 3, 1, 2, 4).reshape(P, T, H * hd)
                x = self._mlp_residual(layer, x, out)
        return x

    def new_rows(self, prompt: PromptCache, row_prompt: list[int], capacity: int) -> RowCache:
        """Decoding state for sample rows of the prompts in `prompt` (row r continues prompt
        row_prompt[r]) with room for `capacity` generated columns."""
        B = len(row_prompt)
        shape = (B, self.n_kv, capacity, self.head_dim)
        prompt_mask = prompt.mask.index_select(0, torch.tensor(row_prompt, device=self.device))  # (B, Lp)
        mask = torch.cat([prompt_mask, torch.full((B, capacity), NEG_INF, device=self.device)], dim=1)
        return RowCache(
            prompt=prompt,
            row_prompt=list(row_prompt),
            k=[torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers],
            v=[torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self.layers],
            mask=mask.to(self.dtype)[:, None, None],
        )

    # -- decode -------------------------------------------------------------------------------

    @torch.inference_mode()
    def decode(self, tokens: Tensor, positions: Tensor, rows: RowCache) -> Tensor:
        """One step: tokens (B,) at rotary positions (B,) -> final-normed hidden (B, D).
        Writes their keys/values at completion column `rows.length` (which the caller opened in
        `rows.mask`) and attends over [prompt | completion columns]."""
        B = tokens.shape[0]
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        G = H // KV
        col, Lp = rows.length, rows.prompt.length
        assert col < rows.capacity, "completion cache full: grow() it first"
        slots = rows.slots
        cos, sin = self.rope(positions[:, None])
        x = F.embedding(tokens[:, None], self.embed)  # (B, 1, D)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, cos, sin)
            k_rows, v_rows = rows.k[i], rows.v[i]  # (B, KV, C, hd)
            k_rows[:, :, col] = k[:, 0]
            v_rows[:, :, col] = v[:, 0]
            q = q.view(B, KV, G, hd)
            # prompt columns: one product per prompt and kv head over its S samples' queries
            q_slots = slots.to_slots(q)  # (P, KV, S*G, hd)
            s_prompt = slots.from_slots(torch.matmul(q_slots, rows.prompt.k[i].transpose(-1, -2)))
            s_rows = torch.matmul(q, k_rows.transpose(-1, -2))  # (B, KV, G, C)
            scores = torch.cat([s_prompt, s_rows], dim=-1) + rows.mask  # (B, KV, G, Lp + C)
            probs = torch.softmax(scores, dim=-1)
            p_prompt, p_rows = probs[..., :Lp], probs[..., Lp:]
            out = torch.matmul(p_rows, v_rows)  # (B, KV, G, hd)
            out += slots.from_slots(torch.matmul(slots.to_slots(p_prompt), rows.prompt.v[i]))
            x = self._mlp_residual(layer, x, out.view(B, 1, H * hd))
        rows.length = col + 1
        return F.rms_norm(x[:, 0], (self.hidden,), self.norm, self.eps)
