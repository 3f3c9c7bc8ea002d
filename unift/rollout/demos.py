"""Demonstrations inside the rollout stage: the schedules of the methods that mix a task's
reference solutions into RL in one stage (docs/methods.md section 8); their `rollout:` settings
are `unift.config`'s ExpertSpec, PrefixSpec, GateSpec and QuestionHintSpec.

- `expert`:        the reference solution as a completion row (LUFFY: in the group; CHORD: extra rows)
- `prefix`:        a prefix of it, then the policy's own continuation (Prefix-RFT)
- `gate`:          per prompt, RL or NLL on the reference solution by the group's results (HPT,
                   SuperRL, ReLIFT)
- `question_hint`: part of it in the question of hard problems (QuestA)

Every setting's default turns its method off, so the presets of section 1 are unchanged.
"""

from __future__ import annotations

import math


def until(T: float, total_steps: int) -> int:
    """A schedule length: T <= 1 is a fraction of the run, T > 1 a step count."""
    return round(T * total_steps) if T <= 1 else int(T)


def prefix_ratio(step: int, total_steps: int, ratio_start: float, ratio_end: float, T: float) -> float:
    """Prefix length share at 0-based `step`: cosine from ratio_start to ratio_end over T steps
    (`until`)."""
    T = until(T, total_steps)
    if step >= T:
        return ratio_end
    return ratio_end + (ratio_start - ratio_end) * 0.5 * (1 + math.cos(math.pi * step / T))


def prefix_length(ratio: float, n: int) -> int:
    """Prefix tokens of an n-token solution: round(ratio x n), leaving at least one token to
    generate (the official code: int(ratio x n), at most n - 1)."""
    return max(0, min(round(ratio * n), n - 1))


def question_hint_p(p: list[float], step: int, total_steps: int) -> float:
    """The shown share at `step`: p[s] in the s-th of len(p) equal parts of the run (0: off)."""
    if not p:
        return 0.0
    stage = min(len(p) - 1, step * len(p) // max(1, total_steps))
    return p[stage]


def question_with_hint(messages: list[dict], solution: str, p: float) -> list[dict]:
    """The prompt messages with the first p of `solution` (characters) appended to the last user
    turn, as QuestA's data script builds it; a shown part under 10 characters adds nothing."""
    shown = solution[: int(len(solution) * p)]
    if len(shown) < 10:
        return messages
    out = [dict(m) for m in messages]
    last = max(i for i, m in enumerate(out) if m["role"] == "user")
    out[last]["content"] = out[last]["content"] + "\n\n## Hint. " + shown
    return out
