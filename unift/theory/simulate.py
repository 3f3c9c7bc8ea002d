"""Train RFT / UFT on a search tree until pass@1 >= 0.5, count leaf visits, sweep, and fit.

Every rollout ends on exactly one leaf, so leaf visits = rollouts sampled, hinted ones included
(a rollout with l = H "visits" the correct leaf without exploring; counting it is conservative
for UFT). The paper's claims (Liu, Farina, Ozdaglar 2025, theory section):
    RFT (any method that only sees root rollouts): >= B^H / (4K) visits to reach pass@1 >= 0.5;
    UFT (l ~ Uniform{0..H}, beta*log-likelihood on the hint): polynomial in H (O~(B H^5)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from unift.theory.tree import (
    greedy_correct,
    group_advantages,
    make_tree,
    mirror_update,
    pass_at_1,
    rollout,
    uniform_policy,
)

METHODS = ("rft", "uft")


@dataclass(frozen=True)
class SimConfig:
    """Hyper-parameters shared by RFT and UFT (RFT = UFT with l = 0 and no hint term)."""

    eta: float = 3.0
    """Mirror-ascent step size."""
    beta: float = 0.05
    """Weight of the hint log-likelihood and of KL(pi || pi_ref) on explored states."""
    groups: int = 2
    """Groups per iteration; each group draws one hint length."""
    group_size: int = 4
    """Rollouts per group (the group mean is the advantage baseline)."""
    target: float = 0.5
    """Stop when pass@1 = P_pi(correct leaf from the root) reaches this."""
    max_visits: int = 1_000_000
    """Give up (and report the point as capped) after this many leaf visits."""
    schedule: str = "uniform"
    """UFT hint lengths: 'uniform' (l ~ Uniform{0..H}, the theory's) or 'cosine' (the trainer's
    schedule, docs/methods.md section 1.1, with the reference code's step phase, section 1.5)."""
    hint_iters: int = 0
    """Cosine schedule: T_hint in iterations (no hint afterwards); 0 means 40 * H."""
    hint_pieces: int = 5
    """Cosine schedule: L, the most pieces a solution is cut into (num = min(L, H))."""
    correct_leaves: int = 1
    """K, the number of correct leaves."""


def hint_lengths(
    method: str, cfg: SimConfig, height: int, it: int, rng: np.random.Generator
) -> np.ndarray:
    """(groups,) hint length l for each group at iteration `it` (0-based).

    rft: l = 0. uft/uniform: l ~ Uniform{0, ..., H}. uft/cosine (docs/methods.md section 1.1):
    num = min(L, H), cut points c_i = round(i/num * H), k ~ Binomial(num, p(t)) with
    p(t) = p_low + (p_high - p_low)/2 * (1 + cos(pi t / T_hint)), p_low 0.05, p_high 0.95,
    t = it + 1 in 1..T_hint; after T_hint no hint; l = c_k.
    """
    if method == "rft":
        return np.zeros(cfg.groups, dtype=np.int64)
    if cfg.schedule == "uniform":
        return rng.integers(0, height + 1, size=cfg.groups)
    if cfg.schedule != "cosine":
        raise ValueError(f"unknown hint schedule {cfg.schedule!r}")
    t_hint = cfg.hint_iters or 40 * height
    t = it + 1
    if t > t_hint:
        return np.zeros(cfg.groups, dtype=np.int64)
    p = 0.05 + 0.5 * (0.95 - 0.05) * (1 + math.cos(math.pi * t / t_hint))
    num = min(cfg.hint_pieces, height)
    cuts = np.array([round(i / num * height) for i in range(num + 1)])
    return cuts[rng.binomial(num, p, size=cfg.groups)]


@dataclass(frozen=True)
class RunResult:
    visits: int
    """Leaf visits when pass@1 first reached the target (or max_visits if capped)."""
    iterations: int
    capped: bool
    """True if the target was not reached within max_visits."""
    final_pass_at_1: float
    greedy_correct: bool
    """Whether argmax decoding from the root ends on a correct leaf at the stopping point."""


def train_until_solved(
    method: str, height: int, branching: int, cfg: SimConfig, seed: int
) -> RunResult:
    """Run iterations (rollout -> advantage -> update -> evaluate) until pass@1 >= target."""
    rng = np.random.default_rng([seed, branching, height, METHODS.index(method)])
    tree = make_tree(height, branching, cfg.correct_leaves, rng)
    logp = uniform_policy(tree)
    visits, it, p1 = 0, 0, pass_at_1(logp, tree)
    while visits < cfg.max_visits:
        hint = np.repeat(hint_lengths(method, cfg, height, it, rng), cfg.group_size)  # (N,)
        nodes, actions, leaves = rollout(logp, tree, hint, rng)
        visits += len(leaves)
        adv = group_advantages(tree.reward(leaves), cfg.group_size)
        mirror_update(logp, tree, nodes, actions, hint, adv, cfg.eta, cfg.beta)
        it += 1
        p1 = pass_at_1(logp, tree)
        if p1 >= cfg.target:
            return RunResult(visits, it, False, p1, greedy_correct(logp, tree))
    return RunResult(cfg.max_visits, it, True, p1, greedy_correct(logp, tree))


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y = slope * x + intercept (nan if < 2 points)."""
    if len(x) < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def summarize(heights: list[int], runs: dict[int, list[RunResult]], method: str) -> dict:
    """Per-height statistics and the fit for one (method, B).

    Mean visits over seeds; a height is 'capped' if any seed was, and capped heights are left out
    of the fits (their mean is only a lower bound). `fit` uses every uncapped height, `fit_top`
    the upper half of the heights, where the polynomial overhead that follows RFT's first hit no
    longer hides the B^H term. RFT fits log(visits) = slope*H + c (slope -> log B); UFT fits
    log(visits) = degree*log(H) + c.
    """
    rows = []
    for h in heights:
        v = np.array([r.visits for r in runs[h]], dtype=float)
        rows.append(
            {
                "height": h,
                "visits": [int(x) for x in v],
                "mean": float(v.mean()),
                "median": float(np.median(v)),
                "geomean": float(np.exp(np.log(v).mean())),
                "capped_seeds": int(sum(r.capped for r in runs[h])),
                "iterations": [r.iterations for r in runs[h]],
                "greedy_correct_at_stop": int(sum(r.greedy_correct for r in runs[h])),
            }
        )
    ok = [r for r in rows if r["capped_seeds"] == 0]
    top_from = heights[len(heights) // 2]  # the upper half: where the asymptotics should show
    return {
        "rows": rows,
        "fit": _fit(ok, method),
        "fit_top": _fit([r for r in ok if r["height"] >= top_from], method),
    }


def _fit(rows: list[dict], method: str) -> dict:
    """RFT: log(mean visits) = slope*H + c; UFT: log(mean visits) = slope*log(H) + c."""
    hs = np.array([r["height"] for r in rows], dtype=float)
    logv = np.log([r["mean"] for r in rows])
    slope, intercept = fit_line(hs if method == "rft" else np.log(hs), logv)
    return {
        "x": "H" if method == "rft" else "log H",
        "slope": slope,
        "intercept": intercept,
        "heights_used": [int(h) for h in hs],
    }


def sweep(
    heights: list[int],
    branchings: list[int],
    seeds: int,
    cfg: SimConfig,
    methods: tuple[str, ...] = METHODS,
    log=print,
) -> dict:
    """All (B, method, H, seed) runs; returns {B: {method: summarize(...)}} keyed by str(B)."""
    out: dict = {}
    for b in branchings:
        out[str(b)] = {}
        for method in methods:
            runs = {}
            for h in heights:
                runs[h] = [train_until_solved(method, h, b, cfg, s) for s in range(seeds)]
                mean = np.mean([r.visits for r in runs[h]])
                capped = sum(r.capped for r in runs[h])
                log(f"B={b} H={h:<2} {method}: mean visits {mean:>10.0f}  capped {capped}/{seeds}")
            out[str(b)][method] = summarize(heights, runs, method)
    return out
