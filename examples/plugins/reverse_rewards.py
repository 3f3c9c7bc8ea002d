"""Reward functions for the Reverse task in TRL's signature: each takes the rollout batch's
prompts, completions and completion_ids, and the problems' fields as keyword columns (here
`word`), and returns one float, or None to leave a completion unscored, per completion.

unift passes conversational completions, as TRL does for chat prompts: each completion is
`[{"role": "assistant", "content": text}]`. The names below (`__name__`) become the metrics
`reward/answer_tag` and `reward/letter_overlap`.
"""


def answer_tag(completions, **kwargs) -> list[float]:
    """1 when the completion has an <answer> ... </answer> block, else 0 (a format reward)."""
    texts = [c[0]["content"] for c in completions]
    return [1.0 if "<answer>" in t and "</answer>" in t else 0.0 for t in texts]


def letter_overlap(completions, word, **kwargs) -> list[float | None]:
    """Partial credit: the share of positions where the answer has the reversed word's letter;
    None (not scored) when there is no answer block."""
    rewards = []
    for c, w in zip(completions, word, strict=True):
        text = c[0]["content"]
        end = text.rfind("</answer>")
        start = text.rfind("<answer>", 0, end) if end >= 0 else -1
        if start < 0:
            rewards.append(None)
            continue
        answer, target = text[start + len("<answer>"):end].strip(), w[::-1]
        rewards.append(sum(a == b for a, b in zip(answer, target, strict=False)) / len(target))
    return rewards
