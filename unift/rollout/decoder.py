"""A lean Llama-family decoder for sampling on CPU.

Why not `transformers.generate`: on this 2-core CPU (SmolLM2-135M, bf16, batch 64) a decode step
of `generate` costs ~240 ms while the model's own matrix products need ~50: the rest is cache
objects, mask building and generic attention. This module keeps its own bf16 copy of the weights
(`Decoder.sync` copies them in from the training model, LoRA merged) and runs the forward pass
with plain tensor ops:

    x = embed[ids]                                             # (B, T, D)
    per layer:  x += o_proj(attention(rope(q), rope(k), v))   # GQA over the KV cache
                x += down(silu(gate(x')) * up(x'))            # x' = rms_norm(x)
    logits = lm_head(rms_norm(x[:, -1]))                       # (B, V)

Layout choices, each measured (docs/LOG.md, 2026-11-22):
- q/k/v and gate/up are fused into one matrix each (fewer, larger products);
- the 1/sqrt(head_dim) attention scale is folded into the q weights (or Qwen3's q-norm);
- the KV cache is one contiguous tensor per layer, (B, kv_heads, capacity, head_dim), and attention
  always runs over the whole capacity with an additive mask: a bf16 batched matmul over a *slice*
  of a longer buffer is ~4x slower on CPU than over a contiguous tensor. The engine grows the
  capacity in chunks (`KVCache.grow`);
- attention is two batched matmuls with the kv-head groups folded into the query rows
  (no `repeat_kv` copy); torch's scaled_dot_product_attention was ~10x slower in bf16 here.

Supported: LlamaForCausalLM, Qwen2ForCausalLM (q/k/v bias), Qwen3ForCausalLM (per-head q/k norm).
`unsupported_reason(config)` says why another model is not; the engine then falls back to
`transformers.generate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")
_STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn", "longrope")


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
# The KV cache


@dataclass
class KVCache:
    """Keys and values of every layer: k[l], v[l] (B, kv_heads, capacity, head_dim), contiguous.

    `mask` (B, 1, 1, 1, capacity) is added to the attention scores: 0 where a column holds a real
    token, -inf for left padding and for columns not written yet. `length` columns are written.
    """

    k: list[Tensor]
    v: list[Tensor]
    mask: Tensor
    length: int

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    @property
    def batch_size(self) -> int:
        return self.k[0].shape[0]

    def grow(self, capacity: int) -> None:
        """Reallocate with room for `capacity` columns (copying what is written)."""
        if capacity <= self.capacity:
            return
        for cache in (self.k, self.v):
            for i, old in enumerate(cache):
                B, H, _, hd = old.shape
                new = old.new_empty(B, H, capacity, hd)
                new[:, :, : self.length] = old[:, :, : self.length]
                new[:, :, self.length :].zero_()  # never NaN: masked columns still enter p @ V
                cache[i] = new
        mask = self.mask.new_full((*self.mask.shape[:-1], capacity), float("-inf"))
        mask[..., : self.length] = self.mask[..., : self.length]
        self.mask = mask

    def select(self, rows: Tensor) -> None:
        """Keep only the batch rows `rows` (B',), in that order."""
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        self.mask = self.mask.index_select(0, rows)


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


class Decoder:
    """A bf16 (or fp32) copy of a Llama-family causal LM with a cache-aware forward pass."""

    def __init__(self, model, dtype: torch.dtype = torch.bfloat16):
        config = model.config
        reason = unsupported_reason(config)
        if reason is not None:
            raise ValueError(f"Decoder does not support this model: {reason}")
        self.dtype = dtype
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.hidden = config.hidden_size
        self.eps = config.rms_norm_eps
        base = _base_model(model)
        self._rotary = base.model.rotary_emb  # reused to build cos/sin tables for any rope type
        self._cos = self._sin = None
        self.layers: list[_Layer] = []
        empty = lambda *shape: torch.empty(*shape, dtype=dtype)  # noqa: E731
        H, KV, hd, D = self.n_heads, self.n_kv, self.head_dim, self.hidden
        for layer in base.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            inter = getattr(mlp.gate_proj, "base_layer", mlp.gate_proj).weight.shape[0]
            self.layers.append(
                _Layer(
                    wqkv=empty((H + 2 * KV) * hd, D),
                    bqkv=empty((H + 2 * KV) * hd) if effective_bias(attn.q_proj) is not None else None,
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
            ours.wqkv.copy_(torch.cat([wq.float() * q_scale, wk, wv]))
            if ours.bqkv is not None:
                bq, bk, bv = (effective_bias(m) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
                ours.bqkv.copy_(torch.cat([bq.float() * q_scale, bk, bv]))
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

    # -- rotary tables ------------------------------------------------------------------------

    def rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos, sin for integer `positions` (any shape) -> (*positions.shape, head_dim)."""
        needed = int(positions.max()) + 1
        if self._cos is None or self._cos.shape[0] < needed:
            size = max(needed, 2 * (0 if self._cos is None else self._cos.shape[0]), 1024)
            x = torch.zeros(1, dtype=torch.float32)
            cos, sin = self._rotary(x, torch.arange(size)[None])  # (1, size, hd), fp32 like HF
            self._cos, self._sin = cos[0].to(self.dtype), sin[0].to(self.dtype)
        return self._cos[positions], self._sin[positions]

    # -- forward ------------------------------------------------------------------------------

    def new_cache(self, batch_size: int, capacity: int) -> KVCache:
        shape = (batch_size, self.n_kv, capacity, self.head_dim)
        return KVCache(
            k=[torch.zeros(shape, dtype=self.dtype) for _ in self.layers],
            v=[torch.zeros(shape, dtype=self.dtype) for _ in self.layers],
            mask=torch.full((batch_size, 1, 1, 1, capacity), float("-inf")),
            length=0,
        )

    @torch.inference_mode()
    def forward(self, ids: Tensor, positions: Tensor, cache: KVCache, mask: Tensor) -> Tensor:
        """Run tokens `ids` (B, T) at rotary `positions` (B, T) after the `cache.length` cached
        columns; write their keys/values into the cache and return the final-normed hidden state of
        the last position (B, D). `mask` (B, 1, 1, T, capacity) is the additive attention mask;
        the caller builds it (causal + padding for a prefill; `cache.mask`, with the new column
        opened, for a decode step) and keeps `cache.mask` up to date."""
        B, T = ids.shape
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        G = H // KV  # query heads per kv head
        start, end = cache.length, cache.length + T
        assert end <= cache.capacity, "KV cache too small: grow() it first"
        cos, sin = self.rope(positions)  # (B, T, hd)
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # (B, T, 1, hd)
        half = hd // 2
        x = F.embedding(ids, self.embed)  # (B, T, D)
        for layer, k_cache, v_cache in zip(self.layers, cache.k, cache.v, strict=True):
            h = F.rms_norm(x, (self.hidden,), layer.ln1, self.eps)
            qkv = F.linear(h, layer.wqkv, layer.bqkv).view(B, T, H + 2 * KV, hd)
            qk = qkv[:, :, : H + KV]  # (B, T, H + KV, hd)
            if layer.q_norm is not None:
                qk = torch.cat(
                    [
                        F.rms_norm(qk[:, :, :H], (hd,), layer.q_norm, self.eps),
                        F.rms_norm(qk[:, :, H:], (hd,), layer.k_norm, self.eps),
                    ],
                    dim=2,
                )
            rotated = torch.cat([-qk[..., half:], qk[..., :half]], dim=-1)  # rotate_half
            qk = qk * cos + rotated * sin
            k_cache[:, :, start:end] = qk[:, :, H:].transpose(1, 2)  # (B, KV, T, hd)
            v_cache[:, :, start:end] = qkv[:, :, H + KV :].transpose(1, 2)
            # query rows ordered (group, position) so that one matmul serves a whole kv head
            q = qk[:, :, :H].reshape(B, T, KV, G, hd).permute(0, 2, 3, 1, 4).reshape(B, KV, G * T, hd)
            scores = torch.matmul(q, k_cache.transpose(-1, -2))  # (B, KV, G*T, capacity)
            scores = scores.view(B, KV, G, T, -1).float() + mask
            probs = torch.softmax(scores, dim=-1).to(self.dtype).view(B, KV, G * T, -1)
            out = torch.matmul(probs, v_cache)  # (B, KV, G*T, hd)
            out = out.view(B, KV, G, T, hd).permute(0, 3, 1, 2, 4).reshape(B, T, H * hd)
            x = x + F.linear(out, layer.wo)
            h = F.rms_norm(x, (self.hidden,), layer.ln2, self.eps)
            gate, up = F.linear(h, layer.wgu).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, layer.wd)
        cache.length = end
        return F.rms_norm(x[:, -1], (self.hidden,), self.norm, self.eps)

    def logits(self, hidden: Tensor) -> Tensor:
        """(B, D) -> (B, V) in the decoder dtype."""
        return F.linear(hidden, self.lm_head)
