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


@dataclass
class HintSpec:
    """Hint settings of a task source (the `hint:` block of its config)."""

    schedule: str = "none"
    """none | cosine | uniform | stage | full (see the module docstring)."""
    p_low: float = 0.05
    """Cosine schedule: the hint probability at T_hint."""
    p_high: float = 0.95
    """Cosine schedule: the hint probability at step 0."""
    T_hint: float = 0.6
    """Steps with hints: a fraction of the run's steps if <= 1, else a step count."""
    L: int = 5
    """At most L + 1 hint lengths (cut points) per solution."""
    stages: int = 3
    """Stage schedule: number of equal stages before T_hint."""


def cut_points(num_pieces: int, L: int) -> list[int]:
    """c_0 = 0 < ... < c_num = num_pieces with num = min(L, num_pieces)."""
    num = min(L, num_pieces)
    if num == 0:
        return [0]
    return [round(i / num * num_pieces) for i in range(num)] + [num_pieces]


def hint_steps(spec: HintSpec, total_steps: int) -> int:
    return round(spec.T_hint * total_steps) if spec.T_hint <= 1 else int(spec.T_hint)


def cosine_p(t: int, p_low: float, p_high: float, T_hint: int) -> float:
    """p(t) of the cosine-binomial schedule for 0-based t; 0 from T_hint on (no hint at all)."""
    if t >= T_hint:
        return 0.0
    return p_low + 0.5 * (p_high - p_low) * (1 + math.cos(math.pi * (t + 1) / T_hint))


def hint_p(spec: HintSpec, t: int, total_steps: int) -> float:
    """The schedule's expected hint fraction k/num at step t (logged as `hint_p`)."""
    T = hint_steps(spec, total_steps)
    if spec.schedule == "cosine":
        return cosine_p(t, spec.p_low, spec.p_high, T)
    if spec.schedule == "uniform":
        return 0.5
    if spec.schedule == "stage":
        return 0.0 if t >= T else 1.0 - math.floor(t * spec.stages / T) / spec.stages
    if spec.schedule == "full":
        return 1.0
    if spec.schedule == "none":
        return 0.0
    raise ValueError(f"unknown hint schedule {spec.schedule!r}: none | cosine | uniform | stage | full")


def sample_hint_length(spec: HintSpec, t: int, total_steps: int, num: int, rng: random.Random) -> int:
    """k in 0..num for one prompt at step t."""
    p = hint_p(spec, t, total_steps)
    if spec.schedule == "cosine":
        return sum(rng.random() < p for _ in range(num))  # Binomial(num, p)
    if spec.schedule == "uniform":
        return rng.randint(0, num)
    return round(p * num)


def make_hint(pieces: list[str], k: int, L: int) -> str:
    cuts = cut_points(len(pieces), L)
    return "".join(pieces[: cuts[k]])
