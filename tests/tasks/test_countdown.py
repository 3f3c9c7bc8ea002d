"""Countdown: variants, the 1.0 / 0.1 / 0.0 scale, agreement with a naive solver and with
reasoning-gym's countdown."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
import reasoning_gym

from unift import tasks

from .helpers import brute_solvable

PROBLEM = {"numbers": [19, 35, 44], "target": 98}


@pytest.mark.parametrize(
    ("variant", "counts", "values", "targets"),
    [
        ("id", {3, 4}, (1, 99), (10, 100)),
        ("easy", {2, 3}, (1, 30), (1, 100)),
        ("ood_numbers", {5}, (1, 99), (10, 100)),
        ("ood_target", {3, 4}, (1, 99), (101, 1000)),
    ],
)
def test_variants_draw_the_specified_problems(variant, counts, values, targets):
    problems = tasks.get("countdown", variant=variant).problems(300)
    assert {len(p["numbers"]) for p in problems} == counts
    assert all(values[0] <= x <= values[1] for p in problems for x in p["numbers"])
    assert all(targets[0] <= p["target"] <= targets[1] for p in problems)
    assert tasks.get("countdown", variant=variant).variants()[variant]["distribution"] == (
        "ood" if "ood" in variant else "id"
    )


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("<think>19 + 35 = 54</think><answer>44 + (19 + 35)</answer>", 1.0),
        ("<answer> 44 + 19 + 35 = 98 </answer>", 1.0),  # a trailing "= 98" is fine
        ("<answer>(35 - 19) * 44 / 44</answer>", 0.1),  # a number used twice
        ("<answer>44 + 19 - 35</answer>", 0.1),  # wrong value
        ("<answer>44 + 19</answer>", 0.1),  # a number left out
        ("<answer>44 + 54</answer>", 0.1),  # a number not given
        ("<answer>44 + 19 + 35</answer> then <answer>1 + 1</answer>", 0.1),  # the last block counts
        ("44 + (19 + 35)", 0.0),  # no answer block
        ("<answer>forty four plus the rest</answer>", 0.0),
        ("<answer>44 + (19 + 35</answer>", 0.0),
        ("<answer>44 / (19 - 19) + 35</answer>", 0.0),
    ],
)
def test_reward_scale(completion, reward):
    score = tasks.get("countdown").score(PROBLEM, completion)
    assert score.reward == reward and score.correct == (reward == 1.0) and score.feedback


def test_exact_arithmetic_accepts_fraction_intermediates():
    score = tasks.get("countdown").score(
        {"numbers": [3, 3, 8, 8], "target": 24}, "<answer>8 / (3 - 8 / 3)</answer>"
    )
    assert score.correct


def test_reference_pieces_follow_the_study_format():
    steps = tasks.get("countdown").solution_steps(PROBLEM)
    assert steps[0].startswith("<think>\n") and all(
        re.fullmatch(r"\d+ [-+*/] \d+ = \d+\n", s) for s in [steps[0][8:], *steps[1:-2]]
    )
    assert steps[-2].startswith("Therefore, the final equation is ") and steps[-2].endswith(
        "</think>\n"
    )
    assert steps[-1].startswith("<answer>") and steps[-1].endswith("</answer>")


def _naive_value(expr: str) -> Fraction:
    """An independent evaluator for our own (trusted) reference expressions."""
    assert re.fullmatch(r"[\d+\-*/() ]+", expr)
    return eval(re.sub(r"\d+", lambda m: f"Fraction({m.group()})", expr), {"Fraction": Fraction})


def test_generated_problems_and_references_agree_with_naive_check():
    task = tasks.get("countdown")
    for problem in task.problems(40, seed=3):
        assert brute_solvable(problem["numbers"], problem["target"])
        expr = task.reference_completion(problem).rsplit("<answer>", 1)[1].removesuffix("</answer>")
        assert _naive_value(expr) == problem["target"]
        assert sorted(map(int, re.findall(r"\d+", expr))) == sorted(problem["numbers"])


def test_reasoning_gym_countdown_answers_score_correct():
    task = tasks.get("countdown")
    for size, config in (
        (60, {}),
        (40, {"min_numbers": 3, "max_numbers": 4, "max_target": 100, "min_target": 10}),
    ):
        dataset = reasoning_gym.create_dataset("countdown", seed=7, size=size, **config)
        for entry in dataset:
            problem = {
                "numbers": entry["metadata"]["numbers"],
                "target": entry["metadata"]["target"],
            }
            assert task.score(problem, f"<answer>{entry['answer']}</answer>").correct, entry[
                "answer"
            ]
            assert not task.score(problem, f"<answer>{entry['answer']} + 1</answer>").correct
