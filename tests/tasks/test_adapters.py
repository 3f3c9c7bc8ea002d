"""Adapters: reasoning-gym datasets and user JSONL files (math-verify)."""

from __future__ import annotations

import json

import pytest

from unift import tasks
from unift.tasks import guard


@pytest.mark.parametrize(
    ("dataset", "config", "n"),
    [
        ("countdown", {"min_numbers": 3, "max_numbers": 4}, 6),
        ("basic_arithmetic", {}, 30),
        ("leg_counting", {}, 30),
    ],
)
def test_reasoning_gym_references_are_correct(dataset, config, n):
    task = tasks.get("reasoning_gym", dataset=dataset, **config)
    assert task.variant["dataset"] == dataset and task.config == config
    train, test = task.problems(n), task.problems(n // 3, split="test")
    assert not {p["question"] for p in train} & {p["question"] for p in test}
    assert train == task.problems(n)
    for p in train + test:
        assert "<answer>" in task.question(p)
        assert task.score(p, "Thinking... " + task.reference_completion(p)).correct
        assert task.score(p, "no tags").reward == 0.0


def test_reasoning_gym_entries_survive_json():
    # arc_agi compares tuples; a plain JSON round trip would turn them into lists
    task = tasks.get("reasoning_gym", dataset="arc_agi")
    (problem,) = json.loads(json.dumps(task.problems(1)))
    assert task.score(problem, task.reference_completion(problem)).correct
    with pytest.raises(ValueError, match="no reference answer"):
        rubiks = tasks.get("reasoning_gym", dataset="rubiks_cube")
        rubiks.solution_steps(rubiks.problems(1)[0])


def test_reasoning_gym_wrong_and_hostile_answers():
    task = tasks.get("reasoning_gym", dataset="countdown")
    p = task.problems(1)[0]
    assert not task.score(p, "<answer>1 + 1</answer>").correct
    for hostile in [
        '__import__("os").system("touch /tmp/unift_pwned")',
        "9**9**9**9",
        "99999999!",
        "(lambda: 1)()",
    ]:
        score = task.score(p, f"<answer>{hostile}</answer>")
        assert score.reward == 0.0 and "rejected" in score.feedback


def test_jsonl_task_reads_user_files(math_file):
    task = tasks.get("jsonl", path=math_file)
    train, test = task.problems(1000), task.problems(1000, split="test")
    val = task.problems(1000, split="val")
    assert len(train) + len(val) + len(test) == 45 and train == task.problems(1000)
    prompts = [{str(p["prompt"]) for p in split} for split in (train, val, test)]
    assert not prompts[0] & prompts[1] and not prompts[0] & prompts[2] and not prompts[1] & prompts[2]
    for p in train + test:
        assert task.score(p, task.reference_completion(p)).correct
    chat = next(p for p in train + test if isinstance(p["prompt"], list))
    assert task.prompt(chat) == chat["prompt"] and task.solution_steps(chat) == [
        "It is ",
        "\\boxed{Paris}.",
    ]
    with pytest.raises(ValueError):
        tasks.get("jsonl")


@pytest.mark.parametrize(
    ("answer", "completion", "reward"),
    [
        ("\\frac{1}{2}", "So the result is \\boxed{0.5}.", 1.0),
        ("\\frac{1}{2}", "The answer is $\\frac{2}{4}$", 1.0),
        ("42", "6 times 7 is \\boxed{42}", 1.0),
        ("42", "\\boxed{41}", 0.1),
        ("42", "I do not know.", 0.0),
        ("42", "\\boxed{9^{9^{9^9}}}", 0.0),
        ("42", "\\boxed{100000000!}", 0.0),
        ("Paris", "It is \\boxed{Paris}.", 1.0),
        ("Paris", "It is \\boxed{Rome}.", 0.1),
    ],
)
def test_jsonl_math_verify_scale(math_file, answer, completion, reward):
    task = tasks.get("jsonl", path=math_file)
    score = task.score({"prompt": "q", "answer": answer}, completion)
    assert score.reward == reward and score.correct == (reward == 1.0)


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("x**2 + 3*x", False),
        ("e^{-x^2}", True),
        ("2^{10}", False),
        ("9**9**9**9", True),
        ("2^{10000}", True),
        ("(9**9)**(9**9)", True),
        ("sqrt(2)/2", False),
        ("2**(" + "1" * 300 + ")", True),
    ],
)
def test_power_screen(text, bad):
    assert (guard.power_problem(text) is not None) == bad


def test_code_screen_allows_math_and_data():
    for ok in [
        "94*4 - 61 - 6",
        "5*(65 + 35)",
        "sqrt(x) + log(2)",
        "['a', 'b']",
        "Q _ _\n_ _ Q",
        "3.14",
        "-26 + 45",
    ]:
        assert guard.code_problem(ok) is None, ok
    for bad in [
        "__import__('os')",
        "open('f').read()",
        "().__class__",
        "x.real",
        "'a' * 10**9",
        "[0] * 99",
        "5!",
        "exec('1')",
    ]:
        assert guard.code_problem(bad) is not None, bad
