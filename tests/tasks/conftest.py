"""Fixtures for the task tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def math_file(tmp_path_factory) -> str:
    """A small JSONL of arithmetic questions for the jsonl task."""
    path = tmp_path_factory.mktemp("data") / "math.jsonl"
    rows = [
        {
            "prompt": f"What is {a} divided by {a * 2}? Put the answer in \\boxed{{}}.",
            "answer": "\\frac{1}{2}",
        }
        for a in range(1, 6)
    ]
    rows += [
        {"prompt": f"What is {a} times {a + 1}?", "answer": str(a * (a + 1))} for a in range(1, 40)
    ]
    rows.append(
        {
            "prompt": [{"role": "user", "content": "Name the capital of France."}],
            "answer": "Paris",
            "solution_steps": ["It is ", "\\boxed{Paris}."],
        }
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)
