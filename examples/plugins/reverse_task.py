"""A user's task for unift: write a short word backwards, answering in <answer> </answer>.

Named in a config as `task: reverse_task:Reverse` (this directory is on the import path when the
config is here; from elsewhere, put it on PYTHONPATH or name it by its package path), and on the
command line the same way: `unift eval tiny --task reverse_task:Reverse`, `unift data
reverse_task:Reverse --n 8`. A task subclasses `unift.tasks.Task` and implements four methods:
a problem generator, the question, a verifier and the reference solution cut into hint pieces.
"""

import random

from unift.tasks import Score, Task

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Reverse(Task):
    """Write a random lowercase word backwards."""

    defaults = {"min_len": 3, "max_len": 6}
    stop_strings = ("</answer>",)  # the answer format ends here; rollouts stop after it

    def check_variant(self) -> None:
        lo, hi = self.variant["min_len"], self.variant["max_len"]
        if not 1 <= lo <= hi:
            raise ValueError(f"reverse: need 1 <= min_len <= max_len, got {lo}, {hi}")

    def generate(self, rng: random.Random) -> dict:
        n = rng.randint(self.variant["min_len"], self.variant["max_len"])
        return {"word": "".join(rng.choice(LETTERS) for _ in range(n))}

    def question(self, problem: dict) -> str:
        return (f"Write the word '{problem['word']}' backwards. "
                "Give only the reversed word inside <answer> </answer>.")

    def score(self, problem: dict, completion: str) -> Score:
        answer = self.answer_block(completion)  # the last <answer> block, or a failing Score
        if isinstance(answer, Score):
            return answer
        right = answer == problem["word"][::-1]
        feedback = "" if right else f"{answer!r} is not '{problem['word']}' backwards."
        return Score(1.0 if right else 0.0, right, answer, feedback)

    def solution_steps(self, problem: dict) -> list[str]:
        return ["<answer>", problem["word"][::-1], "</answer>"]  # UFT hints are prefixes of these
