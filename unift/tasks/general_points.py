"""GeneralPoints: the 24 card game with rule variants (the SFT-vs-RL study, language version).

Study: Chu et al. 2025, "SFT Memorizes, RL Generalizes" (docs/methods.md section 5); official
code github.com/LeslieTrue/SFTvsRL: the environment `gym/gym_cards/envs/general_points_oneline.py`,
the reward `utils_rl.step_rewards`, the parser `utils_general.re_match`, the prompt
`Q_GeneralPoint_EQN_L` and the answer template `ResponseEqn` in `prompt_lib/prompts.py`.
Section "GeneralPoints" of docs/environments.md works through the rules with examples.

Problem: {"cards": ["A", "3", "K", "6"], "suits": [...], "rule": "face_is_10", "target": 24}.
A counts 1; under "face_is_10" (ID) J, Q, K count 10, under "face_is_11_12_13" (rule OOD) 11, 12
and 13. Only hands solvable under the rule are kept. An OOD hand (`require_face`) is one face card
and three cards drawn uniformly from the rest of the deck, in shuffled order, as the study draws
them (about half of its hands hold two faces or more). The train/test split hashes the sorted card
*values*, so a test hand cannot reappear in training with other suits or faces.

Answer (`answer: json`, the study's): the prompt and the SFT target are the study's JSON answer
and nothing else, the target in the study's template, trailing comma included:
    {
      "cards": ["A", "3", "K", "6"],
      "number": [1, 3, 10, 6],
      "formula": "(10-6)*(3+1)=24",
    }
`answer: steps` (an option) invites reasoning first and its target adds a card-to-value line and
one line per operation before that object: step-by-step supervision, which the study did not use.

Reading the formula (the study's `re_match`): the whole completion as JSON, and when that fails the
first `"formula": "..."` in the text (this is what reads the template's trailing comma); text
after the first "=" is dropped. "cards" and "number" are not graded (the study graded them only
for its visual variant).

Reward (the study's `step_rewards`, in this order):
1. -3 "illegal characters" when the formula is not made of digits and + - * / ( ) alone: a space
   counts, so "4 * 6" scores -3; no formula found is also -3. Stop here.
2. -3 for every token out of place: an operator first or after an operator or "(" (unary minus
   too), a number or "(" right after ")", a ")" after an operator or "(" or with no "(" open.
   An unclosed "(" costs nothing here.
3. -2 when a number is not on the cards or is used more often than it appears (one -2 for both),
   and another -2 when a card is left unused.
4. Only when steps 2-3 cost nothing: +5 when the formula equals the target; +1 ("partial") when
   it cannot be evaluated but is the start of one of the study solver's solution strings (in
   practice: a correct solution written the solver's way with closing brackets missing); -1
   otherwise (a wrong value, a division by zero, a trailing operator).
Verification iterations: the feedback starts "You failed this trial because", as in the study.

Differences from the reference, each deliberate:
- Cards are dealt without replacement from one 52-card deck, as the paper says; the code draws
  every card with replacement (so it can deal the same card twice).
- Exact rational arithmetic: the code's float `eval` scores 8/(3-8/3) (23.999999999999996) as
  wrong (0 when written as in its solver's list, else -1); here it is correct (+5). Python's
  eval is never called: unift evaluates the checked tokens itself (a number with a leading zero
  or a non-ASCII digit fails to evaluate, as in Python).
- The penalties of step 2 add up without bound in the code; here the total stops at
  `MIN_REWARD` (-10): one garbage completion would otherwise dwarf the rest of its group in the
  group-normalised advantages of GRPO. Formulas longer than `arith.MAX_CHARS` (256) characters
  score -3 unread, to keep the verifier cheap; a completion that is not text, longer than
  `MAX_COMPLETION_CHARS`, or over the time limit scores -3, like an answer without a formula.
- Feedback wording is unift's own, and it states a wrong formula's value where the code names the
  longest prefix of a known solution.
- The prompt is the study's `Q_GeneralPoint_EQN_L` with its ".," typo fixed.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from fractions import Fraction

from . import arith
from .base import ID, OOD, Score, Task, variant
from .registry import register

RANKS = ["A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K"]
SUITS = ["clubs", "diamonds", "hearts", "spades"]
FACES = ("J", "Q", "K")
RULES = {
    "face_is_10": ({"J": 10, "Q": 10, "K": 10}, "'J', 'Q', and 'K' count as '10'"),
    "face_is_11_12_13": (
        {"J": 11, "Q": 12, "K": 13},
        "'J', 'Q', and 'K' count as '11', '12', and '13' respectively",
    ),
}
ANSWERS = ("json", "steps")

# The study's reward scale (utils_rl.REWARD_FN)
CORRECT, PARTIAL, WRONG_VALUE, WRONG_NUMBER, ILLEGAL = 5.0, 1.0, -1.0, -2.0, -3.0
MIN_REWARD = -10.0  # the floor of the summed penalties (module docstring)

_TOKEN = re.compile(r"\d+|[+\-*/()]")  # \d as in the study: non-ASCII digits are tokens too
_FORMULA = re.compile(r'"formula": "(.*?)"')  # the study's fallback pattern, first match
# The study's solver writes every solution as 4 numbers and 3 operators with brackets inserted at
# these positions, one after the other (its rosettacode-based `solve`): none, 5 single pairs,
# and (a b)(c d).
_BRACKETS = [(), (0, 4), (0, 6), (2, 6), (2, 8), (4, 8), (0, 4, 6, 10)]


def card_value(rank: str, rule: str) -> int:
    return 1 if rank == "A" else RULES[rule][0].get(rank) or int(rank)


def read_formula(text: str) -> str | None:
    """The study's `re_match(text, "formula")`: the "formula" of the whole text read as JSON;
    when that fails, the first `"formula": "..."` (one line); None when neither is found."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and "formula" in obj:
        value = obj["formula"]
        return value if isinstance(value, str) else None  # the study's code crashes on a number
    m = _FORMULA.search(text)
    return m.group(1) if m else None


def _kind(token: str) -> str:
    return {"(": "open", ")": "close"}.get(token, "operator" if token in "+-*/" else "number")


def sequence_errors(tokens: list[str]) -> list[str]:
    """One message per token out of place (each costs -3), as the study's `step_rewards` checks
    them left to right; an unclosed "(" is not one."""
    errors, prev, depth = [], None, 0
    after = {None: "at the start", "number": "after a number", "operator": "after an operator",
             "open": "after '('", "close": "after ')'"}
    for token in tokens:
        kind = _kind(token)
        if kind in ("number", "open"):  # starts an operand
            if prev in (None, "operator", "open"):
                depth += kind == "open"  # (a "(" out of place is not counted as open)
            else:
                errors.append(f"{token!r} {after[prev]}")
        elif prev not in ("number", "close"):  # an operator or ")" ends an operand
            errors.append(f"{token!r} {after[prev]}")
        elif kind == "close":
            if depth:
                depth -= 1
            else:
                errors.append("')' closes no '('")
        prev = kind
    return errors


def exact_value(tokens: list[str]) -> Fraction | None:
    """The exact value of a token list as Python would read it (precedence, left to right), or
    None where Python's eval raises: an unclosed "(", a trailing operator, nothing at all, a
    number with a leading zero or a non-ASCII digit, a division by zero."""
    pos = 0

    def expr() -> Fraction:
        nonlocal pos
        value = term()
        while pos < len(tokens) and tokens[pos] in "+-":
            op, pos = tokens[pos], pos + 1
            value = value + term() if op == "+" else value - term()
        return value

    def term() -> Fraction:
        nonlocal pos
        value = factor()
        while pos < len(tokens) and tokens[pos] in "*/":
            op, pos = tokens[pos], pos + 1
            right = factor()
            if op == "/" and right == 0:
                raise ArithmeticError("division by zero")
            value = value * right if op == "*" else value / right
        return value

    def factor() -> Fraction:
        nonlocal pos
        if pos >= len(tokens):
            raise ArithmeticError("unexpected end")
        token, pos = tokens[pos], pos + 1
        if token == "(":
            value = expr()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise ArithmeticError("unclosed bracket")
            pos += 1
            return value
        if not (token.isascii() and token.isdigit()) or (len(token) > 1 and token[0] == "0"):
            raise ArithmeticError(f"{token!r} is not a Python integer")
        return Fraction(int(token))

    try:
        value = expr()
    except (ArithmeticError, RecursionError):
        return None
    return value if pos == len(tokens) else None


def solver_strings(numbers: tuple[int, ...], ops: tuple[str, ...]) -> list[str]:
    """The strings the study's solver writes for these numbers and operators in this order."""
    base = [str(numbers[0]), ops[0], str(numbers[1]), ops[1], str(numbers[2]), ops[2], str(numbers[3])]
    out = []
    for brackets in _BRACKETS:
        pieces = list(base)
        for position, bracket in zip(brackets, "()()", strict=False):
            pieces.insert(position, bracket)
        out.append("".join(pieces))
    return out


def is_partial(tokens: list[str], target: int) -> bool:
    """Whether an unevaluable formula that uses every card once is the start of a solution string
    of the study's solver: it then lacks only closing brackets."""
    missing = tokens.count("(") - tokens.count(")")
    numbers = tuple(int(t) for t in tokens if _kind(t) == "number")
    ops = tuple(t for t in tokens if _kind(t) == "operator")
    if missing <= 0 or len(numbers) != 4 or len(ops) != 3:
        return False
    whole = tokens + [")"] * missing
    return "".join(whole) in solver_strings(numbers, ops) and exact_value(whole) == target


def formula_reward(formula: str | None, numbers: list[int], target: int) -> tuple[float, list[str], Fraction | None]:
    """(reward, reasons, value) of a formula under the study's rules (module docstring, steps
    1-4); value is the formula's exact value when it was evaluated."""
    if formula is None:
        return ILLEGAL, ['no "formula" was found: answer with the JSON object'], None
    formula = formula.split("=")[0]
    if len(formula) > arith.MAX_CHARS:
        return ILLEGAL, [f"the formula is longer than {arith.MAX_CHARS} characters"], None
    tokens = _TOKEN.findall(formula)
    if "".join(tokens) != formula:
        bad = sorted(set(_TOKEN.sub("", formula)))
        return ILLEGAL, [f"the formula has illegal characters {''.join(bad)!r} (digits and + - * / ( ) only)"], None
    reasons = [f"the formula is malformed: {e}" for e in sequence_errors(tokens)]
    reward = ILLEGAL * len(reasons)
    cards, used = Counter(numbers), Counter(int(t) for t in tokens if _kind(t) == "number")
    invalid = sorted(n for n in used if n not in cards)
    overused = sorted(n for n in used if n in cards and used[n] > cards[n])
    unused = sorted(n for n in cards if cards[n] > used[n])
    if invalid or overused:
        reward += WRONG_NUMBER
        reasons.append(f"you used numbers that are not on the cards: {invalid}" if invalid
                       else f"you used {overused} more often than the cards allow")
    if unused:
        reward += WRONG_NUMBER
        reasons.append(f"you did not use {unused}")
    if reasons:
        return max(reward, MIN_REWARD), reasons, None
    value = exact_value(tokens)
    if value == target:
        return CORRECT, [], value
    if value is None and is_partial(tokens, target):
        return PARTIAL, ["the formula is the start of a solution but incomplete"], None
    if value is None:
        return WRONG_VALUE, ["the formula cannot be evaluated"], None
    return WRONG_VALUE, [f"your formula evaluates to {arith.fmt(value)}, not {target}"], value


@register("general_points")
class GeneralPoints(Task):
    defaults = {"rule": "face_is_10", "require_face": False, "target": 24, "answer": "json"}
    named_variants = {
        "id": variant(ID, "J, Q, K count as 10"),
        "ood_rule": variant(
            OOD,
            "J, Q, K count as 11, 12, 13; every hand has a face card",
            rule="face_is_11_12_13",
            require_face=True,
        ),
    }
    min_reward, max_reward = MIN_REWARD, CORRECT
    floor_reward = ILLEGAL  # unreadable like an answer without a formula (module docstring)
    retry_instruction = "Please try again, answering with the JSON object."

    def check_variant(self) -> None:
        if self.variant["rule"] not in RULES:
            raise ValueError(f"general_points: rule must be one of {list(RULES)}")
        if self.variant["answer"] not in ANSWERS:
            raise ValueError(f"general_points: answer must be one of {list(ANSWERS)}")

    def generate(self, rng: random.Random) -> dict | None:
        v = self.variant
        deck = [(r, s) for r in RANKS for s in SUITS]
        if v["require_face"]:  # one face card, then three from the rest of the deck
            face = rng.choice([card for card in deck if card[0] in FACES])
            hand = [face, *rng.sample([card for card in deck if card != face], 3)]
            rng.shuffle(hand)
        else:
            hand = rng.sample(deck, 4)
        cards = [r for r, _ in hand]
        if arith.solve([card_value(c, v["rule"]) for c in cards], v["target"]) is None:
            return None
        return {"cards": cards, "suits": [s for _, s in hand], "rule": v["rule"], "target": v["target"]}

    def split_key(self, problem: dict) -> str:
        values = sorted(card_value(c, problem["rule"]) for c in problem["cards"])
        return f"{values}->{problem['target']}"

    def question(self, problem: dict) -> str:
        target, rule = problem["target"], RULES[problem["rule"]][1]
        if self.variant["answer"] == "steps":
            return (
                f"You are an expert {target} points card game player. You are given four cards: "
                f"{problem['cards']}. Note that {rule}, 'A' counts as '1', and each card must be used "
                f"exactly once. Your goal is to write a formula that evaluates to {target} using the "
                "numbers from the cards and the operators '+', '-', '*', '/', '(' and ')', without "
                "spaces. You may reason first; end your reply with a JSON object of the form\n"
                '{"cards": [x, y, z, w], "number": [a, b, c, d], "formula": "an expression using '
                f'a, b, c and d that equals {target}"}}\n'
                "where x, y, z, w are the cards and a, b, c, d the numbers they count as."
            )
        return (  # the study's Q_GeneralPoint_EQN_L
            "[Task Description]\n"
            f"You are an expert {target} points card game player. You will receive a set of 4 cards.\n"
            f"Note that {rule}, and each card must be used once.\n"
            f"Your goal is to output a formula that evaluates to {target} using numbers from the cards "
            "and operators such as '+', '-', '*', '/', '(', ')', and '='.\n\n"
            f"[Input]\nCards: {problem['cards']}\n\n"
            "[Output]\n{\n"
            f'  "cards": [x, y, z, w], where {rule},\n'
            '  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,\n'
            f"  \"formula\": 'an equation that equals {target}',\n}}"
        )

    def score(self, problem: dict, completion: str) -> Score:
        if (bad := self.too_long(completion)) is not None:
            return bad
        formula = read_formula(completion)
        numbers = [card_value(c, problem["rule"]) for c in problem["cards"]]
        reward, reasons, value = formula_reward(formula, numbers, problem["target"])
        parsed = None if formula is None else {
            "formula": formula, **({} if value is None else {"value": arith.fmt(value)})}
        if reward == CORRECT:
            return Score(reward, True, parsed, f"Correct: the formula evaluates to {problem['target']}.")
        return Score(reward, False, parsed, "You failed this trial because " + "; and ".join(reasons) + ".")

    def solution_steps(self, problem: dict) -> list[str]:
        numbers = [card_value(c, problem["rule"]) for c in problem["cards"]]
        tree = arith.solve(numbers, problem["target"])
        if tree is None:
            raise ValueError(f"general_points: no solution for {problem}")
        formula = arith.to_str(tree).replace(" ", "") + f"={problem['target']}"
        answer = [  # the study's ResponseEqn template, one hint piece per line
            "{\n",
            f'  "cards": {json.dumps(problem["cards"])},\n',
            f'  "number": {json.dumps(numbers)},\n',
            f'  "formula": "{formula}",\n',
            "}",
        ]
        if self.variant["answer"] == "json":
            return answer
        intro = (
            f"The cards {', '.join(problem['cards'])} count as "
            f"{', '.join(map(str, numbers))} under the rule.\n"
        )
        return [intro, *(f"{line}\n" for line in arith.steps(tree)), *answer]
