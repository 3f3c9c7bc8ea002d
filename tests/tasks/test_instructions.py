"""Instruction following: each checker by hand, generated responses, feedback records, and the
shipped example files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from unift import tasks
from unift.tasks.instructions import CONFLICTS, TYPES, check, records, respond

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        ({"type": "lowercase"}, "all quiet here.", "All quiet here."),
        ({"type": "bullets", "n": 2}, "intro\n* one\n- two", "* one\n* two\n* three"),
        ({"type": "word_count", "min": 3, "max": 4}, "one two three", "one two three four five"),
        ({"type": "word_count", "min": 3, "max": None}, "one two three four five", "one two"),
        ({"type": "include", "keyword": "focus"}, "Keep your Focus.", "Keep your focused mind."),
        ({"type": "exclude", "keyword": "park"}, "Parks are green.", "The park is green."),
        ({"type": "json"}, '```json\n{"a": [1, 2]}\n```', 'Here: {"a": 1}'),
        (
            {"type": "ends_with", "phrase": "Any questions?"},
            "Done. Any questions?  \n",
            "Any questions? Bye.",
        ),
        ({"type": "no_commas"}, "No commas here.", "One, two."),
        ({"type": "title"}, "<<my title>>\nText.", "<my title>\nText."),
        (
            {"type": "paragraphs", "n": 2},
            "First.\n\n***\n\nSecond.",
            "First.\n\n***\n\n***\n\nSecond.",
        ),
    ],
)
def test_checkers(constraint, good, bad):
    assert check(good, [constraint]) == [True]
    assert check(bad, [constraint]) == [False]


def test_score_is_the_fraction_of_constraints_met():
    task = tasks.get("instructions")
    problem = {
        "topic": "sleep",
        "constraints": [
            {"type": "lowercase"},
            {"type": "no_commas"},
            {"type": "include", "keyword": "habit"},
        ],
    }
    assert task.score(problem, "sleep is a habit.").reward == 1.0
    score = task.score(problem, "Sleep, a habit.")
    assert score.reward == pytest.approx(1 / 3) and not score.correct
    assert score.parsed == {"lowercase": False, "no_commas": False, "include": True}
    assert "lowercase" in score.feedback and "commas" in score.feedback


def test_problems_respect_variants_and_conflicts():
    for variant, sizes in (("id", {1, 2}), ("ood_count", {3, 4})):
        problems = tasks.get("instructions", variant=variant).problems(300)
        assert {len(p["constraints"]) for p in problems} == sizes
        for p in problems:
            kinds = [c["type"] for c in p["constraints"]]
            assert len(set(kinds)) == len(kinds) and set(kinds) <= set(TYPES)
            assert not any(frozenset((a, b)) in CONFLICTS for a in kinds for b in kinds)
    assert {
        c["type"] for p in tasks.get("instructions").problems(300) for c in p["constraints"]
    } == set(TYPES)


def test_respond_violates_exactly_what_it_is_asked_to():
    task, rng = tasks.get("instructions", variant="ood_count"), random.Random(0)
    done = 0
    for p in task.problems(200):
        kinds = [c["type"] for c in p["constraints"]]
        broken = frozenset(rng.sample(kinds, rng.randint(1, len(kinds))))
        text = respond(p, rng, broken)
        if text is not None:
            done += 1
            assert check(text, p["constraints"]) == [k not in broken for k in kinds]
    assert done > 150


@pytest.mark.parametrize("kind", ["sft", "preference", "binary", "score"])
def test_records_agree_with_the_checker(kind):
    task = tasks.get("instructions")
    rows = records(kind, 100, seed=1)
    assert len(rows) == 100 and rows == records(kind, 100, seed=1)
    fields = {
        "sft": {"prompt", "completion"},
        "preference": {"prompt", "chosen", "rejected"},
        "binary": {"prompt", "completion", "label"},
        "score": {"prompt", "completion", "score"},
    }[kind]
    by_prompt = {task.question(p): p for p in task.problems(300, seed=1)}
    for row in rows:
        assert set(row) == fields and isinstance(row["prompt"], str)
        problem = by_prompt[row["prompt"]]
        if kind == "sft":
            assert task.score(problem, row["completion"]).correct
        elif kind == "preference":
            assert (
                task.score(problem, row["chosen"]).correct
                and not task.score(problem, row["rejected"]).correct
            )
        elif kind == "binary":
            assert task.score(problem, row["completion"]).correct == row["label"]
        else:
            assert task.score(problem, row["completion"]).reward == pytest.approx(row["score"])
    if kind == "binary":
        assert 30 < sum(r["label"] for r in rows) < 70
    if kind == "score":
        assert len({r["score"] for r in rows}) >= 3


@pytest.mark.parametrize("kind", ["sft", "preference", "binary", "score"])
def test_shipped_examples_are_what_the_code_generates(kind):
    rows = [
        json.loads(line)
        for line in (EXAMPLES / f"instructions_{kind}.jsonl").read_text().splitlines()
    ]
    assert rows == records(kind, 64, seed=0)
