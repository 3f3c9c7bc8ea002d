"""Shared helpers for the task tests (not fixtures: see conftest.py)."""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from itertools import combinations

from unift import tasks

# (task, variant params, problems checked) for the "reference solves its own problem" tests;
# 1000 problems per task and variant.
CASES = [
    ("countdown", "id", 1000),
    ("countdown", "easy", 1000),
    ("countdown", "ood_numbers", 1000),
    ("countdown", "ood_target", 1000),
    ("knights_knaves", "id", 1000),
    ("knights_knaves", "easy", 1000),
    ("knights_knaves", "ood_people", 1000),
    ("knights_knaves", "ood_depth", 1000),
    ("general_points", "id", 1000),
    ("general_points", "ood_rule", 1000),
    ("navigation", "absolute", 1000),
    ("navigation", "relative", 1000),
    ("instructions", "id", 1000),
    ("instructions", "ood_count", 1000),
]


def all_tasks(math_file: str) -> list[tasks.Task]:
    """One instance of every registered task (adapters on concrete data)."""
    out = [
        tasks.get(name, variant=v)
        for name in ("countdown", "knights_knaves", "general_points", "navigation", "instructions")
        for v in tasks.TASKS[name].named_variants
    ]
    out += [
        tasks.get("reasoning_gym", dataset="countdown"),
        tasks.get("reasoning_gym", dataset="basic_arithmetic"),
        tasks.get("jsonl", path=math_file),
    ]
    return out


@cache
def reachable(numbers: tuple) -> frozenset:
    """Every value of an expression using each number exactly once (naive, exact)."""
    if len(numbers) == 1:
        return frozenset(numbers)
    out = set()
    for i, j in combinations(range(len(numbers)), 2):
        rest = tuple(x for k, x in enumerate(numbers) if k not in (i, j))
        a, b = numbers[i], numbers[j]
        values = (
            {a + b, a - b, b - a, a * b} | ({a / b} if b else set()) | ({b / a} if a else set())
        )
        for v in values:
            out |= reachable(tuple(sorted(rest + (v,))))
    return frozenset(out)


def brute_solvable(numbers, target) -> bool:
    return Fraction(target) in reachable(tuple(sorted(Fraction(n) for n in numbers)))


def shipped_task_names() -> list[str]:
    """The tasks unift ships (not the toy ones other tests register, e.g. tests/rl/toy_task.py)."""
    from unift import tasks

    return [name for name in tasks.names() if tasks.TASKS[name].__module__.startswith("unift.")]
