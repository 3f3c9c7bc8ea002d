"""Every task's reference solution is correct under its own verifier, for many problems, and
perturbed answers are not."""

from __future__ import annotations

import random
import re

import pytest

from unift import tasks

from .helpers import CASES


def perturb(task: tasks.Task, problem: dict, reference: str, rng: random.Random) -> list[str]:
    """Wrong variants of a correct completion, per task."""
    name = task.name
    if name == "countdown":
        expr = reference.rsplit("<answer>", 1)[1].removesuffix("</answer>")
        return [
            reference.replace(f"<answer>{expr}</answer>", f"<answer>{expr} + 1</answer>"),
            reference.replace(f"<answer>{expr}</answer>", f"<answer>({expr}) * 2</answer>"),
        ]
    if name == "knights_knaves":
        victim = rng.choice(problem["names"])
        answer = reference.rsplit("<answer>", 1)[1]
        swapped = (
            answer.replace(f"{victim} is a knight", "@")
            .replace(f"{victim} is a knave", f"{victim} is a knight")
            .replace("@", f"{victim} is a knave")
        )
        return [reference.rsplit("<answer>", 1)[0] + "<answer>" + swapped]
    if name == "general_points":  # the formula's value + 1 (and a 1 that may not be a card)
        formula = re.search(r'"formula": "([^"=]*)', reference).group(1)
        return [reference.replace(f'"formula": "{formula}', f'"formula": "({formula})+1')]
    if name == "navigation" and task.variant["mode"] == "step":  # another action
        action = re.search(r'"action": "([^"]*)"', reference).group(1)
        other = "stop()" if action != "stop()" else "forward()"
        return [reference.replace(f'"action": "{action}"', f'"action": "{other}"')]
    if name == "navigation":
        lines = reference.split("\n")
        k = rng.randrange(1, len(lines) - 1)
        lines[k] = "stop()" if lines[k] != "stop()" else "forward()"
        return ["\n".join(lines)]
    if name == "instructions":
        from unift.tasks.instructions import respond

        broken = frozenset([rng.choice([c["type"] for c in problem["constraints"]])])
        return [x for x in [respond(problem, rng, broken)] if x is not None]
    raise AssertionError(name)


@pytest.mark.parametrize(("name", "variant", "n"), CASES)
def test_reference_solutions_score_correct_and_perturbations_do_not(name, variant, n):
    task = tasks.get(name, variant=variant)
    rng = random.Random(0)
    for problem in task.problems(n, seed=0):
        reference = task.reference_completion(problem)
        score = task.score(problem, reference)
        assert score.correct and score.reward == task.max_reward, (problem, reference, score)
        for wrong in perturb(task, problem, reference, rng)[: 1 if n > 100 else 2]:
            bad = task.score(problem, wrong)
            assert not bad.correct and bad.reward < task.max_reward and bad.feedback, (
                problem,
                wrong,
                bad,
            )


@pytest.mark.parametrize(("name", "variant"), [(c[0], c[1]) for c in CASES[::3]])
def test_test_split_references_are_correct_too(name, variant):
    task = tasks.get(name, variant=variant)
    for problem in task.problems(100, seed=0, split="test"):
        assert task.score(problem, task.reference_completion(problem)).correct
