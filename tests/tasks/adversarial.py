"""Long adversarial completions (100k characters) for every verifier, and a timer.

Each text aims at a way a verifier can go super-linear: a regex whose quantifiers can split the
same run of characters many ways (whitespace after '(' in navigation's action pattern, blank
lines before a bullet), a scan restarted at every opening tag or brace, deep nesting handed to
a parser. `completions()` puts each text bare and inside an answer block, and short adversarial
answers after 100k characters of text.

Worst-case scoring time per task (the numbers in docs/RELIABILITY.md):
    .venv/bin/python -m tests.tasks.adversarial
"""

from __future__ import annotations

import json
import random
import time

N = 100_000  # characters in every adversarial completion


def _fill(unit: str, head: str = "", tail: str = "") -> str:
    """`head` + `unit` repeated + `tail`, exactly N characters."""
    body = N - len(head) - len(tail)
    return head + (unit * (body // len(unit) + 1))[:body] + tail


TEXTS: dict[str, str] = {
    "open_answer": _fill("<answer>"),
    "open_answer_close_once": _fill("<answer>", tail="</answer>"),
    "newlines": _fill("\n"),
    "spaces": _fill(" "),
    "blank_then_bullet": _fill("\n", tail="- x"),
    "blank_lines_text": _fill("\n", tail="x"),
    "letters": _fill("a"),
    "digits": _fill("7"),
    "open_parens": _fill("("),
    "nested_parens": "(" * (N // 2 - 1) + "1" + ")" * (N // 2),
    "nested_lists": "[" * (N // 2) + "]" * (N // 2),
    "open_braces": _fill("{"),
    "json_keys": _fill('{"formula": '),
    "json_string": _fill("x", head='{"formula": "'),
    "up": _fill("up "),
    "bullets_dash": _fill("- "),
    "bullets_star_lines": _fill("* \n"),
    "dividers": _fill("***\n"),
    "title_open": _fill("a", head="<<"),
    "unicode": _fill("é٣\u2028🙂"),
    "arabic_digits": _fill("٣ + "),
    "sums": _fill("1+"),
    "powers": _fill("9**"),
    "factorials": _fill("9!"),
    "boxed_open": _fill("\\boxed{"),
    "dollars": _fill("$"),
    "turn_spaces": _fill(" ", head="turn_direction(", tail="x"),
    "turn_quote_spaces": _fill(" ", head="turn_direction('", tail="'"),
    "turn_letters": _fill("a", head="turn_direction("),
    "turns": _fill("turn_direction("),
    "forward_spaces": _fill(" ", head="forward(", tail="x"),
    "forwards": _fill("forward()\n"),
    "knight_spaces": _fill(" ", head="Zoey"),
    "knight_claims": _fill("Zoey is a "),
    "identifier_call": _fill("a", tail="("),
    "digit_letters": _fill("a9"),
    "dot_attributes": _fill(" ", head="a"),
}

# A short answer (under 2000 characters) after a long text: the part a verifier reads
# closely (the expression, the JSON object, the boxed answer) is adversarial too.
TAILS: dict[str, str] = {
    "answer_parens": "<answer>" + "(" * 1000 + "</answer>",
    "answer_turn_spaces": "<answer>turn_direction(" + " " * 1900 + "x</answer>",
    "answer_identifier": "<answer>" + "a9" * 900 + "</answer>",
    "answer_powers": "<answer>" + "x^" * 900 + "x</answer>",
    "json_formula": json.dumps({"formula": "(" * 1000}),
    "boxed_nested": "\\boxed{" + "{" * 1000 + "}" * 1001,
}


def _middle_cut(text: str, length: int) -> str:
    """`text` shortened to `length` characters from the middle (its head and tail stay)."""
    return text[: length // 2] + text[len(text) - (length - length // 2) :]


BACKGROUNDS = ("letters", "newlines", "open_answer")  # what the short answers follow


def completions() -> dict[str, str]:
    """Case name -> completion of at most N characters: every text bare and as the content of
    an answer block, every tail after each background."""
    out = {}
    for name, text in TEXTS.items():
        out[name] = text
        out[f"{name}/in_answer"] = "<answer>" + _middle_cut(text, N - 17) + "</answer>"
    for name in BACKGROUNDS:
        for tail_name, tail in TAILS.items():
            out[f"{name}/then_{tail_name}"] = TEXTS[name][: N - len(tail)] + tail
    return out


def problem_for(task) -> dict:
    """A problem that exercises all of the task's verifier: for instructions, one constraint of
    every type (the checkers do not mind that some conflict); else the first training problem."""
    if task.name == "instructions":
        from unift.tasks import instructions

        problem = task.problems(1)[0]
        constraints = [
            task._constraint(kind, problem["topic"], random.Random(0), lowercase=False)
            for kind in instructions.TYPES
        ]
        return {**problem, "constraints": constraints}
    return task.problems(1)[0]


def timed(task, problem: dict, completion: str) -> tuple[float, object]:
    """(seconds, Score) of one scoring."""
    start = time.perf_counter()
    score = task.score(problem, completion)
    return time.perf_counter() - start, score


def timed_call(fn, *args) -> float:
    """Seconds one call of fn(*args) takes."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def warm_up(task, problem: dict) -> None:
    """One scoring, untimed: imports, caches, reasoning-gym's sandbox worker."""
    task.score(problem, "<answer>1</answer> \\boxed{1}")


def worst_times(task, problem: dict, cases: dict[str, str]) -> tuple[float, str]:
    """The slowest case and its time in seconds, after a warm-up scoring."""
    warm_up(task, problem)
    return max((timed(task, problem, text)[0], name) for name, text in cases.items())


def main() -> None:
    import tempfile

    from .helpers import all_tasks

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/math.jsonl"
        with open(path, "w") as f:
            f.write(json.dumps({"prompt": "What is 2 times 3?", "answer": "6"}) + "\n")
        cases = completions()
        print(f"{len(cases)} completions of up to {N} characters per task")
        for task in all_tasks(path):
            problem = problem_for(task)
            seconds, name = worst_times(task, problem, cases)
            print(
                f"{task.name:15s} {task.variant_name:12s} {seconds * 1e3:8.1f} ms  {name}"
                f"  (time limit {task.score_time_limit} s)"
            )


if __name__ == "__main__":
    main()
