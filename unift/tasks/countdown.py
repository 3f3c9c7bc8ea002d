"""Countdown: combine the given numbers with + - * / into an expression equal to the target.

Problem: {"numbers": [19, 35, 44], "target": 98}. Every number must be used exactly once.
Generation builds a random expression over random numbers (non-negative integer intermediates)
and keeps it when its value lies in the target range, so every problem is solvable; the
reference solution comes from the brute-force solver in `arith`, not from that expression.

Answer format (as in the UFT study): reasoning in <think></think>, the expression in
<answer></answer>. Reward: 1.0 correct; 0.1 an expression that parses but is wrong (wrong
numbers or wrong value); 0.0 no answer block, or one that cannot be parsed or evaluated
(syntax, illegal characters, division by zero, numbers out of bounds). A trailing "= 98" in the
answer is ignored. Unary minus is allowed (reasoning-gym's reference answers use it, e.g.
"-26 + 45"); it adds nothing a subtraction could not express. The expression is read only up
to `arith.MAX_CHARS` characters (longer ones score 0), and completions stop after "</answer>"
(`stop_strings`).
"""

from __future__ import annotations

import random

from . import arith
from .base import ID, OOD, Score, Task, variant
from .registry import register


@register("countdown")
class Countdown(Task):
    defaults = {
        "min_numbers": 3,
        "max_numbers": 4,
        "min_value": 1,
        "max_value": 99,
        "min_target": 10,
        "max_target": 100,
    }
    named_variants = {
        "id": variant(ID, "3-4 numbers in 1..99, target 10..100 (the UFT study)"),
        "easy": variant(
            ID,
            "2-3 numbers in 1..30, target 1..100: a tiny model can learn it",
            min_numbers=2,
            max_numbers=3,
            max_value=30,
            min_target=1,
        ),
        "ood_numbers": variant(OOD, "5 numbers", min_numbers=5, max_numbers=5),
        "ood_target": variant(OOD, "targets 101..1000", min_target=101, max_target=1000),
    }
    retry_instruction = "Please try again. Put the final expression in <answer> </answer> tags."
    stop_strings = ("</answer>",)

    def check_variant(self) -> None:
        v = self.variant
        if not (2 <= v["min_numbers"] <= v["max_numbers"] <= 8):
            raise ValueError("countdown: need 2 <= min_numbers <= max_numbers <= 8")
        if not (1 <= v["min_value"] <= v["max_value"] <= arith.MAX_LITERAL):
            raise ValueError("countdown: need 1 <= min_value <= max_value")
        if not (1 <= v["min_target"] <= v["max_target"]):
            raise ValueError("countdown: need 1 <= min_target <= max_target")

    def generate(self, rng: random.Random) -> dict | None:
        v = self.variant
        numbers = [
            rng.randint(v["min_value"], v["max_value"])
            for _ in range(rng.randint(v["min_numbers"], v["max_numbers"]))
        ]
        values = list(numbers)
        while len(values) > 1:  # combine two random values with a random valid operation
            a, b = (values.pop(rng.randrange(len(values))) for _ in range(2))
            options = [a + b, a * b, abs(a - b)] + [
                x // y for x, y in ((a, b), (b, a)) if y and x % y == 0
            ]
            values.append(rng.choice(options))
        if not v["min_target"] <= values[0] <= v["max_target"]:
            return None
        return {"numbers": numbers, "target": values[0]}

    def split_key(self, problem: dict) -> str:
        return f"{sorted(problem['numbers'])}->{problem['target']}"

    def question(self, problem: dict) -> str:
        return (
            f"Using the numbers {problem['numbers']}, create an equation that equals "
            f"{problem['target']}. You can use basic arithmetic operations (+, -, *, /) and each "
            "number must be used exactly once. Show your work in <think> </think> tags. And "
            "return the final answer in <answer> </answer> tags, for example "
            "<answer> (1 + 2) / 3 </answer>."
        )

    def score(self, problem: dict, completion: str) -> Score:
        answer = self.answer_block(completion)
        if isinstance(answer, Score):
            return answer
        expr = answer.split("=")[0]
        try:
            tree = arith.parse(expr, unary_minus=True)
            value = arith.evaluate(tree)
        except arith.ArithError as e:
            return Score(0.0, False, None, f"The answer could not be evaluated: {e}.")
        used = arith.literals(tree)
        parsed = {"expression": expr.strip(), "value": arith.fmt(value), "numbers": used}
        if sorted(used) != sorted(problem["numbers"]):
            return Score(
                0.1,
                False,
                parsed,
                f"The answer must use each of {problem['numbers']} exactly once; it uses {used}.",
            )
        if value != problem["target"]:
            return Score(
                0.1,
                False,
                parsed,
                f"The answer evaluates to {arith.fmt(value)}, not {problem['target']}.",
            )
        return Score(1.0, True, parsed, "Correct.")

    def solution_steps(self, problem: dict) -> list[str]:
        tree = arith.solve(problem["numbers"], problem["target"])
        if tree is None:
            raise ValueError(f"countdown: no solution for {problem}")
        lines = [f"{line}\n" for line in arith.steps(tree)] or [f"{tree} = {problem['target']}\n"]
        expr = arith.to_str(tree)
        lines[0] = "<think>\n" + lines[0]
        return [
            *lines,
            f"Therefore, the final equation is {expr}\n</think>\n",
            f"<answer>{expr}</answer>",
        ]
