"""The Task interface: registry, variants, splits, prompts, reward_fn, retry_messages."""

from __future__ import annotations

import json
import random

import pytest

from unift import tasks
from unift.tasks import ID, OOD, Score, Task, register, retry_messages

from .helpers import all_tasks

GENERATED = ["countdown", "knights_knaves", "general_points", "navigation", "instructions"]


def test_registry_lists_every_task():
    assert set(tasks.names()) >= {*GENERATED, "reasoning_gym", "jsonl"}
    assert tasks.names() == sorted(tasks.TASKS)
    with pytest.raises(KeyError):
        tasks.get("no_such_task")


@pytest.mark.parametrize("name", GENERATED)
def test_variants_are_labelled_and_resolve(name):
    variants = tasks.TASKS[name].variants()
    assert {v["distribution"] for v in variants.values()} == {ID, OOD}
    for vname, v in variants.items():
        task = tasks.get(name, variant=vname)
        assert task.variant == v["params"] and task.variant_name == vname
        # the resolved parameters alone rebuild the same task (what RL records store)
        assert tasks.get(name, **json.loads(json.dumps(task.variant))).variant == task.variant
    with pytest.raises(ValueError):
        tasks.get(name, variant="no_such_variant")
    with pytest.raises(ValueError):
        tasks.get(name, no_such_param=1)


@pytest.mark.parametrize("name", GENERATED)
def test_problems_are_deterministic_json_and_split(name):
    task = tasks.get(name)
    train = task.problems(200, seed=0)
    assert train == task.problems(200, seed=0)
    assert train != task.problems(200, seed=1)
    assert json.loads(json.dumps(train)) == train
    test_keys = {task.split_key(p) for p in task.problems(100, seed=0, split="test")}
    for seed in range(3):  # no seed leaks a test problem into training
        assert not test_keys & {task.split_key(p) for p in task.problems(200, seed=seed)}
    with pytest.raises(ValueError):
        task.problems(1, split="validation")


def test_every_task_prompts_and_references(math_file):
    for task in all_tasks(math_file):
        for problem in task.problems(3):
            messages = task.prompt(problem)
            assert messages[-1]["role"] == "user" and messages[-1]["content"]
            assert all(m["role"] in ("system", "user") for m in messages)
            assert isinstance(task.prompt_text(problem), str)
            steps = task.solution_steps(problem)
            assert steps and all(isinstance(s, str) and s for s in steps)
            assert task.reference_completion(problem) == "".join(steps)
            assert task.score(problem, task.reference_completion(problem)).correct, (task, problem)


def test_reward_fn_follows_trl_convention():
    task = tasks.get("countdown")
    problems = task.problems(3)
    completions = [
        task.reference_completion(problems[0]),
        "no answer",
        [{"role": "assistant", "content": task.reference_completion(problems[2])}],
    ]
    rewards = task.reward_fn(
        [task.prompt(p) for p in problems],
        completions,
        problem=[problems[0], json.dumps(problems[1]), problems[2]],
    )
    assert rewards == [1.0, 0.0, 1.0]
    assert task.reward_fn(["p"], ["c"], problem=[None]) == [None]
    assert task.reward_fn(["p"], ["c"]) == [None]


def test_retry_messages_appends_attempt_and_feedback():
    task = tasks.get("general_points")
    problem = task.problems(1)[0]
    messages = task.prompt(problem)
    score = task.score(problem, '{"formula": "1 + 1"}')
    out = retry_messages(task, problem, messages, '{"formula": "1 + 1"}', score)
    assert out[: len(messages)] == messages and len(out) == len(messages) + 2
    assert out[-2] == {"role": "assistant", "content": '{"formula": "1 + 1"}'}
    assert out[-1]["role"] == "user"
    assert (
        out[-1]["content"].startswith("You failed this trial because")
        and task.retry_instruction in out[-1]["content"]
    )


def test_users_can_register_a_task():
    @register("test_parity")
    class Parity(Task):
        defaults = {"high": 100}
        named_variants = {
            "id": {"distribution": ID, "description": "small", "params": {}},
            "big": {"distribution": OOD, "description": "big", "params": {"high": 10**6}},
        }

        def generate(self, rng: random.Random) -> dict:
            return {"n": rng.randint(0, self.variant["high"])}

        def question(self, problem):
            return f"Is {problem['n']} even? Answer yes or no."

        def score(self, problem, completion):
            want = "yes" if problem["n"] % 2 == 0 else "no"
            ok = completion.strip().lower() == want
            return Score(float(ok), ok, completion.strip(), "" if ok else f"It is {want}.")

        def solution_steps(self, problem):
            return ["yes" if problem["n"] % 2 == 0 else "no"]

    try:
        task = tasks.get("test_parity", variant="big")
        assert task.name == "test_parity" and task.variant == {"high": 10**6}
        for p in task.problems(20):
            assert task.score(p, task.reference_completion(p)).correct
    finally:
        del tasks.TASKS["test_parity"]
