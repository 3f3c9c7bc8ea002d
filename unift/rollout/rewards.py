"""Reward functions as plugins, in TRL's signature, summed with the task's verifier.

    reward_funcs: [my_rewards:format_reward, my_rewards:length_penalty]   # on a task source
    reward_weights: [0.5, 1.0]
    task_reward_weight: 1.0        # the verifier's weight; 0: the functions replace its reward

A reward function is TRL's (`GRPOTrainer(reward_funcs=...)`):

    def format_reward(prompts, completions, completion_ids, **kwargs) -> list[float | None]

called once per rollout batch with one entry per row:
- prompts: the row's conversation, chat messages (`Task.prompt`; a retry's includes the
  verifier's feedback), as TRL passes conversational prompts;
- completions: the assistant's turn as TRL gives it for conversational data, a one-message list
  `[{"role": "assistant", "content": text}]`; the text is what the verifier scores (a UFT hint
  and what the policy wrote after it);
- completion_ids: that turn's token ids (hint + generated tokens);
- kwargs: every field of the row's problem as a column (TRL passes every dataset column), the
  whole problem as `problem`, and `trainer_state` (`global_step`, `max_steps`). Fields named
  prompts, completions, completion_ids, problem or trainer_state are only in `problem`.
A function may return None for a row it does not score (TRL: NaN).

Total reward (TRL 1.16, `GRPOTrainer._generate_and_score_completions`): per row
    r = nansum_f w_f r_f
over the task's verifier (weight `task_reward_weight`, left out at 0) and the functions
(`reward_weights`, default 1 each); a row every term left None is unscorable: its reward is NaN,
it stays out of its group's mean and std, and its advantage is 0. `correct` (correct_rate, the
gates, verification-iteration retries) is always the verifier's.

Metrics per rollout batch: `reward/<name>` the mean of each function over the rows it scored
(NaN-ignoring, TRL's `rewards/<name>/mean`; names are the functions' `__name__`, TRL's
`get_callable_name`), `reward/task` the verifier's; `reward_mean` is the total's.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from unift import plugins

TASK = "task"
"""Name of the task verifier's term among the reward terms (metric `reward/task`)."""
RESERVED = ("prompts", "completions", "completion_ids", "problem", "trainer_state")
"""Keyword names unift passes itself; problem fields of these names are only in `problem`."""


@dataclass(frozen=True)
class TrainerState:
    """What TRL's `trainer_state` offers that a reward schedule needs."""

    global_step: int
    """Optimiser steps done before this rollout batch (0 at the first)."""
    max_steps: int
    """The run's steps."""


def combine_rewards(terms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, F) rewards per term (NaN where a term returned None), (F,) weights -> (N,) totals

        r_i = sum_f w_f r_if  over the f with r_if not NaN;  NaN if every r_if is NaN

    TRL 1.16 (`GRPOTrainer`, `multi_objective_aggregation="sum_then_normalize"`):
    `(rewards_per_func * reward_weights).nansum(dim=1)`, then NaN for rows all NaN."""
    total = (terms * weights).nansum(dim=1)
    total[torch.isnan(terms).all(dim=1)] = float("nan")
    return total


def callable_name(func: Callable) -> str:
    """TRL's `get_callable_name`: a partial's wrapped function, else `__name__`, else the class."""
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


class RewardFuncs:
    """The reward terms of a task source: the verifier (unless its weight is 0) and the user's
    functions, loaded from `module:name` specs."""

    def __init__(self, specs: Sequence[str], weights: Sequence[float] | None = None, task_weight: float = 1.0,
                 search: Sequence = (), funcs: Sequence[Callable] | None = None):
        """specs: `module:name` of each function (also in errors); funcs: the callables already
        loaded (from Python), else imported with `search` on sys.path (`unift.plugins.load`)."""
        self.specs = list(specs)
        self.funcs = list(funcs) if funcs is not None else [load_reward(s, f"reward_funcs.{i}", search)
                                                              for i, s in enumerate(self.specs)]
        self.weights = [1.0] * len(self.funcs) if weights is None else [float(w) for w in weights]
        self.task_weight = float(task_weight)
        self.names = [callable_name(f) for f in self.funcs]
        check_terms(self.names, self.weights, self.task_weight)

    def __call__(self, prompts: list, texts: list[str], completion_ids: list[list[int]], problems: list[dict],
                 task_rewards: list[float], trainer_state: TrainerState) -> tuple[list[float], dict[str, list]]:
        """Rows -> (total reward per row, {term name: reward per row, NaN where None}); the
        terms include `task`, the verifier's reward, even when its weight is 0."""
        n = len(texts)
        kwargs = problem_columns(problems)
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        parts = {TASK: [float(r) for r in task_rewards]}
        for name, spec, func in zip(self.names, self.specs, self.funcs, strict=True):
            try:
                out = func(prompts=prompts, completions=completions, completion_ids=completion_ids,
                           **kwargs, trainer_state=trainer_state)
            except Exception as err:
                err.add_note(f"in reward function {name} ({spec})")
                raise
            parts[name] = check_output(out, n, f"reward function {name} ({spec})")
        columns = ([TASK] if self.task_weight else []) + self.names
        weights = ([self.task_weight] if self.task_weight else []) + self.weights
        terms = torch.tensor([parts[c] for c in columns], dtype=torch.float64).T  # (N, F)
        total = combine_rewards(terms, torch.tensor(weights, dtype=torch.float64))
        return total.tolist(), parts


def load_reward(spec: str, where: str, search: Sequence = ()) -> Callable:
    """The callable `spec` names; a ValueError naming `where` otherwise."""
    try:
        func = plugins.load(spec, search)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    if not callable(func):
        raise ValueError(f"{where}: {spec!r} is {func!r}, not a function")
    return func


def check_terms(names: list[str], weights: list[float], task_weight: float) -> None:
    """Refuse weights that do not match the functions, and names metrics could not tell apart."""
    if len(weights) != len(names):
        raise ValueError(f"reward_weights: {len(weights)} weight(s) for {len(names)} reward function(s)")
    if not all(math.isfinite(w) for w in [*weights, task_weight]):
        raise ValueError("reward_weights and task_reward_weight must be finite numbers")
    if not names and task_weight == 0:
        raise ValueError("task_reward_weight: 0 leaves no reward (give reward_funcs to replace the verifier's)")
    taken = [TASK, *names]
    dup = sorted({n for i, n in enumerate(taken) if n in taken[:i]})
    if dup:
        raise ValueError(f"reward_funcs: the reward names {dup} are not unique (metrics are reward/<name>; "
                         f"{TASK!r} is the verifier's); rename the functions")


def problem_columns(problems: list[dict]) -> dict[str, list]:
    """The problems' fields as columns (None where a problem lacks one), and `problem` itself."""
    keys = [k for k in dict.fromkeys(k for p in problems for k in p) if k not in RESERVED]
    return {**{k: [p.get(k) for p in problems] for k in keys}, "problem": list(problems)}


def check_output(out, n: int, what: str) -> list[float]:
    """A reward function's result as n floats (None -> NaN), or a ValueError naming the row."""
    if isinstance(out, torch.Tensor):
        out = out.tolist()
    if isinstance(out, str | bytes) or not hasattr(out, "__len__"):
        raise ValueError(f"{what} returned {type(out).__name__}; expected a list of {n} numbers or None")
    if len(out) != n:
        raise ValueError(f"{what} returned {len(out)} rewards for {n} completions (one per completion)")
    values = []
    for i, r in enumerate(out):
        if r is None:
            values.append(math.nan)
        elif isinstance(r, numbers.Real) and not math.isinf(r):
            values.append(float(r))
        else:
            raise ValueError(f"{what}: row {i} is {r!r}; expected a finite number or None")
    return values


def nanmean(values: list[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none (TRL's `torch.nanmean`)."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
