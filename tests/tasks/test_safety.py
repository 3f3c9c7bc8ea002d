"""Verifiers never raise, never evaluate model output, and dispose of pathological completions
quickly with the task's minimum reward."""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unift import tasks
from unift.tasks import Score

from .helpers import all_tasks

CANARY = "/tmp/unift_safety_canary"
# exec(bytes((...))) of the line above in full-width letters: Python reads 'ｅｘｅｃ' as exec
_CODES = ",".join(str(b) for b in f'__import__("os").system("touch {CANARY}")'.encode())
FULL_WIDTH = f"ｅｘｅｃ(ｂｙｔｅｓ(({_CODES},)))"
NESTED = "(" * 10_000 + "1" + ")" * 10_000
PATHOLOGICAL = [
    "9**9**9**9",
    "10**100000",
    "99999999!",
    "1/0",
    "8/(3-3)",
    "٣ + ٤",
    "1e308*1e308",
    "[0]*10**9",
    f'__import__("os").system("touch {CANARY}")',
    FULL_WIDTH,
    NESTED,
    "",
    "\x00\x01\ud800",
    "x" * 1_000_000,
    "1+" * 500_000 + "1",
    "<answer>" * 100_000,
    "{" * 100_000,
    "\\boxed{" * 10_000,
    "\\boxed{9^{9^{9^9}}}",
    "$2^{2^{2^{40}}}$",
    "\\boxed{100000000!}",
    "forward()\n" * 100_000,
    "x^" * 900 + "x",
]

# The minimum reward, except: a navigation sequence scores in [0, 1]; math-verify reads "1/0"
# as a (wrong) answer; reasoning-gym's own verifiers give 0.01-0.05 to a wrong answer;
# instruction constraints judge text, and "9**9**9**9" is lowercase text.
LOWEST = {
    "navigation": 0.0,
    "general_points": -3.0,
    "jsonl": 0.1,
    "reasoning_gym": 0.05,
    "instructions": 1.0,
}


def wrapped(text: str) -> list[str]:
    """Each pathological text bare, as an answer block, as a JSON formula and boxed."""
    return [text, f"<answer>{text}</answer>", json.dumps({"formula": text}), f"\\boxed{{{text}}}"]


def test_pathological_completions_are_cheap_and_score_the_minimum(math_file):
    if os.path.exists(CANARY):
        os.remove(CANARY)
    everything = all_tasks(math_file)
    cases = [(task, task.problems(1)[0]) for task in everything]
    for task, problem in cases:  # warm up imports and caches before timing
        task.score(problem, task.reference_completion(problem))
    start = time.perf_counter()
    for task, problem in cases:
        for text in PATHOLOGICAL:
            for completion in wrapped(text):
                score = task.score(problem, completion)
                assert isinstance(score, Score) and not score.correct and score.feedback, (
                    task,
                    completion[:50],
                )
                assert score.reward <= LOWEST.get(task.name, task.min_reward), (
                    task,
                    completion[:50],
                    score,
                )
    elapsed = time.perf_counter() - start
    assert not os.path.exists(CANARY)
    n = len(cases) * len(PATHOLOGICAL) * 4
    # the aim is well under a second for the whole set; the bound leaves room for a busy machine
    assert elapsed < 3.0, f"{n} pathological scorings took {elapsed:.2f} s"


@pytest.mark.parametrize(
    "name", ["countdown", "knights_knaves", "general_points", "navigation", "instructions"]
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_verifiers_never_raise_on_fuzzed_completions(name, data):
    task = tasks.get(name)
    problem = data.draw(st.sampled_from(_problems(name)))
    reference = task.reference_completion(problem)
    alphabet = st.sampled_from(
        list("0123456789+-*/() =<>{}[]\"':,.\n")
        + ["<answer>", "</answer>", "forward()", "knight", "knave", '"formula": ', "**", "٣"]
    )
    noise = data.draw(st.text(max_size=60) | st.lists(alphabet, max_size=40).map("".join))
    cut = data.draw(st.integers(0, len(reference)))
    completion = data.draw(
        st.sampled_from(
            [
                noise,
                reference[:cut] + noise,
                noise + reference,
                reference[:cut] + noise + reference[cut:],
                f"<answer>{noise}</answer>",
                json.dumps({"formula": noise}),
            ]
        )
    )
    score = task.score(problem, completion)
    assert isinstance(score, Score) and isinstance(score.feedback, str)
    assert task.min_reward <= score.reward <= task.max_reward
    if name == "navigation":
        t = data.draw(st.integers(0, len(task.expected(problem)) - 1))
        assert task.score_step(problem, t, completion).reward in (-1.0, 1.0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(max_size=80)
    | st.lists(
        st.sampled_from(list("0123456789+-*/^()!_. ") + ["**", "\\boxed{", "}", "$", "\\frac"]),
        max_size=30,
    ).map("".join)
)
def test_adapters_never_raise_on_fuzzed_completions(math_file, text):
    for task in all_tasks(math_file)[-3:]:
        problem = _adapter_problem(task)
        for completion in (text, f"<answer>{text}</answer>", f"\\boxed{{{text}}}"):
            score = task.score(problem, completion)
            assert isinstance(score, Score) and 0.0 <= score.reward <= 1.0


_CACHE: dict = {}


def _problems(name: str) -> list[dict]:
    if name not in _CACHE:
        _CACHE[name] = tasks.get(name).problems(20, seed=9)
    return _CACHE[name]


def _adapter_problem(task) -> dict:
    key = (task.name, json.dumps(task.variant, sort_keys=True))
    if key not in _CACHE:
        _CACHE[key] = task.problems(1)[0]
    return _CACHE[key]
