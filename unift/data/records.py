"""Records: the four offline kinds in TRL's column conventions, validated row by row.

    demonstration  {"prompt", "completion"}  or  {"messages": [{"role", "content"}, ...]}
    preference     {"prompt", "chosen", "rejected"}
    binary         {"prompt", "completion", "label": true | false}
    score          {"prompt", "completion", "score": float in [0, 1]}

Prompts and completions are plain strings (used as raw text) or lists of chat messages (rendered
with the model's chat template). Every row is checked when loaded; a bad row raises
`RecordError` naming the file, the line and the field. Nothing is skipped silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("demonstration", "preference", "binary", "score")

Text = str | list[dict]  # raw text, or chat messages


class RecordError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    """One validated row. `completion` is the demonstration / judged completion; for preferences
    `chosen` and `rejected`. `target` is the binary label (0/1) or the score."""

    kind: str
    prompt: Text
    completion: Text | None = None
    chosen: Text | None = None
    rejected: Text | None = None
    target: float | None = None
    where: str = ""


def _check_text(row: dict, field: str, where: str, roles: tuple[str, ...] | None = None) -> Text:
    if field not in row:
        raise RecordError(f"{where}: missing field {field!r} (row has {sorted(row)})")
    value = row[field]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        for i, msg in enumerate(value):
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), str) or not isinstance(
                msg.get("role"), str
            ):
                raise RecordError(
                    f"{where}: field {field!r}[{i}]: a chat message needs string 'role' and 'content', got {msg!r}"
                )
            if roles and msg["role"] not in roles:
                raise RecordError(f"{where}: field {field!r}[{i}]: role {msg['role']!r} not in {roles}")
        return value
    raise RecordError(f"{where}: field {field!r} must be a string or a non-empty list of chat messages, got {value!r}")


def _split_messages(row: dict, where: str) -> tuple[list[dict], list[dict]]:
    messages = _check_text(row, "messages", where)
    if isinstance(messages, str):
        raise RecordError(f"{where}: field 'messages' must be a list of chat messages")
    if messages[-1]["role"] != "assistant":
        raise RecordError(f"{where}: field 'messages': the last message must be the assistant's (the completion)")
    if len(messages) < 2:
        raise RecordError(f"{where}: field 'messages': needs a prompt before the assistant message")
    return messages[:-1], messages[-1:]


def _number(row: dict, field: str, where: str) -> float:
    if field not in row:
        raise RecordError(f"{where}: missing field {field!r} (row has {sorted(row)})")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"{where}: field {field!r} must be a finite number, got {value!r}")
    return float(value)


def parse_record(row: Any, kind: str, where: str) -> Record:
    """Validate one row of the given kind; `where` is e.g. 'data.jsonl:12'."""
    if kind not in KINDS:
        raise RecordError(f"{where}: unknown record kind {kind!r}; expected one of {KINDS}")
    if not isinstance(row, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(row).__name__}")
    if kind == "demonstration":
        if "messages" in row and "prompt" not in row:
            prompt, completion = _split_messages(row, where)
            return Record(kind, prompt, completion=completion, where=where)
        return Record(kind, _check_text(row, "prompt", where), completion=_check_text(row, "completion", where),
                      where=where)
    prompt = _check_text(row, "prompt", where)
    if kind == "preference":
        return Record(kind, prompt, chosen=_check_text(row, "chosen", where),
                      rejected=_check_text(row, "rejected", where), where=where)
    completion = _check_text(row, "completion", where)
    if kind == "binary":
        label = row.get("label")
        if not isinstance(label, bool) and label not in (0, 1):
            raise RecordError(f"{where}: field 'label' must be true or false, got {label!r}")
        return Record(kind, prompt, completion=completion, target=float(label), where=where)
    score = _number(row, "score", where)
    if not 0.0 <= score <= 1.0:
        raise RecordError(f"{where}: field 'score' must lie in [0, 1] (rescale your scores), got {score!r}")
    return Record(kind, prompt, completion=completion, target=score, where=where)


def read_jsonl(path: str | Path):
    """Yield (where, row) for every non-blank line of a JSONL file, `where` being 'file:line';
    invalid JSON raises RecordError naming the line. Blank lines are the only thing skipped."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                raise RecordError(f"{where}: invalid JSON: {err.msg} at column {err.colno}") from None


def load_jsonl(path: str | Path, kind: str) -> list[Record]:
    """Read and validate every line of a JSONL file; blank lines are allowed, nothing else is skipped."""
    records = [parse_record(row, kind, where) for where, row in read_jsonl(path)]
    if not records:
        raise RecordError(f"{path}: no records")
    return records


def from_rows(rows, kind: str, name: str = "dataset") -> list[Record]:
    """Validate rows from any iterable of dicts, e.g. a `datasets.Dataset`."""
    return [parse_record(dict(row), kind, f"{name}[{i}]") for i, row in enumerate(rows)]
