"""Tokenize (prompt, completion) pairs and collate them into padded batches.

Chat prompts (lists of messages) are rendered with the model's chat template and the assistant
turn opened; raw-string prompts are used as they are (TRL's "standard" format). Completions end
with the end-of-turn token so the model learns to stop. Loss masks cover completion tokens only:
in a multi-turn completion (a conversation's later turns, `render_turns`) only the assistant's.
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


def is_multi_turn(completion: Text) -> bool:
    """A completion that holds other roles' turns between the assistant's (`records`, messages)."""
    return isinstance(completion, list) and any(m["role"] != "assistant" for m in completion)


def render_turns(tokenizer, prompt: list[dict], completion: list[dict]) -> list[tuple[str, bool]]:
    """The conversation prompt + completion as text pieces, each flagged whether it carries the
    loss: every assistant turn of the completion (its content and end-of-turn token) does, the
    headers and other roles' turns between them do not (TRL's `assistant_only_loss`).

    SmolLM2's template, like most, has no {% generation %} markers to say where a turn lies, so
    each turn is found by rendering prefixes: messages[:i] with the assistant header opened, then
    messages[:i+1]; the turn is the difference. That needs every rendering to extend the previous
    one (a template that rewrites earlier turns, e.g. drops their reasoning, breaks it: an error).
    The rendering's tail after the last turn (a newline) is dropped, and the last turn gets the
    EOS token if the template does not end it with one, as in `render_completion`."""
    messages = prompt + completion
    pieces: list[tuple[str, bool]] = []
    done = ""  # the rendered conversation up to the end of the last turn so far
    for i in range(len(prompt), len(messages)):
        if messages[i]["role"] != "assistant":
            continue
        head = render_prompt(tokenizer, messages[:i])
        full = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not head.startswith(done) or not full.startswith(head):
            raise ValueError(f"the chat template renders messages[:{i}] differently once message {i} follows "
                             "(it rewrites earlier turns), so the assistant turns cannot be told apart; train "
                             "only the last turn (assistant_turns: last)")
        turn = full[len(head):].rstrip("\n")
        pieces += [(head[len(done):], False), (turn, True)]
        done = head + turn
    eos = tokenizer.eos_token
    if not pieces[-1][0].endswith(eos):
        pieces[-1] = (pieces[-1][0] + eos, True)
    return pieces


@dataclass
class Tokenized:
    prompt_ids: list[int]
    completion_ids: list[int]
    truncated: bool
    completion_mask: list[bool] | None = None
    """Which completion tokens carry the loss (a multi-turn completion); None: all of them."""


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_pair(tokenizer, prompt: Text, completion: Text, max_length: int) -> Tokenized:
    """Prompt and completion are tokenized separately (no merge across the boundary), and so is
    each piece of a multi-turn completion (`render_turns`): the tokens the model sees when it
    generates a turn after the rendered header. Over max_length the prompt loses tokens from the
    left, then the completion from the right."""
    mask = None
    if is_multi_turn(completion):
        if isinstance(prompt, str):
            raise ValueError("a multi-turn completion needs a chat prompt (a list of messages)")
        (head, _), *rest = render_turns(tokenizer, prompt, completion)
        p, c, mask = _ids(tokenizer, head), [], []
        for text, trained in rest:
            ids = _ids(tokenizer, text)
            c += ids
            mask += [trained] * len(ids)
    else:
        p = _ids(tokenizer, render_prompt(tokenizer, prompt))
        c = _ids(tokenizer, render_completion(tokenizer, prompt, completion))
    truncated = len(p) + len(c) > max_length
    if truncated:
        keep_prompt = max(max_length // 2, max_length - len(c))
        p = p[-keep_prompt:]
        c = c[: max_length - len(p)]
        mask = None if mask is None else mask[: len(c)]
    return Tokenized(p, c, truncated, mask)


@dataclass
class Batch:
    """Right-padded sequences. Shapes: (B, T). `loss_mask` is 1 on completion tokens (the
    tokens whose log-probs the objectives use; of a multi-turn completion, the assistant's), 0 on
    prompt and padding."""

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
        loss[i, p : p + c] = True if t.completion_mask is None else torch.tensor(t.completion_mask, dtype=torch.bool)
    return Batch(ids, attn, loss)
