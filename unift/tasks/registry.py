"""Task registry: `register(name)` adds a Task class, `get(name, **variant)` builds one,
`stop_strings(task)` gives the strings its completions stop at."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Task

TASKS: dict[str, type[Task]] = {}


def register(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: `@register("my_task") class MyTask(Task): ...`."""

    def add(cls: type[Task]) -> type[Task]:
        if name in TASKS and TASKS[name] is not cls:
            raise ValueError(f"task {name!r} is already registered ({TASKS[name].__name__})")
        cls.name = name
        TASKS[name] = cls
        return cls

    return add


def names() -> list[str]:
    return sorted(TASKS)


def get(name: str, **variant: Any) -> Task:
    """Build task `name`. `variant="ood"` picks a named variant; other keywords override its
    parameters, e.g. `get("countdown", variant="ood_numbers", max_target=50)`."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {names()}")
    return TASKS[name](**variant)


def stop_strings(task: Task | type[Task] | str) -> list[str]:
    """The task's `stop_strings` as a list, for a generation config: a Task, a Task class or a
    registered name. Empty when only EOS ends a completion."""
    if isinstance(task, str):
        if task not in TASKS:
            raise KeyError(f"unknown task {task!r}; known: {names()}")
        task = TASKS[task]
    return list(task.stop_strings)
