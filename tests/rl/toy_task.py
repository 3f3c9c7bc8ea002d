"""A user-defined task with a dense reward, so a random tiny model gets a learning signal:
the share of completion characters that are lowercase vowels."""

import random

from unift.tasks import Score, Task, register
from unift.tasks.registry import TASKS

VOWELS = set("aeiou")


class Vowels(Task):
    named_variants = {}

    def generate(self, rng: random.Random) -> dict:
        return {"id": rng.randrange(10**9)}

    def question(self, problem: dict) -> str:
        return f"Write something (#{problem['id']})."

    def score(self, problem: dict, completion: str) -> Score:
        share = sum(c in VOWELS for c in completion) / max(1, len(completion))
        return Score(share, share > 0.5, share, "")

    def solution_steps(self, problem: dict) -> list[str]:
        return ["aeiou ", "aei ", "ou"]


if "vowels" not in TASKS:
    register("vowels")(Vowels)
