"""The rollout engine interface: sample G completions per prompt and return them with their
sampling log-probs.

    engine = make_engine("hf", model, tokenizer)           # CPU default; "vllm" on GPU machines
    rollouts = engine.generate(prompt_ids, num_samples=4, max_new_tokens=64,
                               temperature=1.0, stop_strings=["</answer>"], seed=0)
    ...  # train a step
    engine.sync(model)                                      # copy the new weights in

Backends (`rollout.backend` in the config):
- "hf" (`unift.rollout.hf.HFEngine`): in-process PyTorch, on the model's device. For Llama /
  Qwen2 / Qwen3 a lean decoder (bf16 or fp32, whichever measured faster on this CPU:
  `unift.precision`) with a preallocated KV cache (`unift.rollout.decoder`); other architectures
  fall back to `transformers.generate`. No GPU needed.
- "vllm" (`unift.rollout.vllm_engine.VLLMEngine`): vLLM in the trainer's process, imported only
  when chosen; weights synced by `load_weights` (see that module). Written against vLLM's API
  but never run: this project has no GPU, and only its missing-package error is tested.

Samples are prompt-major: prompt 0's G samples first, then prompt 1's, ... (groups contiguous),
which is the layout GRPO's group-relative advantages expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Rollouts:
    """N = len(prompts) * num_samples completions, prompt-major (groups contiguous)."""

    prompt_ids: list[list[int]]
    """(N,) the prompt of each sample (repeated for its group)."""
    completion_ids: list[list[int]]
    """(N,) generated ids, including the EOS / stop-string token if one was produced."""
    logprobs: list[list[float]]
    """(N,) per generated token: log softmax(logits / T)[token] under the generation weights,
    i.e. the temperature-scaled model distribution *before* top-p truncation (not renormalised
    over the nucleus); for greedy decoding (T = 0), at T = 1. Same length as completion_ids."""
    texts: list[str]
    """(N,) decoded completions without special tokens; with a stop string, the text up to and
    including the (earliest-ending) stop string."""
    finished: list[bool]
    """(N,) stopped by EOS or a stop string (False: hit max_new_tokens)."""
    num_generated_tokens: int
    """Sum of the completion lengths."""
    seconds: float
    """Wall time of the generate call."""

    def __len__(self) -> int:
        return len(self.completion_ids)

    @property
    def tokens_per_second(self) -> float:
        return self.num_generated_tokens / max(self.seconds, 1e-9)


class Engine(Protocol):
    def sync(self, model) -> None:
        """Copy the current training weights in (LoRA adapters merged: W + scale * B @ A)."""
        ...

    def generate(
        self,
        prompts: list[list[int]],
        num_samples: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_strings: Sequence[str] = (),
        seed: int | None = None,
    ) -> Rollouts:
        """num_samples completions of each prompt (token ids), prompt-major; temperature 0 is
        greedy; seed None draws one from torch's global generator (so `torch.manual_seed` makes
        a run reproducible)."""
        ...


def resolve_dtype(dtype: str | torch.dtype, model=None) -> torch.dtype:
    """A torch dtype from its name; "auto" (needs `model`): bfloat16 where bf16 products of the
    model's shapes decode faster on this machine than fp32 ones, else float32 (measured once and
    cached, `unift.precision`); for a model on a GPU, bfloat16 where the GPU supports it."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        from unift import precision

        if model is None:
            raise ValueError("dtype 'auto' needs the model whose shapes to measure")
        device = next(model.parameters()).device
        dtype = precision.rollout_dtype(*precision.model_shapes(model.config), device=device)
    names = {
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}: expected one of {sorted(names)}")
    return names[dtype]


def draw_seed(seed: int | None) -> int:
    """The seed itself, or one drawn from torch's global generator."""
    return int(torch.randint(2**62, (1,)).item()) if seed is None else int(seed)


def make_engine(
    backend: str, model, tokenizer, *, dtype="auto", max_batch_size: int = 64, **kw
) -> Engine:
    """Build a rollout engine holding a generation copy of `model`'s weights.

    backend: "hf" (default, CPU, in-process) or "vllm" (GPU; imported lazily).
    dtype: weights and KV cache of the generation copy: "auto" (whichever measured faster on this
    CPU, `unift.precision`), "bfloat16" or "float32".
    max_batch_size: most sequences decoded at once (larger requests run in chunks of whole
    groups where possible).
    kw: backend options, e.g. hf `impl="decoder" | "generate" | "auto"`, `threads=1` (torch
    threads while generating; 1 is far faster on a busy 2-core machine), `grow_chunk`,
    `compact_fraction`, `prepack=False`; vllm `model_path=`, `gpu_memory_utilization=0.3`.
    """
    if backend == "hf":
        from unift.rollout.hf import HFEngine

        return HFEngine(model, tokenizer, dtype=dtype, max_batch_size=max_batch_size, **kw)
    if backend == "vllm":
        from unift.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, tokenizer, dtype=dtype, max_batch_size=max_batch_size, **kw)
    raise ValueError(f"unknown rollout backend {backend!r}: expected 'hf' or 'vllm'")
