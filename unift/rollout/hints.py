"""Hint schedules: how much of the reference solution opens each prompt's rollouts.

Source: Liu, Farina, Ozdaglar, "UFT: Unifying Supervised and Reinforcement Fine-Tuning" (2025),
section 3 and its reference code; docs/methods.md section 1.1 describes the schedules and
section 1.5 where unift differs from that code.

A solution is a list of pieces (`task.solution_steps`). With num = min(L, len(pieces)) the cut
points are c_i = round(i / num * len(pieces)), i = 0..num; a hint of length k is
"".join(pieces[:c_k]). One k is drawn per prompt and shared by its whole group of rollouts.

Schedules (one function each, chosen by name; `t` is the optimiser step, 0-based):
- "cosine" (UFT, RFT-cosine):  p(t) = p_low + (p_high - p_low) (1 + cos(pi (t + 1) / T_hint)) / 2
  for t < T_hint, k ~ Binomial(num, p(t)); no hint from T_hint on. The (t + 1) is the reference
  code's (eq. B.1): p reaches p_low on the last hinted step, t = T_hint - 1.
- "uniform" (R3):  k ~ Uniform{0..num} for the whole run.
- "stage":  k = num * (1 - s / stages) in the s-th of `stages` equal stages before T_hint; 0 after.
- "full" (SFT):  always the whole solution (k = num).
- "none" (RFT):  never a hint.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class HintSchedule:
    """A schedule's parameters (the module docstring), as a task source's `rollout.hint` settings
    give them (`unift.config.HintSpec`)."""

    schedule: str  # none | cosine | uniform | stage | full
    p_low: float  # cosine: p at T_hint
    p_high: float  # cosine: p at step 0
    T_hint: float  # steps with hints: a fraction of the run if <= 1, else a step count
    L: int  # at most L + 1 cut points per solution
    stages: int  # stage: equal stages before T_hint


def cut_points(num_pieces: int, L: int) -> list[int]:
    """c_0 = 0 < ... < c_num = num_pieces with num = min(L, num_pieces)."""
    num = min(L, num_pieces)
    if num == 0:
        return [0]
    return [round(i / num * num_pieces) for i in range(num)] + [num_pieces]


def hint_steps(T_hint: float, total_steps: int) -> int:
    """Steps with hints: T_hint <= 1 is a fraction of the run's `total_steps`, else a count."""
    return round(T_hint * total_steps) if T_hint <= 1 else int(T_hint)


def cosine_p(t: int, p_low: float, p_high: float, T_hint: int) -> float:
    """p(t) of the cosine-binomial schedule for 0-based t; 0 from T_hint on (no hint at all)."""
    if t >= T_hint:
        return 0.0
    return p_low + 0.5 * (p_high - p_low) * (1 + math.cos(math.pi * (t + 1) / T_hint))


def hint_p(hints: HintSchedule, t: int, total_steps: int) -> float:
    """The schedule's expected hint fraction k/num at step t (logged as `hint_p`)."""
    T = hint_steps(hints.T_hint, total_steps)
    if hints.schedule == "cosine":
        return cosine_p(t, hints.p_low, hints.p_high, T)
    if hints.schedule == "uniform":
        return 0.5
    if hints.schedule == "stage":
        return 0.0 if t >= T else 1.0 - math.floor(t * hints.stages / T) / hints.stages
    if hints.schedule == "full":
        return 1.0
    if hints.schedule == "none":
        return 0.0
    raise ValueError(f"unknown hint schedule {hints.schedule!r}: none | cosine | uniform | stage | full")


def sample_hint_length(hints: HintSchedule, t: int, total_steps: int, num: int, rng: random.Random) -> int:
    """k in 0..num for one prompt at step t."""
    p = hint_p(hints, t, total_steps)
    if hints.schedule == "cosine":
        return sum(rng.random() < p for _ in range(num))  # Binomial(num, p)
    if hints.schedule == "uniform":
        return rng.randint(0, num)
    return round(p * num)


def make_hint(pieces: list[str], k: int, L: int) -> str:
    cuts = cut_points(len(pieces), L)
    return "".join(pieces[: cuts[k]])
