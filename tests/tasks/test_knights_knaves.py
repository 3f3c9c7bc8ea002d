"""Knights and Knaves: uniqueness checked naively, variants, verifier scale."""

from __future__ import annotations

from itertools import product

import pytest

from unift import tasks
from unift.tasks.knights_knaves import MAX_ANSWER_CHARS, holds, render


def _naive_solutions(problem) -> list[tuple[bool, ...]]:
    n = len(problem["names"])
    return [
        roles
        for roles in product((True, False), repeat=n)
        if all(
            holds(f, dict(enumerate(roles))) == roles[i]
            for i, f in enumerate(problem["statements"])
        )
    ]


def _depth(f) -> int:
    return 1 if f[0] in ("knight", "knave") else 1 + max(_depth(g) for g in f[1:])


@pytest.mark.parametrize(
    ("variant", "people", "depth"),
    [
        ("id", range(3, 8), 2),
        ("easy", range(3, 4), 2),
        ("ood_people", range(8, 9), 2),
        ("ood_depth", range(3, 8), 3),
    ],
)
def test_puzzles_have_one_solution_and_the_variant_shape(variant, people, depth):
    task = tasks.get("knights_knaves", variant=variant)
    problems = task.problems(150)
    assert {len(p["names"]) for p in problems} == set(people)
    for p in problems:
        n = len(p["names"])
        assert len(set(p["names"])) == n
        assert max(_depth(f) for f in p["statements"]) == depth
        solutions = _naive_solutions(p)
        assert len(solutions) == 1 and list(solutions[0]) == task.solve(p)
        for i, f in enumerate(p["statements"]):  # statements mention only others
            assert i not in _atoms(f)


def _atoms(f):
    return [f[1]] if f[0] in ("knight", "knave") else [a for g in f[1:] for a in _atoms(g)]


PROBLEM = {
    "names": ["Zoey", "Oliver", "Ethan"],
    "statements": [
        ["knave", 1],
        ["and", ["knight", 0], ["knave", 2]],
        ["or", ["knight", 0], ["knight", 1]],
    ],
}


def test_rendering_and_hand_checked_solution():
    assert (
        render(PROBLEM["statements"][1], PROBLEM["names"])
        == "Zoey is a knight and Ethan is a knave"
    )
    # Zoey knight -> Oliver knave -> "Zoey knight and Ethan knave" false -> Ethan knight,
    # Ethan says "Zoey knight or Oliver knight": true. Consistent; Zoey knave leads to a clash.
    assert tasks.get("knights_knaves").solve(PROBLEM) == [True, False, True]


@pytest.mark.parametrize(
    ("answer", "reward"),
    [
        ("(1) Zoey is a knight\n(2) Oliver is a knave\n(3) Ethan is a knight", 1.0),
        ("Zoey is a knight, oliver is a knave and ETHAN IS A KNIGHT.", 1.0),
        ("(1) Zoey is a knight (2) Oliver is a knight (3) Ethan is a knight", 0.1),
        ("Zoey is a knight, Zoey is a knave, Oliver is a knave, Ethan is a knight", 0.1),
        ("(1) Zoey is a knight (2) Oliver is a knave", 0.0),
        ("Zoey: knight, Oliver: knave, Ethan: knight", 0.0),
    ],
)
def test_reward_scale(answer, reward):
    score = tasks.get("knights_knaves").score(
        PROBLEM, f"<think>...</think><answer>{answer}</answer>"
    )
    assert score.reward == reward and score.correct == (reward == 1.0) and score.feedback
    assert tasks.get("knights_knaves").score(PROBLEM, answer).reward == 0.0  # no block


def test_reference_trace_reads_like_the_study():
    steps = tasks.get("knights_knaves").solution_steps(PROBLEM)
    assert steps[0].startswith("<think>\nAssume ")
    assert steps[-2].startswith("No contradiction is found")
    assert steps[-1].startswith(
        "Therefore, (1) Zoey is a knight (2) Oliver is a knave (3) Ethan is a knight"
    )
    assert "contradiction." in "".join(steps)  # the trace shows the refuted branch


def test_answers_longer_than_the_cap_are_not_read():
    task = tasks.get("knights_knaves")
    right = "Zoey is a knight, Oliver is a knave and Ethan is a knight."
    padded = right + " " + "x" * (MAX_ANSWER_CHARS - len(right))  # one character over
    assert task.score(PROBLEM, f"<answer>{padded[:-1]}</answer>").correct
    score = task.score(PROBLEM, f"<answer>{padded}</answer>")
    assert score.reward == 0.0 and f"longer than {MAX_ANSWER_CHARS}" in score.feedback
