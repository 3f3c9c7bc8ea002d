"""Demonstrations inside the rollout stage: the `rollout:` settings of the methods that mix a
task's reference solutions into RL in one stage (docs/methods.md section 8), and their schedules.

- `expert`:        the reference solution as a completion row (LUFFY: in the group; CHORD: extra rows)
- `prefix`:        a prefix of it, then the policy's own continuation (Prefix-RFT)
- `gate`:          per prompt, RL or NLL on the reference solution by the group's results (HPT,
                   SuperRL, ReLIFT)
- `question_hint`: part of it in the question of hard problems (QuestA)

Every field's default turns its method off, so the presets of section 1 are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

GATE_MODES = ("none", "switch", "buffer")


@dataclass
class ExpertSpec:
    """The task's reference solution + EOS as completion rows ("expert" rows). Their tokens are
    marked `RolloutBatch.expert_mask` and trained by the objective's `expert_loss`, never by the
    PPO ratio."""

    per_group: int = 0
    """Expert rows in each prompt's group in place of as many own rollouts (LUFFY: 1 of G, so G - 1
    are sampled). They are scored and join the group's reward mean (and std)."""
    share: float = 0.0
    """Expert rows outside the groups as a share of all rows: round(share / (1 - share) x own
    rows), assigned to the prompts in turn (CHORD's `expert_data_ratio`, 0.2). They take no part
    in the advantages; the objective trains them by its SFT term."""


@dataclass
class PrefixSpec:
    """Prefix rollouts: a prefix of the reference solution's tokens opens the assistant turn and
    the policy continues it (Prefix-RFT). The prefix tokens are expert tokens (`expert_mask`)."""

    rows: int = 0
    """Rollouts per group that start from a prefix (of G; the other G - rows are unprefixed and
    form the group's baseline). 0: off."""
    ratio_start: float = 0.8
    """Prefix length as a share of the reference solution's tokens at step 0."""
    ratio_end: float = 0.0
    """... and at T (cosine decay in between; a prefix of 0 tokens is a plain rollout)."""
    T: float = 1.0
    """Steps of the decay: a value <= 1 is a fraction of the run (as `hint.T_hint`), > 1 a count."""


@dataclass
class GateSpec:
    """Per prompt, RL or SFT, decided by how many of its G rollouts are correct."""

    mode: str = "none"
    """none | switch: a prompt with at most `max_correct` correct rollouts trains by NLL on its
    reference solution (+ EOS) instead of RL in the same step, its rollouts dropped (HPT's
    "switch", SuperRL) | buffer: such a prompt still trains by RL and joins a buffer; when the
    buffer holds `buffer_size` prompts, the next optimiser step is an SFT step on them (ReLIFT)."""
    max_correct: int = 0
    """The gate: at most this many correct rollouts of G sends the prompt to SFT (HPT's
    `switch_gate` 0; SuperRL and ReLIFT: none correct)."""
    buffer_size: int = 8
    """mode=buffer: prompts per SFT step (ReLIFT's `sft_data_size`, 128 with 128-prompt batches)."""


@dataclass
class QuestionHintSpec:
    """A partial solution appended to the question of hard problems (QuestA): the prompt becomes
    question + "\\n\\n## Hint. " + the first p of the reference solution's characters. No token
    of it is trained: it is prompt."""

    p: list[float] = field(default_factory=list)
    """Share of the reference solution shown, per equal stage of the run ([0.5, 0.25]: QuestA's
    50% then 25%). Empty: off."""
    hard_max_correct: int = 0
    """A problem is hard when at most this many of its G unhinted rollouts are correct; its group
    is then sampled again with the hint, and the hinted rollouts replace the unhinted ones. -1:
    every problem gets the hint, without the unhinted probe."""


def until(T: float, total_steps: int) -> int:
    """A schedule length: T <= 1 is a fraction of the run, T > 1 a step count."""
    return round(T * total_steps) if T <= 1 else int(T)


def prefix_ratio(spec: PrefixSpec, step: int, total_steps: int) -> float:
    """Prefix length share at 0-based `step`: cosine from ratio_start to ratio_end over T steps."""
    T = until(spec.T, total_steps)
    if step >= T:
        return spec.ratio_end
    return spec.ratio_end + (spec.ratio_start - spec.ratio_end) * 0.5 * (1 + math.cos(math.pi * step / T))


def prefix_length(ratio: float, n: int) -> int:
    """Prefix tokens of an n-token solution: round(ratio x n), leaving at least one token to
    generate (the official code: int(ratio x n), at most n - 1)."""
    return max(0, min(round(ratio * n), n - 1))


def question_hint_p(spec: QuestionHintSpec, step: int, total_steps: int) -> float:
    """The shown share at `step`: p[s] in the s-th of len(p) equal parts of the run (0: off)."""
    if not spec.p:
        return 0.0
    stage = min(len(spec.p) - 1, step * len(spec.p) // max(1, total_steps))
    return spec.p[stage]


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
