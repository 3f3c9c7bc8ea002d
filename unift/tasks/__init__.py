"""Verifiable tasks: seeded problems, prompts, verifiers and step-wise reference solutions.

    task = unift.tasks.get("countdown", variant="ood_numbers")
    problems = task.problems(1000, seed=0, split="train")
    task.score(problems[0], completion)          # -> Score(reward, correct, parsed, feedback)
    task.solution_steps(problems[0])             # hint pieces for UFT-hint
    unift.tasks.stop_strings(task)               # ["</answer>"]: where generation may stop
    unift.tasks.get("my_tasks:Reverse")          # a user's Task subclass (`task_class`)

One module per task; `base` holds the interface, `registry` the name -> class table, `arith`
the safe arithmetic shared by countdown and general_points, `guard` the limits put on
third-party verifiers, `export` the `unift data` command.
"""

from . import (  # noqa: F401  (importing a task module registers it)
    countdown,
    general_points,
    instructions,
    jsonl,
    knights_knaves,
    navigation,
    reasoning_gym_adapter,
)
from .base import ID, OOD, Score, Task, retry_messages
from .registry import TASKS, get, names, register, stop_strings, task_class

__all__ = [
    "ID",
    "OOD",
    "TASKS",
    "Score",
    "Task",
    "get",
    "names",
    "register",
    "retry_messages",
    "stop_strings",
    "task_class",
]
