"""GeneralPoints: the 24 card game with rule variants (the SFT-vs-RL study, text version).

Problem: {"cards": ["A", "3", "K", "6"], "suits": [...], "rule": "face_is_10", "target": 24}.
A hand is 4 cards drawn without replacement from a 52-card deck (as the paper says; its code
drew with replacement). Suits exist but only ranks matter. A counts 1; under "face_is_10" (ID)
J, Q, K count 10, under "face_is_11_12_13" (rule-OOD) 11, 12, 13, and every OOD hand holds a
face card. Only hands solvable under the rule are kept. The train/test split hashes the sorted
card *values*, so a test hand cannot reappear in training with other suits or faces.

Answer: free reasoning, then a JSON object {"cards": [...], "number": [...], "formula": "..."};
the last JSON object holding "formula" counts. A trailing "= 24" in the formula is ignored;
"cards" and "number" are read but not graded (the study graded them for the visual variant).

Reward (published scale, exact rational arithmetic, so 8/(3-8/3) is correct): +5 correct;
otherwise the sum of -1 (valid formula, wrong value), -2 (a number not on the cards or used too
often), -2 (a card left unused); -3 alone when no JSON/formula can be read or the formula has
illegal characters, a syntax error or a division by zero. Range -5..5. Unary minus is not
allowed: the cards are the only numbers and the operators are binary. Feedback reads "You
failed this trial because ..." for verification iterations (`retry_messages`).
"""

from __future__ import annotations

import json
import random
from collections import Counter

from . import arith
from .base import ID, OOD, Score, Task, variant
from .registry import register

RANKS = ["A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K"]
SUITS = ["clubs", "diamonds", "hearts", "spades"]
FACES = ("J", "Q", "K")
RULES = {
    "face_is_10": ({"J": 10, "Q": 10, "K": 10}, "'J', 'Q' and 'K' count as '10'"),
    "face_is_11_12_13": (
        {"J": 11, "Q": 12, "K": 13},
        "'J', 'Q' and 'K' count as '11', '12' and '13'",
    ),
}
MAX_JSON_TRIES = 50  # '{' positions tried, from the end, when looking for the answer object


def card_value(rank: str, rule: str) -> int:
    return 1 if rank == "A" else RULES[rule][0].get(rank) or int(rank)


def last_json_object(text: str, key: str) -> dict | None:
    """The last JSON object in `text` that has `key` (nested objects are tried too)."""
    decoder = json.JSONDecoder()
    end = len(text)
    for _ in range(MAX_JSON_TRIES):
        start = text.rfind("{", 0, end)
        if start < 0:
            return None
        try:
            obj, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and key in obj:
            return obj
        end = start
    return None


@register("general_points")
class GeneralPoints(Task):
    defaults = {"rule": "face_is_10", "require_face": False, "target": 24}
    named_variants = {
        "id": variant(ID, "J, Q, K count as 10"),
        "ood_rule": variant(
            OOD,
            "J, Q, K count as 11, 12, 13; every hand has a face card",
            rule="face_is_11_12_13",
            require_face=True,
        ),
    }
    min_reward, max_reward = -5.0, 5.0
    retry_instruction = "Please try again, ending your reply with the JSON object."

    def check_variant(self) -> None:
        if self.variant["rule"] not in RULES:
            raise ValueError(f"general_points: rule must be one of {list(RULES)}")

    def generate(self, rng: random.Random) -> dict | None:
        v = self.variant
        hand = rng.sample([(r, s) for r in RANKS for s in SUITS], 4)
        cards = [r for r, _ in hand]
        if v["require_face"] and not any(c in FACES for c in cards):
            return None
        if arith.solve([card_value(c, v["rule"]) for c in cards], v["target"]) is None:
            return None
        return {
            "cards": cards,
            "suits": [s for _, s in hand],
            "rule": v["rule"],
            "target": v["target"],
        }

    def split_key(self, problem: dict) -> str:
        values = sorted(card_value(c, problem["rule"]) for c in problem["cards"])
        return f"{values}->{problem['target']}"

    def question(self, problem: dict) -> str:
        target = problem["target"]
        return (
            f"You are an expert {target} points card game player. You are given four cards: "
            f"{problem['cards']}. Note that {RULES[problem['rule']][1]}, 'A' counts as '1', and "
            f"each card must be used exactly once. Your goal is to write a formula that evaluates "
            f"to {target} using the numbers from the cards and the operators '+', '-', '*', '/', "
            "'(' and ')'. You may reason first; end your reply with a JSON object of the form\n"
            '{"cards": [x, y, z, w], "number": [a, b, c, d], "formula": "an expression using '
            f'a, b, c and d that equals {target}"}}\n'
            "where x, y, z, w are the cards and a, b, c, d the numbers they count as."
        )

    def score(self, problem: dict, completion: str) -> Score:
        if (bad := self.too_long(completion)) is not None:
            return bad
        fail = "You failed this trial because "
        answer = last_json_object(completion, "formula")
        if answer is None or not isinstance(answer["formula"], str):
            return Score(
                -3.0, False, None, fail + 'no JSON object with a "formula" string was found.'
            )
        formula = answer["formula"].split("=")[0]
        try:
            tree = arith.parse(formula)
            value = arith.evaluate(tree)
        except arith.ArithError as e:
            return Score(-3.0, False, answer, fail + f"the formula is invalid: {e}.")
        parsed = {**answer, "value": arith.fmt(value)}
        values = Counter(card_value(c, problem["rule"]) for c in problem["cards"])
        used = Counter(arith.literals(tree))
        reward, reasons = 0.0, []
        if used - values:
            reward -= 2
            reasons.append(
                "you used numbers that are not on the cards or used them too often "
                f"({sorted((used - values).elements())})"
            )
        if values - used:
            reward -= 2
            reasons.append(
                f"you did not use every card ({sorted((values - used).elements())} left)"
            )
        if value != problem["target"]:
            reward -= 1
            reasons.append(f"your formula evaluates to {arith.fmt(value)}, not {problem['target']}")
        if reasons:
            return Score(reward, False, parsed, fail + "; and ".join(reasons) + ".")
        return Score(
            self.max_reward, True, parsed, f"Correct: the formula evaluates to {problem['target']}."
        )

    def solution_steps(self, problem: dict) -> list[str]:
        numbers = [card_value(c, problem["rule"]) for c in problem["cards"]]
        tree = arith.solve(numbers, problem["target"])
        if tree is None:
            raise ValueError(f"general_points: no solution for {problem}")
        intro = (
            f"The cards {', '.join(problem['cards'])} count as "
            f"{', '.join(map(str, numbers))} under the rule.\n"
        )
        answer = json.dumps(
            {"cards": problem["cards"], "number": numbers, "formula": arith.to_str(tree)}
        )
        return [intro, *(f"{line}\n" for line in arith.steps(tree)), answer]
