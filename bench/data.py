"""Deterministic benchmark data: 256 demonstrations and 128 preference pairs in TRL's
conversational prompt/completion format, about 150-250 tokens each with the SmolLM2 chat template.

Each problem asks for a running total of a few numbers with a worked solution, step by step;
a rejected answer makes one arithmetic slip and carries it through. Nothing here depends on
unift's task code, so the benchmark stays fixed while the tasks change.
"""

from __future__ import annotations

import random

SYSTEM = "Show your working, one step per line."
ITEMS = ["apples", "pencils", "stamps", "marbles", "books", "coins", "tickets", "shells"]
NAMES = ["Ada", "Ben", "Chloe", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivo", "Jun"]


def _problem(rng: random.Random) -> tuple[str, list[tuple[str, int]], str]:
    item = rng.choice(ITEMS)
    people = rng.sample(NAMES, rng.randint(3, 6))
    counts = [(name, rng.randint(3, 99)) for name in people]
    listing = "; ".join(f"{name} has {n} {item}" for name, n in counts)
    question = (f"Friends count their {item}. {listing}. "
                f"How many {item} in total?")
    return question, counts, item


def _solution(counts: list[tuple[str, int]], item: str, slip_at: int | None = None) -> str:
    lines = [f"We add the {item} one person at a time, keeping a running total."]
    total = 0
    for i, (name, n) in enumerate(counts):
        new = total + n + (10 if i == slip_at else 0)
        if i == 0:
            lines.append(f"Start with {name}: {n} {item}, so the total is {new}.")
        else:
            lines.append(f"Add {name}'s {n} {item}: {total} + {n} = {new}.")
        total = new
    lines.append(f"The answer is {total} {item}.")
    return "\n".join(lines)


def demonstrations(n: int = 256, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        question, counts, item = _problem(rng)
        rows.append({
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": _solution(counts, item)}],
        })
    return rows


def preferences(n: int = 128, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        question, counts, item = _problem(rng)
        slip = rng.randrange(1, len(counts))
        rows.append({
            "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": _solution(counts, item)}],
            "rejected": [{"role": "assistant", "content": _solution(counts, item, slip_at=slip)}],
        })
    return rows


def fixed_length(n: int, length: int, seed: int = 2) -> list[dict]:
    """Demonstrations whose prompt + completion run past `length` tokens: truncated to exactly
    `length`, they give full rows without padding (for the FLOP/s-versus-peak measurement)."""
    rows = demonstrations(n, seed)
    for row in rows:
        text = row["completion"][0]["content"]
        row["completion"][0]["content"] = "\n".join([text] * 3)
    return rows
