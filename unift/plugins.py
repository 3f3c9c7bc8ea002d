"""User code named in a config: `pkg.module:name` (or TRL's dotted `pkg.module.name`).

    task: my_tasks:Reverse                         # a Task subclass (`unift.tasks.task_class`)
    reward_funcs: [my_rewards:format_reward]       # TRL-style reward functions (`unift.rollout.rewards`)

Loading a plugin imports the named module, which runs its code: that is the user's choice, made
by naming it in their config or on the command line, as with TRL's `reward_funcs`. unift never
imports, evaluates or executes anything a model wrote.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def is_spec(name: str) -> bool:
    """Whether `name` names user code (`module:attr`, `module.attr`) rather than a built-in."""
    return ":" in name or "." in name


@contextlib.contextmanager
def importable_from(dirs: Sequence[str | Path]) -> Iterator[None]:
    """`dirs` at the front of sys.path for the duration (TRL's CLI adds the working directory
    the same way); a module once imported stays in sys.modules."""
    added = [str(Path(d).resolve()) for d in dirs]
    added = [d for i, d in enumerate(added) if d not in added[:i]]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(d)


def load(spec: str, search: Sequence[str | Path] = ()) -> Any:
    """The object `spec` names: `module:attr` (attr may be dotted, `module:Class.method`) or,
    as TRL's CLI takes it, `module.attr`. The module is imported with the working directory and
    `search` (e.g. the config file's directory) at the front of sys.path. Errors are ValueErrors
    that name the spec and say where modules are looked for."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{spec!r} is not `module:name`")
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{spec!r} is not `module:name` (e.g. my_rewards:format_reward)")
    where = ", ".join(dict.fromkeys(["the working directory", *map(str, search), "PYTHONPATH"]))
    try:
        with importable_from([os.getcwd(), *search]):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):  # the module itself, not one it imports
            raise ValueError(f"{spec!r}: no module {module_name!r} (looked in {where})") from None
        raise ValueError(f"{spec!r}: importing {module_name} failed: {type(err).__name__}: {err}") from err
    except Exception as err:  # the module's own code failed (a SyntaxError names its file and line)
        raise ValueError(f"{spec!r}: importing {module_name} failed: {type(err).__name__}: {err}") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{spec!r}: {module_name} ({getattr(module, '__file__', '?')}) has no {attr!r}")
        obj = getattr(obj, part)
    return obj
