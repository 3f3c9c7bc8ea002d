"""Tokenize (prompt, completion) pairs and collate them into padded batches.

Chat prompts (lists of messages) are rendered with the model's chat template and the assistant
turn opened; raw-string prompts are used as they are (TRL's "standard" format). Completions end
with the end-of-turn token so the model learns to stop. Loss masks cover completion tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unift.data.records import Text


def render_prompt(tokenizer, prompt: Text) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def render_completion(tokenizer, prompt: Text, completion: Text) -> str:
    """The completion text as it follows the rendered prompt, ending with the EOS/end-of-turn token."""
    if isinstance(completion, list):
        if isinstance(prompt, str):
            text = "".join(m["content"] for m in completion)
        else:
            full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
            head = render_prompt(tokenizer, prompt)
            if not full.startswith(head):  # a template that rewrites earlier turns
                raise ValueError("chat template does not extend the prompt; use string completions")
            text = full[len(head):].rstrip("\n")
    else:
        text = completion
    eos = tokenizer.eos_token
    return text if text.endswith(eos) else text + eos


@dataclass
class Tokenized:
    prompt_ids: list[int]
    completion_ids: list[int]
    truncated: bool


def tokenize_pair(tokenizer, prompt: Text, completion: Text, max_length: int) -> Tokenized:
    """Prompt and completion are tokenized separately (no merge across the boundary); over
    max_length the prompt loses tokens from the left, then the completion from the right."""
    p = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    c = tokenizer(render_completion(tokenizer, prompt, completion), add_special_tokens=False)["input_ids"]
    truncated = len(p) + len(c) > max_length
    if truncated:
        keep_prompt = max(max_length // 2, max_length - len(c))
        p = p[-keep_prompt:]
        c = c[: max_length - len(p)]
    return Tokenized(p, c, truncated)


@dataclass
class Batch:
    """Right-padded sequences. Shapes: (B, T). `loss_mask` is 1 on completion tokens (the
    tokens whose log-probs the objectives use), 0 on prompt and padding."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(items: list[Tokenized], pad_id: int) -> Batch:
    length = max(len(t.prompt_ids) + len(t.completion_ids) for t in items)
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    attn = torch.zeros((len(items), length), dtype=torch.long)
    loss = torch.zeros((len(items), length), dtype=torch.bool)
    for i, t in enumerate(items):
        p, c = len(t.prompt_ids), len(t.completion_ids)
        ids[i, : p + c] = torch.tensor(t.prompt_ids + t.completion_ids)
        attn[i, : p + c] = 1
        loss[i, p : p + c] = True
    return Batch(ids, attn, loss)
