"""Knights and Knaves: knights always tell the truth, knaves always lie; who is which?

Study: the UFT paper's K&K (Liu et al. 2025, docs/methods.md section 1), whose puzzles come from
Xie et al. 2024 ("On Memorization of Large Language Models in Logical Reasoning"). Official code:
github.com/AlphaPav/mem-kk-logic (`data_prep/lib_kk.py`: `KKProblemSampler`, the formatter) and
the UFT verifier github.com/liumy2010/UFT (`verl/utils/reward_score/kk_logic.py`). Section
"Knights and Knaves" of docs/environments.md works through the verifier's cases.

Problem: {"names": ["Zoey", ...], "statements": [formula, ...]}, one statement per inhabitant.
A formula is a nested list: ["knight", i] / ["knave", i] (inhabitant i is a knight/knave),
["not", f], ["and", f, g], ["or", f, g], ["implies", f, g], ["iff", f, g].

Generation (the reference sampler, `depth` its depth constraint): each statement is drawn on its
own; at depth d > 1 a die picks, with 1/6 each, a bare claim, "not" over a statement of depth
d - 1, or "and", "or", "implies", "iff" over two different statements of depth d - 1. A bare
claim names any inhabitant, the speaker included ("I am a knight"), but a speaker never claims
to be a knave (no consistent role). A puzzle is kept when exactly one assignment of roles is
consistent, checked for all 2^n assignments at once: each formula evaluates to an n-bit truth
table (a Python int). At depth 2 about 84% of statements have depth 2, as in the data. One
statement of every puzzle reaches `depth` (always so at depth 2: with bare claims only, swapping
every role keeps a puzzle consistent, so no answer is unique).

The reference solution is a backtracking trace ("Assume Zoey is a knight. ...") ending with
"Therefore, (1) Zoey is a knight (2) ..." and an <answer> block. Completions stop after
"</answer>" (`stop_strings`).

Verifier (UFT's `kk_logic.compute_score`): the answer is the last <answer>...</answer> block
(scanned left to right, as the non-greedy regex pairs them). 0.0 without one (or an empty one);
0.1 when the words "knight" and "knave" (substrings, any case: "knights" counts) do not occur
exactly n times in it in total, or when an inhabitant has no "NAME is a knight/knave" (any case;
"is a" only, the first statement about them counts), or when a role is wrong; 1.0 when every
role is right.

Differences from the reference:
- An <answer> block longer than `MAX_ANSWER_CHARS` (one line per inhabitant needs a few hundred
  characters) scores 0.1 unread, to keep the verifier's work small whatever the completion.
- The prompt is unift's: 'NAME says: "..."' for every statement (the data draws one of 18
  phrasings), "it is not the case that (...)" for a negated compound (depth 3 and more, which
  the reference cannot format), and the model answers in a chat turn, not after the data's
  "Assistant: Let me solve this step by step. <think>" (see `Task.prompt_text` for raw text).
- Puzzles are generated, not read from the published 3-7-people files; the OOD variants with 8
  people or depth 3 are unift's.
"""

from __future__ import annotations

import random
import re
from functools import cache

from .base import ID, OOD, Score, Task, variant
from .registry import register

NAMES = [
    "Zoey",
    "Oliver",
    "Ethan",
    "Mia",
    "Liam",
    "Ava",
    "Noah",
    "Emma",
    "Lucas",
    "Sofia",
    "Jack",
    "Chloe",
    "Henry",
    "Grace",
    "Owen",
    "Lily",
    "Samuel",
    "Harper",
    "David",
    "Ella",
    "Joseph",
    "Aria",
    "Daniel",
    "Scarlett",
    "Logan",
    "Victoria",
    "Isaac",
    "Hannah",
    "Gabriel",
    "Nora",
    "Julian",
    "Riley",
    "Aiden",
    "Zara",
    "Caleb",
    "Leah",
    "Ryan",
    "Ruby",
    "Nathan",
    "Alice",
]
BINARY = ("and", "or", "implies", "iff")
MAX_ANSWER_CHARS = 2000  # longest <answer> block read: ten roles take about 300 characters
ROLE = {True: "knight", False: "knave"}


@cache
def knight_table(i: int, n: int) -> int:
    """Truth table of "i is a knight": bit a is set when bit i of assignment a is."""
    return sum(1 << a for a in range(1 << n) if a >> i & 1)


def truth_table(f: list, n: int) -> int:
    """Bit a of the result is the formula's value under assignment a (bit i of a: i is a knight)."""
    full = (1 << (1 << n)) - 1
    op = f[0]
    if op in ("knight", "knave"):
        knight = knight_table(f[1], n)
        return knight if op == "knight" else full ^ knight
    if op == "not":
        return full ^ truth_table(f[1], n)
    x, y = truth_table(f[1], n), truth_table(f[2], n)
    return {"and": x & y, "or": x | y, "implies": (full ^ x) | y, "iff": full ^ (x ^ y)}[op]


def consistent(statements: list, n: int) -> list[int]:
    """All assignments (bitmasks) under which every knight's statement is true and every
    knave's false."""
    ok = (1 << (1 << n)) - 1
    for i, f in enumerate(statements):
        ok &= ~(knight_table(i, n) ^ truth_table(f, n))
    return [a for a in range(1 << n) if ok >> a & 1]


def holds(f: list, roles: dict[int, bool]) -> bool:
    op = f[0]
    if op in ("knight", "knave"):
        return roles[f[1]] == (op == "knight")
    if op == "not":
        return not holds(f[1], roles)
    x, y = holds(f[1], roles), holds(f[2], roles)
    return {"and": x and y, "or": x or y, "implies": (not x) or y, "iff": x == y}[op]


def mentioned(f: list) -> set[int]:
    return {f[1]} if f[0] in ("knight", "knave") else set().union(*(mentioned(g) for g in f[1:]))


def render(f: list, names: list[str], top: bool = True) -> str:
    op = f[0]
    if op in ("knight", "knave"):
        return f"{names[f[1]]} is a {op}"
    if op == "not" and f[1][0] in ("knight", "knave"):
        text = f"{names[f[1][1]]} is not a {f[1][0]}"  # the reference's wording
    elif op == "not":
        text = f"it is not the case that {render(f[1], names, False)}"
    elif op == "implies":
        text = f"if {render(f[1], names, False)} then {render(f[2], names, False)}"
    else:
        joiner = {"and": "and", "or": "or", "iff": "if and only if"}[op]
        text = f"{render(f[1], names, False)} {joiner} {render(f[2], names, False)}"
    return text if top else f"({text})"


@register("knights_knaves")
class KnightsKnaves(Task):
    defaults = {"min_people": 3, "max_people": 7, "depth": 2}
    named_variants = {
        "id": variant(ID, "3-7 inhabitants, statements of depth <= 2 (the UFT study's data)"),
        "easy": variant(ID, "3 inhabitants", max_people=3),
        "ood_people": variant(OOD, "8 inhabitants", min_people=8, max_people=8),
        "ood_depth": variant(OOD, "3-7 inhabitants, statements of depth <= 3", depth=3),
    }
    retry_instruction = (
        "Please try again. State every inhabitant's role in <answer> </answer> tags."
    )
    stop_strings = ("</answer>",)

    def check_variant(self) -> None:
        v = self.variant
        if not (3 <= v["min_people"] <= v["max_people"] <= 10) or not 2 <= v["depth"] <= 4:
            raise ValueError(
                "knights_knaves: need 3 <= min_people <= max_people <= 10, 2 <= depth <= 4"
            )

    # --- generation ---------------------------------------------------------------------
    def _formula(self, rng: random.Random, depth: int, speaker: int, n: int) -> list:
        """A statement of depth at most `depth` by `speaker`, drawn as the reference's
        `KKProblemSampler._sample_statement` draws one (width 2)."""
        dice = rng.randrange(6)
        if depth == 1 or dice == 0:
            while True:
                claim = [rng.choice(("knight", "knave")), rng.randrange(n)]
                if claim != ["knave", speaker]:  # "I am a knave": no role can say it
                    return claim
        if dice == 1:
            return ["not", self._formula(rng, depth - 1, speaker, n)]
        first = self._formula(rng, depth - 1, speaker, n)
        while (second := self._formula(rng, depth - 1, speaker, n)) == first:
            pass  # two different statements
        return [BINARY[dice - 2], first, second]

    def generate(self, rng: random.Random) -> dict | None:
        v = self.variant
        n = rng.randint(v["min_people"], v["max_people"])
        statements = [self._formula(rng, v["depth"], i, n) for i in range(n)]
        if max(map(_depth, statements)) < v["depth"] or len(consistent(statements, n)) != 1:
            return None
        return {"names": rng.sample(NAMES, n), "statements": statements}

    # --- prompt ---------------------------------------------------------------------------
    def question(self, problem: dict) -> str:
        names = problem["names"]
        people = ", ".join(names[:-1]) + f" and {names[-1]}"
        said = " ".join(
            f'{names[i]} says: "{_capital(render(f, names))}."'
            for i, f in enumerate(problem["statements"])
        )
        example = "\n".join(
            f"({k + 1}) {name} is a knight/knave" for k, name in enumerate(names[:2])
        )
        return (
            "A very special island is inhabited only by knights and knaves. Knights always tell "
            f"the truth, and knaves always lie. You meet {len(names)} inhabitants: {people}. {said} "
            "So who is a knight and who is a knave? Show your reasoning in <think> </think> tags, "
            "then state every inhabitant's role in <answer> </answer> tags, one per line, e.g.\n"
            f"<answer>\n{example}\n...\n</answer>"
        )

    # --- solver and reference ---------------------------------------------------------------
    def solve(self, problem: dict) -> list[bool]:
        n = len(problem["names"])
        (a,) = consistent(problem["statements"], n)
        return [bool(a >> i & 1) for i in range(n)]

    def solution_steps(self, problem: dict) -> list[str]:
        names, statements = problem["names"], problem["statements"]
        n = len(names)
        pieces: list[str] = []
        needs = [mentioned(f) | {i} for i, f in enumerate(statements)]

        def check(roles: dict[int, bool], newest: int) -> tuple[str, bool]:
            """Comment on statements that just became decidable; False on a contradiction."""
            notes = []
            for i, f in enumerate(statements):
                if newest in needs[i] and needs[i] <= roles.keys():
                    value = holds(f, roles)
                    said = f'{names[i]}\'s statement "{render(f, names)}"'
                    if value != roles[i]:
                        return (
                            f" Then {said} is {str(value).lower()}, but {names[i]} is a "
                            f"{ROLE[roles[i]]}: contradiction.",
                            False,
                        )
                    notes.append(
                        f" {said} is {str(value).lower()}, as a {ROLE[roles[i]]}'s must be."
                    )
            return "".join(notes), True

        # Assume roles in an order that decides statements early: next, the inhabitant who
        # completes the most statements (ties: the one mentioned most).
        order: list[int] = []
        while len(order) < n:
            done = set(order)
            order.append(
                max(
                    (i for i in range(n) if i not in done),
                    key=lambda i: (
                        sum(needs[j] <= done | {i} for j in range(n)),
                        sum(i in m for m in needs),
                        -i,
                    ),
                )
            )

        def search(roles: dict[int, bool]) -> bool:
            if len(roles) == n:
                return True
            k = order[len(roles)]
            for role in (True, False):
                roles[k] = role
                note, ok = check(roles, k)
                pieces.append(f"Assume {names[k]} is a {ROLE[role]}.{note}\n")
                if ok and search(roles):
                    return True
                del roles[k]
            pieces.append(
                f"Both roles for {names[k]} lead to a contradiction, so an earlier assumption is wrong.\n"
            )
            return False

        roles: dict[int, bool] = {}
        if not search(roles):
            raise ValueError("knights_knaves: the puzzle has no consistent assignment")
        listing = [f"({k + 1}) {name} is a {ROLE[roles[k]]}" for k, name in enumerate(names)]
        pieces[0] = "<think>\n" + pieces[0]
        pieces.append("No contradiction is found, so this assignment is consistent.\n</think>\n")
        pieces.append(
            f"Therefore, {' '.join(listing)}\n<answer>\n" + "\n".join(listing) + "\n</answer>"
        )
        return pieces

    # --- verifier -----------------------------------------------------------------------------
    def score(self, problem: dict, completion: str) -> Score:
        if (bad := self.too_long(completion)) is not None:
            return bad
        answer = last_answer(completion)
        if not answer:
            return Score(0.0, False, None, "No <answer> </answer> block with an answer was found.")
        if len(answer) > MAX_ANSWER_CHARS:
            return Score(0.1, False, None,
                         f"The answer is longer than {MAX_ANSWER_CHARS} characters; state one role per line.")
        names = problem["names"]
        lower = answer.lower()
        count = lower.count("knight") + lower.count("knave")
        if count != len(names):
            return Score(0.1, False, None, f"The answer names a role {count} times for {len(names)} "
                         "inhabitants; state each inhabitant's role once.")
        claims = {name: re.search(rf"\b{re.escape(name)}\b\s+is\s+a\s+\b(knight|knave)\b", answer, re.I)
                  for name in names}
        missing = [name for name, m in claims.items() if m is None]
        if missing:
            return Score(0.1, False, None, f"The answer does not state the role of {', '.join(missing)} "
                         "as \"NAME is a knight/knave\".")
        parsed = {name: m.group(1).lower() for name, m in claims.items()}
        truth = dict(zip(names, (ROLE[r] for r in self.solve(problem)), strict=True))
        wrong = [name for name in names if parsed[name] != truth[name]]
        if wrong:
            return Score(0.1, False, parsed, f"The roles of {', '.join(wrong)} are wrong.")
        return Score(1.0, True, parsed, "Correct.")


def last_answer(text: str) -> str | None:
    """The last <answer>...</answer> block, stripped, pairing tags left to right as the
    reference's non-greedy regex does (linear: each tag is found once)."""
    found, pos = None, 0
    while (start := text.find("<answer>", pos)) >= 0:
        end = text.find("</answer>", start + 8)
        if end < 0:
            break
        found, pos = text[start + 8 : end], end + 9
    return None if found is None else found.strip()


def _depth(f: list) -> int:
    return 1 if f[0] in ("knight", "knave") else 1 + max(_depth(g) for g in f[1:])


def _capital(s: str) -> str:
    return s[:1].upper() + s[1:]
