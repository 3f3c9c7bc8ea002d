"""GeneralPoints: the deck, the rules, the published reward scale, exact arithmetic."""

from __future__ import annotations

import json
import random

import pytest

from unift import tasks
from unift.tasks import arith
from unift.tasks.general_points import RANKS, card_value

from .helpers import brute_solvable


@pytest.mark.parametrize("variant", ["id", "ood_rule"])
def test_hands_come_from_one_deck_and_are_solvable(variant):
    task = tasks.get("general_points", variant=variant)
    for p in task.problems(300):
        hand = list(zip(p["cards"], p["suits"], strict=True))
        assert len(set(hand)) == 4 and all(r in RANKS for r in p["cards"])  # without replacement
        assert p["target"] == 24 and p["rule"] == task.variant["rule"]
        if variant == "ood_rule":
            assert any(c in "JQK" for c in p["cards"])
    for p in task.problems(60, seed=5):
        assert brute_solvable([card_value(c, p["rule"]) for c in p["cards"]], 24)


def test_rules_differ_only_in_face_values():
    assert [card_value(c, "face_is_10") for c in ("A", "7", "10", "J", "Q", "K")] == [
        1,
        7,
        10,
        10,
        10,
        10,
    ]
    assert [card_value(c, "face_is_11_12_13") for c in ("A", "7", "10", "J", "Q", "K")] == [
        1,
        7,
        10,
        11,
        12,
        13,
    ]
    ood = tasks.get("general_points", variant="ood_rule")
    assert (
        "11" in ood.question(ood.problems(1)[0])
        and tasks.TASKS["general_points"].variants()["ood_rule"]["distribution"] == "ood"
    )


def test_solvability_matches_naive_enumeration_on_random_hands():
    rng = random.Random(1)
    for _ in range(60):
        values = [rng.randint(1, 13) for _ in range(4)]
        assert (arith.solve(values, 24) is not None) == brute_solvable(values, 24), values


HAND = {
    "cards": ["8", "3", "8", "3"],
    "suits": ["clubs", "hearts", "spades", "hearts"],
    "rule": "face_is_10",
    "target": 24,
}


def _answer(formula) -> str:
    return "Let me think.\n" + json.dumps(
        {"cards": HAND["cards"], "number": [8, 3, 8, 3], "formula": formula}
    )


@pytest.mark.parametrize(
    ("formula", "reward"),
    [
        ("8/(3-8/3)", 5.0),  # exact: the published float check called this wrong
        ("8 / (3 - 8 / 3) = 24", 5.0),
        ("8 + 8 + 3 + 3", -1.0),  # 22: valid formula, wrong value
        ("8 * 3 * 8 / 8 + 3 - 3", -2.0),  # 24, every card used, but 8 and 3 used too often
        ("8 * 3", -2.0),  # 24, but two cards unused
        ("8 * 3 + 3 - 3", -4.0),  # 24; a 3 used too often (-2), an 8 unused (-2)
        ("9 + 8 + 3 + 3", -5.0),  # 23 (-1); 9 not on the cards (-2); an 8 unused (-2)
        ("8 * (3 + 3", -3.0),  # syntax error
        ("8 ^ 3 + 3 + 8", -3.0),  # illegal character
        ("8 / (3 - 3) + 8 + 3", -3.0),  # division by zero
        ("-8 + 8 * 3 + 3 + 3 - 3 + 8", -3.0),  # unary minus is not a card operation
        (24, -3.0),  # not a string
    ],
)
def test_published_reward_scale(formula, reward):
    score = tasks.get("general_points").score(HAND, _answer(formula))
    assert score.reward == reward and score.correct == (reward == 5.0)
    assert score.feedback.startswith(
        "Correct" if reward == 5.0 else "You failed this trial because"
    )


def test_unreadable_answers_cost_three():
    task = tasks.get("general_points")
    for completion in [
        "24",
        "formula: 8/(3-8/3)",
        '{"formula": 8}',
        '{"cards": []}',
        '{"formula": "8/(3-8/3)"',
    ]:
        assert task.score(HAND, completion).reward == -3.0
    # the last JSON object with a formula counts, nested ones are found
    assert task.score(HAND, '{"formula": "1"} {"answer": {"formula": "8/(3-8/3)"}}').correct


def test_verification_iterations_continue_the_conversation():
    task = tasks.get("general_points")
    messages = task.prompt(HAND)
    attempts = [_answer("8 + 8 + 3 + 3"), _answer("8/(3-8/3)")]
    for attempt in attempts:
        score = task.score(HAND, attempt)
        if score.correct:
            break
        messages = tasks.retry_messages(task, HAND, messages, attempt, score)
    assert score.correct and len(messages) == 3 and "evaluates to 22" in messages[-1]["content"]
