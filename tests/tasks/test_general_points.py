"""GeneralPoints: the deck, the rules, the study's JSON answer and its reward rules, pinned on
hand-written completions whose rewards are worked out from the study's `step_rewards`."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from unift import tasks
from unift.tasks import arith
from unift.tasks.general_points import FACES, RANKS, card_value, formula_reward, read_formula

from .helpers import brute_solvable


@pytest.mark.parametrize("variant", ["id", "ood_rule"])
def test_hands_come_from_one_deck_and_are_solvable(variant):
    task = tasks.get("general_points", variant=variant)
    for p in task.problems(300):
        hand = list(zip(p["cards"], p["suits"], strict=True))
        assert len(set(hand)) == 4 and all(r in RANKS for r in p["cards"])  # without replacement
        assert p["target"] == 24 and p["rule"] == task.variant["rule"]
        if variant == "ood_rule":
            assert any(c in FACES for c in p["cards"])
    for p in task.problems(60, seed=5):
        assert brute_solvable([card_value(c, p["rule"]) for c in p["cards"]], 24)


def test_ood_hands_force_one_face_and_draw_three():
    # One face, then 3 of the other 51 cards (11 faces among them): P(no further face) =
    # C(40,3)/C(51,3) = 9880/20825 = 0.474, so 52.6% of dealt hands hold 2+ faces before the
    # solvability filter (the study, with replacement: 1 - (10/13)^3 = 54.5%, and about 51%
    # of its solvable hands); rejection sampling of "any hand with a face" gave 34%.
    task = tasks.get("general_points", variant="ood_rule")
    rng, dealt = random.Random(0), []
    while len(dealt) < 4000:
        p = task.generate(rng)
        dealt += [p] if p else []
    share = sum(sum(c in FACES for c in p["cards"]) >= 2 for p in dealt) / len(dealt)
    assert 0.45 < share < 0.56, share
    positions = Counter(i for p in dealt for i, c in enumerate(p["cards"]) if c in FACES)
    assert min(positions.values()) > 0.2 * sum(positions.values())  # the forced face is shuffled in


def test_rules_differ_only_in_face_values():
    assert [card_value(c, "face_is_10") for c in ("A", "7", "10", "J", "Q", "K")] == [1, 7, 10, 10, 10, 10]
    assert [card_value(c, "face_is_11_12_13") for c in ("A", "7", "10", "J", "Q", "K")] == [1, 7, 10, 11, 12, 13]
    ood = tasks.get("general_points", variant="ood_rule")
    assert "'11', '12', and '13'" in ood.question(ood.problems(1)[0])
    assert tasks.TASKS["general_points"].variants()["ood_rule"]["distribution"] == "ood"


def test_solvability_matches_naive_enumeration_on_random_hands():
    rng = random.Random(1)
    for _ in range(60):
        values = [rng.randint(1, 13) for _ in range(4)]
        assert (arith.solve(values, 24) is not None) == brute_solvable(values, 24), values


HAND = {"cards": ["K", "Q", "2", "2"], "suits": ["clubs", "hearts", "spades", "hearts"], "rule": "face_is_10",
        "target": 24}  # counts as 10, 10, 2, 2
HAND_8383 = {"cards": ["8", "3", "8", "3"], "suits": ["clubs", "hearts", "spades", "hearts"],
             "rule": "face_is_10", "target": 24}
HAND_OOD = {**HAND, "rule": "face_is_11_12_13"}  # counts as 13, 12, 2, 2


def template(formula: str) -> str:
    """The study's answer template (ResponseEqn), trailing comma included: not strict JSON."""
    return f'{{\n  "cards": ["K", "Q", "2", "2"],\n  "number": [10, 10, 2, 2],\n  "formula": "{formula}",\n}}'


def strict(formula) -> str:
    return json.dumps({"cards": ["K", "Q", "2", "2"], "number": [10, 10, 2, 2], "formula": formula})


# (problem, completion, reward under the study's rules, unift's reward when it differs on purpose)
PINNED = [
    # --- reading the answer ---------------------------------------------------------------
    (HAND, template("10+10+2+2=24"), 5, None),  # the template: json.loads fails, the regex reads it
    (HAND, strict("10+10+2+2"), 5, None),  # strict JSON
    (HAND, '{"formula":"10+10+2+2"}', 5, None),  # strict JSON needs no space after the colon
    (HAND, '{"formula":"10+10+2+2",}', -3, None),  # neither JSON nor `"formula": "`: no formula
    (HAND, "I think.\n" + template("10+10+2+2=24"), 5, None),  # text first: the regex still finds it
    (HAND, 'Answer: {"formula":"10+10+2+2"}', -3, None),  # text first and no space: not found
    (HAND, template("10+10+2-2") + "\n" + template("10+10+2+2"), -1, None),  # the FIRST match counts
    (HAND, '{"answer": "10+10+2+2"}', -3, None),  # JSON without "formula"
    (HAND, strict(24), -3, None),  # a number, not a string (the study's code crashes here)
    (HAND, "10+10+2+2", -3, None),  # no JSON at all
    (HAND, strict("10+10+2+2=24=24"), 5, None),  # text after the first "=" is dropped
    # --- illegal characters: -3 and nothing else ---------------------------------------------
    (HAND, strict("10 + 10 + 2 + 2"), -3, None),  # spaces are illegal characters
    (HAND, strict("10+10+2+2 = 24"), -3, None),  # "10+10+2+2 " keeps a space before "="
    (HAND, strict("10x2+2+2"), -3, None),  # "x" for times
    (HAND, strict("K+Q+2+2"), -3, None),  # card names
    # --- tokens out of place: -3 each, plus the number penalties -----------------------------
    (HAND, strict("-2+2+10+10"), -3, None),  # unary minus; the numbers are the cards (value 20 unchecked)
    (HAND, strict("10++10+2+2"), -3, None),  # "+" after an operator
    (HAND, strict("10+10+2**2"), -3, None),  # "**": the second "*" follows an operator
    (HAND, strict(")10+10+2+2("), -9, None),  # ")" first; 10 after ")"; "(" after a number
    (HAND, strict("(10+2)(2)"), -8, None),  # "(" after ")" (-3, not opened), unmatched ")" (-3), a 10 unused (-2)
    (HAND, strict("++++10+10+2+2"), -12, -10),  # four misplaced "+": unbounded there, -10 at most here
    # --- numbers: -2 not on the cards or overused (once), -2 a card unused; no value check -----
    (HAND, strict("10*2+2"), -2, None),  # 22 with a 10 unused: -2 only (no -1 on top)
    (HAND, strict("11+10+2/2"), -4, None),  # a face counted 11 under the ID rule: 11 invalid, a 10 unused
    (HAND, strict("10+10+2+2+2"), -2, None),  # a 2 used three times; nothing unused
    (HAND, strict("10+10+3+3-2+2-2"), -2, None),  # 3 not on the cards (the overused 2 adds nothing)
    (HAND, strict("10+10+4"), -4, None),  # 4 not on the cards, both 2s unused
    (HAND, strict(""), -2, None),  # an empty formula leaves every card unused
    (HAND, strict("2*(10+2"), -2, None),  # a 10 unused: no partial credit without every card
    # --- every card once: +5 right, +1 a solver solution missing closing brackets, else -1 ------
    (HAND, strict("((10+10)+(2+2))"), 5, None),  # redundant brackets are fine
    (HAND, strict("10+10+2-2"), -1, None),  # 20: a wrong value
    (HAND, strict("10/(2-2)+10"), -1, None),  # division by zero
    (HAND, strict("10+10+2+2+"), -1, None),  # a trailing operator: cannot be evaluated
    (HAND, strict("010+10+2+2"), -1, None),  # a leading zero: Python cannot read it
    (HAND, strict("(10+10)+(2+2"), 1, None),  # the solver writes "(10+10)+(2+2)": partial solution
    (HAND, strict("10+10+(2+2"), 1, None),  # "10+10+(2+2)" is a solver string too
    (HAND, strict("(10+10+2+2"), -1, None),  # "(10+10+2+2)" is not: the solver never brackets all
    (HAND_8383, strict("8/(3-8/3)=24"), 0, 5),  # float 23.999999999999996: 0 there, exact here
    (HAND_8383, strict("8/(3-8/3"), 1, None),  # the start of the solver's "8/(3-8/3)"
    (HAND_8383, strict("8*3*(8-3"), -1, None),  # unclosed, and "8*3*(8-3)" is no solution
    # --- the OOD rule: J, Q, K count 11, 12, 13 -------------------------------------------------
    (HAND_OOD, strict("13+12-2/2"), 5, None),
    (HAND_OOD, strict("10+10+2+2"), -4, None),  # the ID rule's values: 10 invalid, 13 and 12 unused
]


def test_pinned_cases_are_enough():
    assert len(PINNED) >= 30


@pytest.mark.parametrize(("problem", "completion", "study", "ours"), PINNED)
def test_pinned_rewards_follow_the_studys_rules(problem, completion, study, ours):
    score = tasks.get("general_points").score(problem, completion)
    assert score.reward == (study if ours is None else ours)
    assert score.correct == (score.reward == 5)
    assert score.feedback.startswith("Correct" if score.correct else "You failed this trial because")


def test_formula_reading_and_the_reward_function_directly():
    assert read_formula('{\n  "formula": "1+2",\n}') == "1+2"  # the template's trailing comma
    assert read_formula('{"formula": "1+2"} {"formula": "3"}') == "1+2"  # not JSON: first match
    assert read_formula('{"formula": ["1"]}') is None
    # 8/(3-8/3) exactly: 3 - 8/3 = 1/3, 8 / (1/3) = 24
    assert formula_reward("8/(3-8/3)", [8, 3, 8, 3], 24)[0] == 5
    reward, reasons, _ = formula_reward("10*2+2", [10, 10, 2, 2], 24)
    assert reward == -2 and reasons == ["you did not use [10]"]


def test_json_target_is_the_studys_template_and_steps_are_an_option():
    task, steps = tasks.get("general_points"), tasks.get("general_points", answer="steps")
    for p in task.problems(50):
        target = task.reference_completion(p)
        assert target.startswith("{\n") and target.endswith(",\n}")  # JSON only, trailing comma
        assert " " not in read_formula(target) and read_formula(target).endswith("=24")
        assert task.score(p, target).correct
        assert "[Task Description]" in task.question(p) and "[Input]" in task.question(p)
        worked = steps.reference_completion(p)
        assert worked.endswith(target) and worked.startswith("The cards ") and steps.score(p, worked).correct
        assert "reason first" in steps.question(p)
    with pytest.raises(ValueError, match="answer must be one of"):
        tasks.get("general_points", answer="prose")


def test_verification_iterations_continue_the_conversation():
    task = tasks.get("general_points")
    messages = task.prompt(HAND)
    for attempt in [strict("10+10+2-2"), strict("10+10+2+2")]:
        score = task.score(HAND, attempt)
        if score.correct:
            break
        messages = tasks.retry_messages(task, HAND, messages, attempt, score)
    assert score.correct and len(messages) == 3 and "evaluates to 20" in messages[-1]["content"]
