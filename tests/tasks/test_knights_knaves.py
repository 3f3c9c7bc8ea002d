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
        for i, f in enumerate(p["statements"]):  # a speaker never claims "I am a knave"
            assert ["knave", i] not in _claims(f)


def _claims(f):
    return [f] if f[0] in ("knight", "knave") else [c for g in f[1:] for c in _claims(g)]


def test_statements_follow_the_reference_samplers_mix():
    # The reference sampler at depth 2: a die of 6 picks a bare claim (1/6), "not" (1/6) or one
    # of and/or/implies/iff over two different claims (1/6 each). The UFT data (3-7 people,
    # 4500 training puzzles, after keeping unique solutions): 16% depth 1, 84% depth 2, each
    # connective 15-18%, 12.5% of statements about their own speaker.
    problems = tasks.get("knights_knaves").problems(600)
    statements = [(i, f) for p in problems for i, f in enumerate(p["statements"])]
    share = {key: sum(pred(i, f) for i, f in statements) / len(statements) for key, pred in {
        "depth 2": lambda i, f: _depth(f) == 2,
        "self": lambda i, f: any(c[1] == i for c in _claims(f)),
        **{op: (lambda i, f, op=op: f[0] == op) for op in ("not", "and", "or", "implies", "iff")},
    }.items()}
    assert 0.81 < share["depth 2"] < 0.87 and 0.09 < share["self"] < 0.16, share
    assert all(0.13 < share[op] < 0.20 for op in ("not", "and", "or", "implies", "iff")), share
    assert {len(p["names"]) for p in problems} == set(range(3, 8))
    easy = tasks.get("knights_knaves", variant="easy").problems(50)
    assert render(["not", ["knight", 1]], ["Zoey", "Oliver"]) == "Oliver is not a knight"  # the data's wording
    assert all(f[0] != "not" or f[1][0] in ("knight", "knave") for p in easy for f in p["statements"])


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


ANSWER = "(1) Zoey is a knight\n(2) Oliver is a knave\n(3) Ethan is a knight"

# (completion, reward under UFT's kk_logic.compute_score, unift's reward when it differs on purpose)
PINNED = [
    (f"<think>...</think><answer>{ANSWER}</answer>", 1.0, None),
    (f"<answer> {ANSWER} </answer>", 1.0, None),  # the block is stripped
    (ANSWER, 0.0, None),  # no block
    ("<answer>   </answer>", 0.0, None),  # an empty block counts as none
    (f"<answer>{ANSWER}", 0.0, None),  # unclosed
    ("<answer>zoey is a knight, oliver is a knave, ethan is a knight</answer>", 1.0, None),  # any case
    ("<answer>ZOEY IS A KNIGHT. OLIVER IS A KNAVE. ETHAN IS A KNIGHT.</answer>", 1.0, None),
    ("<answer>Zoey is a Knight, Oliver is a Knave, Ethan is a Knight</answer>", 1.0, None),
    ("<answer>Zoey  is   a\nknight; Oliver is a knave; Ethan is a knight</answer>", 1.0, None),  # \s+
    ("<answer>(1) Ethan is a knight (2) Zoey is a knight (3) Oliver is a knave</answer>", 1.0, None),  # any order
    ("<answer>(1) Zoey is a knight (2) Oliver is a knight (3) Ethan is a knight</answer>", 0.1, None),  # a wrong role
    ("<answer>Zoey is a knave, Oliver is a knight, Ethan is a knave</answer>", 0.1, None),  # all wrong
    ("<answer>(1) Zoey is a knight (2) Oliver is a knave</answer>", 0.1, None),  # 2 role words for 3
    ("<answer>Zoey is a knight, Zoey is a knave, Oliver is a knave, Ethan is a knight</answer>", 0.1, None),  # 4
    (f"<answer>{ANSWER}. So there are two knights.</answer>", 0.1, None),  # "knights": 4 role words
    (f"<answer>{ANSWER}\n(the knave is Oliver)</answer>", 0.1, None),  # 4 role words
    ("<answer>Zoey: knight, Oliver: knave, Ethan: knight</answer>", 0.1, None),  # 3 words, no "NAME is a"
    ("<answer>Zoey is an knight, Oliver is a knave, Ethan is a knight</answer>", 0.1, None),  # "is a" only
    ("<answer>Zoey is not a knave, Oliver is a knave, Ethan is a knight</answer>", 0.1, None),  # Zoey unstated
    ("<answer>Zoeyy is a knight, Oliver is a knave, Ethan is a knight</answer>", 0.1, None),  # \bZoey\b
    ("<answer>Zoey is a knave. Zoey is a knight. Ethan is a knight.</answer>", 0.1, None),  # Oliver missing
    ("<answer>the knight Zoey, the knave Oliver, the knight Ethan</answer>", 0.1, None),
    ("<answer>see above</answer>", 0.1, None),  # a block without roles: the format score
    (f"<answer>Zoey is a knave</answer> <answer>{ANSWER}</answer>", 1.0, None),  # the last block counts
    (f"<answer>{ANSWER}</answer> <answer>Zoey is a knave</answer>", 0.1, None),
    # tags pair left to right: the block is "Zoey is a knave<answer>(1) Zoey is a knight ...": 4 words
    (f"<answer>Zoey is a knave<answer>{ANSWER}</answer>", 0.1, None),
    (f"<think>if <answer> then</think> <answer>{ANSWER}</answer>", 1.0, None),  # block from the first tag
    (f"<think>knight knave knights knaves {ANSWER}</think><answer>{ANSWER}</answer>", 1.0, None),  # block only
    (f"<answer>{ANSWER}</answer>\nUser: next?\n<answer>0</answer>", 0.1, None),  # text after the stop
    ("<answer>" + ANSWER + " " + "x" * 2000 + "</answer>", 1.0, 0.1),  # over MAX_ANSWER_CHARS: unread here
    (f"<answer>Therefore, {ANSWER}</answer>", 1.0, None),
]


def test_pinned_cases_are_enough():
    assert len(PINNED) >= 30


@pytest.mark.parametrize(("completion", "study", "ours"), PINNED)
def test_pinned_rewards_follow_the_uft_verifier(completion, study, ours):
    score = tasks.get("knights_knaves").score(PROBLEM, completion)
    assert score.reward == (study if ours is None else ours)
    assert score.correct == (score.reward == 1.0) and score.feedback


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
    assert score.reward == 0.1 and f"longer than {MAX_ANSWER_CHARS}" in score.feedback
