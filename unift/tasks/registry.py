"""Task registry: `register(name)` adds a Task class, `get(name, **variant)` builds one,
`stop_strings(task)` gives the strings its completions stop at. A name `pkg.module:MyTask`
loads a user's Task subclass (`task_class`), wherever a task is named: a config's `task:`,
`unift eval --task`, `unift data`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unift import plugins

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


def task_class(name: str, search=()) -> type[Task]:
    """The Task class of a registered name, or of `pkg.module:MyTask` (TRL's dotted
    `pkg.module.MyTask` too), imported with the working directory and `search` on sys.path and
    registered under that name (a class without a `name` takes it). Importing runs the module's
    code: the user's choice, made by naming it (`unift.plugins`). ValueError if it is not a
    Task subclass; KeyError for an unknown plain name."""
    if name in TASKS:
        return TASKS[name]
    if not plugins.is_spec(name):
        raise KeyError(f"unknown task {name!r}; known: {names()} (or a Task subclass as pkg.module:MyTask)")
    cls = plugins.load(name, search)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"task {name!r} is {cls!r}, not a subclass of unift.tasks.Task")
    if getattr(cls, "__abstractmethods__", None):
        raise ValueError(f"task {name!r}: {cls.__name__} does not implement "
                         f"{', '.join(sorted(cls.__abstractmethods__))} (unift.tasks.base.Task)")
    if not cls.name:  # the name seeds its problems (`Task.problems`)
        cls.name = name
    TASKS[name] = cls
    return cls


def get(name: str, **variant: Any) -> Task:
    """Build task `name` (a registered name or `pkg.module:MyTask`). `variant="ood"` picks a
    named variant; other keywords override its parameters, e.g.
    `get("countdown", variant="ood_numbers", max_target=50)`."""
    return task_class(name)(**variant)


def stop_strings(task: Task | type[Task] | str) -> list[str]:
    """The task's `stop_strings` as a list, for a generation config: a Task, a Task class or a
    registered name. Empty when only EOS ends a completion."""
    if isinstance(task, str):
        task = task_class(task)
    return list(task.stop_strings)
