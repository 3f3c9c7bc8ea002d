"""User data as a task: get("jsonl", path="problems.jsonl").

Each line: {"prompt": str or chat messages, "answer": str, "solution_steps": [str, ...]?}.
The split hashes the prompt; `problems(n, seed, split)` shuffles that split with the seed and
returns its first n problems, fewer when the file holds fewer. `suffix` is appended to string
prompts (e.g. "Put the final answer in \\boxed{}."). The reference solution is the record's
`solution_steps`, or one piece "The answer is \\boxed{ANSWER}.".

Verifier: math-verify parses the gold answer and the end of the completion (last
`tail_chars` characters; a \boxed{} answer longer than `max_answer_chars` is rejected, as
parsing time grows with it) and checks equivalence. Reward 1.0 equivalent; 0.1 something was
parsed but differs; 0.0 nothing parsed or rejected. Parsed expressions are screened
(`guard.sympy_problem`) before math-verify simplifies them. The whole scoring runs under
`score_time_limit` (4 s: math-verify's own two 2-s timeouts, which this replaces: its alarm
would cancel the limit's timer); math-verify keeps its own timeouts in the main thread when no
timer is running. math-verify is imported when the task is built, not on the first, timed
scoring. Answers math-verify cannot parse fall back to exact string comparison with the last
\\boxed{} or <answer> content. Never raises.
"""

from __future__ import annotations

import json
import random
import signal
import threading
from functools import lru_cache

from . import guard
from .base import ID, SPLITS, Score, Task, last_block, split_of, variant
from .registry import register


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[dict, ...]:
    from unift.data.records import read_jsonl

    rows = []
    for where, row in read_jsonl(path):  # bad UTF-8 or JSON: an error naming file:line
        if not isinstance(row, dict) or "prompt" not in row or "answer" not in row:
            raise ValueError(f"{where}: each record needs 'prompt' and 'answer'")
        rows.append(row)
    return tuple(rows)


@lru_cache(maxsize=4096)
def _gold(answer: str) -> list:
    from math_verify import parse

    text = answer if ("$" in answer or "\\boxed" in answer) else f"${answer}$"
    try:
        return parse(text, parsing_timeout=_timeout())
    except Exception:
        return []


def _timeout() -> int | None:
    """math-verify's signal-based timeouts only work in the main thread, and only when no
    timer is running there (`score_time_limit`'s or a caller's): its alarm would replace that
    timer and cancel it on return."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return None if signal.getitimer(signal.ITIMER_REAL)[0] > 0 else 2


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces matched (bounded)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, min(len(text), i + 10_000)):
        depth += (text[j] == "{") - (text[j] == "}")
        if depth == 0:
            return text[i + 1 : j].strip()
    return None


@register("jsonl")
class Jsonl(Task):
    defaults = {
        "path": None,
        "suffix": "",
        "system_prompt": None,
        "test_fraction": 0.1,
        "tail_chars": 1000,
        "max_answer_chars": 200,
    }
    named_variants = {"default": variant(ID, "the file's problems")}
    score_time_limit = 4.0  # parsing and verifying; math-verify's own limits were 2 s + 2 s

    def check_variant(self) -> None:
        if not self.variant["path"]:
            raise ValueError('jsonl: give the file, e.g. get("jsonl", path="problems.jsonl")')
        import math_verify  # noqa: F401  (sympy's import takes ~0.5 s: not on the timed call)

        self.test_fraction = float(self.variant["test_fraction"])
        self.system_prompt = self.variant["system_prompt"]

    def generate(self, rng: random.Random) -> dict | None:
        return dict(rng.choice(_load(self.variant["path"])))

    def split_key(self, problem: dict) -> str:
        return json.dumps(problem["prompt"], sort_keys=True)

    def problems(self, n: int, seed: int = 0, split: str = "train") -> list[dict]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        rows = [
            dict(r)
            for r in _load(self.variant["path"])
            if split_of(self.split_key(r), self.test_fraction) == split
        ]
        random.Random(f"jsonl|{seed}|{split}").shuffle(rows)
        return rows[:n]

    def question(self, problem: dict) -> str:
        prompt = problem["prompt"]
        if isinstance(prompt, str):
            return prompt + self.variant["suffix"]
        return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")

    def prompt(self, problem: dict) -> list[dict]:
        if isinstance(problem["prompt"], str):
            return super().prompt(problem)
        return [dict(m) for m in problem["prompt"]]

    def prompt_text(self, problem: dict) -> str:
        if isinstance(problem["prompt"], str):
            return f"User: {self.question(problem)}\nAssistant: "
        return (
            "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in problem["prompt"])
            + "Assistant: "
        )

    def solution_steps(self, problem: dict) -> list[str]:
        return list(
            problem.get("solution_steps") or [f"The answer is \\boxed{{{problem['answer']}}}."]
        )

    def score(self, problem: dict, completion: str) -> Score:
        if (bad := self.too_long(completion)) is not None:
            return bad
        from math_verify import parse, verify

        tail = completion[-self.variant["tail_chars"] :]
        boxed = last_boxed(tail)
        if boxed is not None and len(boxed) > self.variant["max_answer_chars"]:
            return Score(
                0.0,
                False,
                None,
                f"The boxed answer is longer than {self.variant['max_answer_chars']} characters.",
            )
        gold = _gold(str(problem["answer"]))
        try:
            pred = parse(tail, parsing_timeout=_timeout())
        except Exception:
            pred = []
        if not gold:  # math-verify cannot read the gold answer: compare strings
            said = last_boxed(tail) or last_block(tail)
            ok = said is not None and said == str(problem["answer"]).strip()
            return Score(
                1.0 if ok else 0.1 if said else 0.0,
                ok,
                said,
                "Correct." if ok else "The answer is not correct.",
            )
        if not pred:
            return Score(0.0, False, None, "No final answer could be parsed; put it in \\boxed{}.")
        shown = str(pred[-1])[:200]
        if why := guard.sympy_problem(pred):
            return Score(0.0, False, shown, f"The answer was rejected: {why}.")
        try:
            ok = bool(verify(gold, pred, timeout_seconds=_timeout()))
        except Exception:
            ok = False
        return Score(
            1.0 if ok else 0.1, ok, shown, "Correct." if ok else "The answer is not correct."
        )
