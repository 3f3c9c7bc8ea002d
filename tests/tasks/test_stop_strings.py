"""Per-task stop strings: generation may stop right after one without changing the score.

A task sets `stop_strings` only when its answer ends with a fixed string. Then the reference
completion ends with it, it occurs nowhere earlier, and a completion cut right after its first
occurrence scores as the whole one: what rollouts and evaluation produce when they stop there.
"""

from __future__ import annotations

import pytest

from tests.tasks.helpers import shipped_task_names
from unift import tasks
from unift.tasks import Task

# The decision for every registered task; a new task must add itself here.
EXPECTED = {
    "countdown": ("</answer>",),
    "knights_knaves": ("</answer>",),
    "navigation": ("}",),  # a step reply is one flat JSON object (route mode: "</answer>")
    "reasoning_gym": ("</answer>",),
    "general_points": (),  # a JSON object ends the reply: "}" also closes nested objects
    "instructions": (),  # free text; the closing phrase differs per problem
    "jsonl": (),  # \boxed{...} closes with "}", which also closes anything inside it
}
# (task, variant, problems checked); reasoning-gym scores in its sandbox worker, so fewer
CASES = [
    *(
        (name, {"variant": v}, 60)
        for name in ("countdown", "knights_knaves", "navigation")
        for v in tasks.TASKS[name].named_variants
    ),
    *(("navigation", {"variant": v, "mode": "route"}, 60) for v in ("absolute", "relative")),
    ("reasoning_gym", {}, 5),
]
# What a model writes when nothing stops it: another turn, with an answer block of its own
RAMBLING = "\nUser: and now another puzzle?\nAssistant: <think>sure</think><answer>0</answer>"


def cut_after_stop(task: Task, completion: str) -> str:
    """`completion` up to and including the first occurrence of any of the task's stop strings."""
    ends = [completion.find(s) + len(s) for s in task.stop_strings if s in completion]
    return completion[: min(ends)] if ends else completion


def test_every_registered_task_has_decided():
    assert {name: tasks.TASKS[name].stop_strings for name in shipped_task_names()} == EXPECTED
    for name in shipped_task_names():
        assert all(isinstance(s, str) and s for s in tasks.TASKS[name].stop_strings)


def test_stop_strings_helper_takes_a_task_a_class_or_a_name():
    assert tasks.stop_strings("countdown") == ["</answer>"]
    assert tasks.stop_strings(tasks.TASKS["countdown"]) == ["</answer>"]
    assert tasks.stop_strings(tasks.get("countdown", variant="easy")) == ["</answer>"]
    assert tasks.stop_strings("general_points") == []
    with pytest.raises(KeyError):
        tasks.stop_strings("no_such_task")


@pytest.mark.parametrize("name,variant,n", CASES)
def test_reference_cut_after_the_stop_string_scores_the_same(name, variant, n):
    task = tasks.get(name, **variant)
    assert task.stop_strings
    for problem in task.problems(n, seed=3):
        reference = task.reference_completion(problem)
        assert reference.endswith(task.stop_strings), reference[-40:]
        assert cut_after_stop(task, reference) == reference  # no stop string earlier on
        full = task.score(problem, reference)
        assert full.correct, (problem, full)
        cut = task.score(problem, cut_after_stop(task, reference + RAMBLING))
        assert (cut.reward, cut.correct) == (full.reward, full.correct), (problem, cut)
        # the rambling's answer block, "0", is wrong: it would count (a navigation step reply is
        # read from its first "action", so there it does not)
        if name != "reasoning_gym" and "</answer>" in task.stop_strings:
            assert not task.score(problem, reference + RAMBLING).correct
