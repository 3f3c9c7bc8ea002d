"""`unift list`: what unift has, read from the code's own registries (nothing is copied here).

    unift list objectives        # `unift.train.losses.OBJECTIVES`: kinds, pi_ref, params
    unift list params grpo       # an objective's params: defaults, choices, ranges, meaning
    unift list presets           # `unift.rollout.presets.PRESETS`: what each one sets
    unift list tasks             # `unift.tasks.TASKS`: variants and their defaults
    unift list config [KEY]      # every run-config key with its default and docstring

Descriptions are the code's docstrings (a field's docstring is the string under it, read from
the source with `ast`) and the comments beside params in `unift.train.losses`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from typing import Any


def field_docs(cls) -> dict[str, str]:
    """Each dataclass field's docstring: the string literal right under its annotation."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source (a frozen build): no descriptions
        return {}
    body = tree.body[0].body
    return {node.target.id: inspect.cleandoc(doc.value.value) for node, doc in zip(body, body[1:], strict=False)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}


def show(value: Any) -> str:
    """A default as it would be written in YAML (flow style)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, str):
        return value if value and value.strip() == value and value[0] not in "[{'\"" else json.dumps(value)
    return json.dumps(value, default=str).replace("NaN", "nan")


def _section(tp) -> tuple[type | None, bool]:
    """(the dataclass a field holds, whether as a list of them), or (None, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
        return typing.get_args(tp)[0], True
    return (tp, False) if dataclasses.is_dataclass(tp) else (None, False)


def config_keys(cls, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, docstring) for every field of config dataclass `cls`, sections
    included and expanded (a list of sections as `sources.N.`)."""
    hints, docs, defaults = typing.get_type_hints(cls), field_docs(cls), cls()
    out = []
    for f in dataclasses.fields(cls):
        key, default = prefix + f.name, getattr(defaults, f.name)
        inner, many = _section(hints[f.name])
        if inner is None:
            out.append((key, show(default), docs.get(f.name, "")))
            continue
        out.append((key, "[]" if many else "null" if default is None else "(section)", docs.get(f.name, "")))
        out += config_keys(inner, f"{key}.N." if many else f"{key}.")
    return out


def first_sentence(text: str | None, width: int = 110) -> str:
    """A docstring's first sentence on one line, cut at a word near `width` characters."""
    text = " ".join((text or "").split())
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    text = text[: end.start() + 1] if end else text
    return text if len(text) <= width else text[: text.rfind(" ", 0, width - 3)] + " ..."


def _rows(rows: list[tuple[str, ...]], indent: str = "") -> str:
    """Left-aligned columns; the last one runs on."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)] if rows else []
    lines = (indent + "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)), r[-1]]) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


# -- objectives ----------------------------------------------------------------------------


def described(compute) -> Any:
    """The function whose docstring describes an objective's `compute`: the adapter itself, the
    function a wrapper closes over, or the `unift.objectives` function a lambda calls."""
    from unift import objectives

    fn, seen = compute, set()
    while fn.__doc__ is None and fn.__closure__ and id(fn) not in seen:
        seen.add(id(fn))
        inner = [c.cell_contents for c in fn.__closure__ if inspect.isfunction(c.cell_contents)]
        if not inner:
            break
        fn = inner[0]
    if fn.__doc__ is None:
        called = [getattr(objectives, n, None) for n in fn.__code__.co_names]
        called = [f for f in called if inspect.isfunction(f)]
        fn = next((f for f in called if f.__doc__), fn)
    return fn


def _settings(compute) -> str:
    """A wrapper's fixed settings (its closure's strings), e.g. DPO's loss_type."""
    try:
        nonlocals = inspect.getclosurevars(compute).nonlocals
    except (TypeError, ValueError):
        return ""
    return ", ".join(f"{k} {v}" for k, v in nonlocals.items() if isinstance(v, str))


def _ref(objective) -> str:
    need = objective.needs_ref
    return "by params" if callable(need) else "yes" if need else "no"


def list_objectives() -> str:
    from unift.train.losses import OBJECTIVES

    canonical: dict[int, str] = {}
    rows = [("name", "kinds", "pi_ref", "description")]
    for name, objective in OBJECTIVES.items():
        if id(objective) in canonical:
            rows.append((name, "", "", f"the same as {canonical[id(objective)]}"))
            continue
        canonical[id(objective)] = name
        settings = _settings(objective.compute)
        text = first_sentence(described(objective.compute).__doc__) + (f" ({settings})" if settings else "")
        rows.append((name, ",".join(objective.kinds), _ref(objective), text))
    return (_rows(rows) + "\n\nparams of one: `unift list params NAME`; formulas and sources: docs/objectives.md, "
            "docs/methods.md")


def param_comments(module) -> dict[str, str]:
    """`"name": value,  # comment` lines of a module's source: the comment of each param."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for m in re.finditer(r'^\s*"(\w+)":[^#\n]*#\s*(.+)$', source, re.M):
        out.setdefault(m.group(1), m.group(2).strip())
    return out


def list_params(name: str) -> str:
    from unift.train import losses

    if name not in losses.OBJECTIVES:
        close = difflib.get_close_matches(name, list(losses.OBJECTIVES), n=1)
        raise KeyError(f"unknown objective {name!r}{f'; did you mean {close[0]!r}?' if close else ''} "
                       f"(known: {', '.join(losses.OBJECTIVES)})")
    objective = losses.OBJECTIVES[name]
    comments = param_comments(losses)
    rows = [("param", "default", "values", "meaning")]
    for key, default in objective.params.items():
        values = objective.choices.get(key)
        bounds = getattr(objective, "bounds", {}).get(key)
        allowed = " | ".join(map(str, values)) if values else f"[{bounds[0]}, {bounds[1]}]" if bounds else \
            type(default).__name__
        rows.append((key, show(default), allowed, comments.get(key, "")))
    head = f"{name}: {', '.join(objective.kinds)} sources; pi_ref: {_ref(objective)}"
    table = _rows(rows) if len(rows) > 1 else "(no params)"
    docs = "\n\n".join(f"{fn.__module__}.{fn.__qualname__}:\n{textwrap.indent(inspect.cleandoc(fn.__doc__), '  ')}"
                        for fn in _docs_of(described(objective.compute)))
    return (f"{head}\nset them as sources.N.params.KEY; a preset fills those a source leaves unset "
            f"(`unift list presets`)\n\n{table}\n\n{docs}")


def _docs_of(fn) -> list:
    """`fn` and the `unift.objectives` functions its docstring names in backticks (where the
    formula and its coefficients are)."""
    from unift import objectives

    named = [getattr(objectives, n, None) for n in re.findall(r"`(\w+)`", fn.__doc__ or "")]
    return [fn] + [f for f in dict.fromkeys(named) if inspect.isfunction(f) and f.__doc__ and f is not fn]


# -- presets and tasks ---------------------------------------------------------------------


def preset_descriptions() -> dict[str, str]:
    """The `- name: text` bullets of `unift.rollout.presets`'s docstring, continuation lines joined."""
    from unift.rollout import presets

    out: dict[str, str] = {}
    name = None
    for line in (presets.__doc__ or "").splitlines():
        m = re.match(r"- ([\w-]+):\s+(.*)", line)
        if m:
            name = m.group(1)
            out[name] = m.group(2).strip()
        elif name and line.startswith(" ") and line.strip():
            out[name] += " " + line.strip()
        else:
            name = None
    return out


def flatten(data: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += flatten(value, f"{prefix}{key}.")
        else:
            out.append((prefix + key, value))
    return out


def list_presets() -> str:
    from unift.rollout.presets import PRESETS

    descriptions = preset_descriptions()
    blocks = []
    for name, preset in PRESETS.items():
        text = descriptions.get(name, "(no description in unift.rollout.presets)")
        sets = " ".join(f"{k}={show(v)}" for k, v in flatten(preset))
        blocks.append(f"{name}\n{textwrap.fill(text, 100, initial_indent='  ', subsequent_indent='  ')}\n"
                      f"{textwrap.fill('sets: ' + sets, 100, initial_indent='  ', subsequent_indent='    ')}")
    return ("\n".join(blocks) + "\n\nA preset is `preset: NAME` on a task source (objective grpo); it fills what "
            "the source leaves at its defaults (rollout settings) and the params it does not set.")


def list_tasks() -> str:
    from unift.tasks import TASKS

    blocks = []
    for name in sorted(TASKS):
        cls = TASKS[name]
        doc = cls.__doc__ if cls.__doc__ and cls.__doc__ != TASKS[name].__mro__[1].__doc__ else \
            sys.modules[cls.__module__].__doc__
        lines = [f"{name}: {first_sentence(doc)}"]
        variants = cls.variants()
        if variants:
            lines.append(_rows([(f"variant {v}", d["distribution"].upper(), d["description"])
                                for v, d in variants.items()], "  "))
        if cls.defaults:
            lines.append(textwrap.fill("defaults: " + ", ".join(f"{k}={show(v)}" for k, v in cls.defaults.items()),
                                       100, initial_indent="  ", subsequent_indent="    "))
        if cls.stop_strings:
            lines.append(f"  stops after: {', '.join(cls.stop_strings)}")
        blocks.append("\n".join(lines))
    return ("\n".join(blocks) + "\n\nOn a task source: task: NAME, variant: {variant: NAME, KEY: VALUE}; "
            "records: `unift data NAME`")


def list_config(key: str | None) -> str:
    """Every key, one line each (first sentence); with KEY, the keys under it in full."""
    from unift.config import TRL_ALIASES, RunConfig

    keys = config_keys(RunConfig)
    if key:
        pattern = re.sub(r"\.\d+\.", ".N.", key + ".")
        chosen = [k for k in keys if (k[0] + ".").startswith(pattern) or k[0] + "." == pattern]
        if not chosen:
            close = difflib.get_close_matches(key, [k[0] for k in keys], n=1)
            raise KeyError(f"no config key {key!r}{f'; did you mean {close[0]!r}?' if close else ''}")
        return "\n\n".join(f"{k} = {d}\n{textwrap.indent(doc, '  ')}" for k, d, doc in chosen)
    rows = [(k, d if len(d) <= 24 else d[:21] + "...", first_sentence(doc)) for k, d, doc in keys]
    aliases = [(f"{'' if where == 'run' else 'sources.N.'}{name}", "->", f"{'' if where == 'run' else 'sources.N.'}"
                f"{a.key}" + (" (values mapped)" if a.values else ""))
               for where, table in TRL_ALIASES.items() for name, a in table.items()]
    aliases += [("warmup_ratio", "->", "optim.warmup_steps = ceil(warmup_ratio x steps) (also warmup_steps < 1)"),
                ("sources.N.beta (task)", "->", "sources.N.params.c_kl")]
    return (_rows(rows) + "\n\nTRL's names accepted (docs/trl.md):\n" + _rows(aliases, "  ")
            + "\n\n`unift list config KEY` shows the keys under KEY in full.")


# -- the command ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unift list", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    sub.add_parser("objectives", help="objective names, record kinds, whether pi_ref is needed, description")
    params = sub.add_parser("params", help="an objective's params with defaults, allowed values, meaning")
    params.add_argument("objective", metavar="OBJECTIVE", help="an objective name (`unift list objectives`)")
    sub.add_parser("presets", help="algorithm presets of a task source and the settings each fills in")
    sub.add_parser("tasks", help="verifiable tasks, their variants and defaults")
    config = sub.add_parser("config", help="run-config keys with defaults and docstrings; TRL's accepted names")
    config.add_argument("key", nargs="?", metavar="KEY", help="a key or section (e.g. optim, sources.N.rollout)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.what == "objectives":
        print(list_objectives())
    elif args.what == "params":
        print(list_params(args.objective))
    elif args.what == "presets":
        print(list_presets())
    elif args.what == "tasks":
        print(list_tasks())
    else:
        print(list_config(args.key))
    return 0
