"""Records: the four offline kinds in TRL's column conventions, validated row by row.

    demonstration  {"prompt", "completion"}  or  {"messages": [{"role", "content"}, ...]}  or  {"text"}
    preference     {"prompt", "chosen", "rejected"}  or  {"chosen", "rejected"} (implicit prompt)
    binary         {"prompt", "completion", "label": true | false}
    score          {"prompt", "completion", "score": float in [0, 1]}

Prompts and completions are plain strings (used as raw text) or lists of chat messages (rendered
with the model's chat template). `text` is plain language modelling: the loss covers every token
(TRL's SFTTrainer on a `text` column). `messages` train every assistant turn after the first
non-assistant message, or only the last with `assistant_turns="last"` (`ASSISTANT_TURNS`); the
record's prompt is then the conversation before the first trained turn and its completion the
rest, other roles included (`unift.data.tokenize` masks them). A preference row without `prompt`
takes the longest common prefix of `chosen` and `rejected` as its prompt (TRL's `extract_prompt`).
Every row is checked when loaded; a bad row raises `RecordError` naming the file, the line (or the
row of a dataset) and the field. Nothing is skipped silently.

What a row must be, beyond its columns: UTF-8 text without lone surrogates; message roles among
`ROLES`, and only `assistant` in a completion; no empty prompt or completion; `messages` or
`prompt`, not both; a preference pair whose chosen and rejected differ; at most
`max_record_chars` characters of text (bounded memory: tokenising grows with the text).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("demonstration", "preference", "binary", "score")
ROLES = ("system", "user", "assistant", "tool")
COMPLETION_FIELDS = ("completion", "chosen", "rejected")
ASSISTANT_TURNS = ("all", "last")
"""Which assistant turns of a `messages` record carry the loss (`SourceConfig.assistant_turns`)."""
MAX_RECORD_CHARS = 200_000
"""Default cap on a record's characters of text (`RunConfig.max_record_chars`)."""
_SURROGATE = re.compile("[\ud800-\udfff]")

Text = str | list[dict]  # raw text, or chat messages


class RecordError(ValueError):
    pass


def short(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters, so that a message stays one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int over sys.get_int_max_str_digits() digits
        text = f"<an integer of over {sys.get_int_max_str_digits()} digits>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _check_string(value: str, field: str, where: str) -> str:
    """Text a tokenizer can encode: a lone surrogate (JSON allows "\\ud800") is not Unicode."""
    if (bad := _SURROGATE.search(value)) is not None:
        raise RecordError(f"{where}: field {field!r}: a lone surrogate U+{ord(bad.group()):04X} at character "
                          f"{bad.start()} is not valid Unicode text")
    return value


def _check_text(row: dict, field: str, where: str, roles: tuple[str, ...] = ROLES) -> Text:
    if field not in row:
        raise RecordError(f"{where}: missing field {field!r} (row has {short(sorted(row))})")
    value = row[field]
    if isinstance(value, str):
        if not value:
            raise RecordError(f"{where}: field {field!r} is empty")
        return _check_string(value, field, where)
    if isinstance(value, list) and value:
        for i, msg in enumerate(value):
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), str) or not isinstance(
                msg.get("role"), str
            ):
                raise RecordError(
                    f"{where}: field {field!r}[{i}]: a chat message needs string 'role' and 'content', got {short(msg)}"
                )
            if msg["role"] not in roles:
                expected = "'assistant' (a completion is the model's reply)" if roles == ("assistant",) \
                    else f"one of {', '.join(roles)}"
                raise RecordError(f"{where}: field {field!r}[{i}]: role {short(msg['role'])} is not {expected}")
            _check_string(msg["content"], f"{field}[{i}].content", where)
        if field in COMPLETION_FIELDS and not any(m["content"] for m in value):
            raise RecordError(f"{where}: field {field!r} is empty")
        return value
    raise RecordError(f"{where}: field {field!r} must be a string or a non-empty list of chat messages, "
                      f"got {short(value)}")


def _split_messages(row: dict, where: str, turns: str) -> tuple[list[dict], list[dict]]:
    """(prompt, completion): the completion opens at the first trained assistant turn, the first
    after a non-assistant message (turns="all") or the last one (turns="last")."""
    messages = _check_text(row, "messages", where)
    if isinstance(messages, str):
        raise RecordError(f"{where}: field 'messages' must be a list of chat messages")
    if messages[-1]["role"] != "assistant":
        raise RecordError(f"{where}: field 'messages': the last message must be the assistant's (the completion)")
    if len(messages) < 2:
        raise RecordError(f"{where}: field 'messages': needs a prompt before the assistant message")
    if not messages[-1]["content"]:
        raise RecordError(f"{where}: field 'messages': the assistant's message (the completion) is empty")
    if turns == "last":
        start = len(messages) - 1
    else:  # an opening assistant message (a greeting) has no prompt to answer: it stays context
        start = next(i for i, m in enumerate(messages) if i > 0 and m["role"] == "assistant")
    return messages[:start], messages[start:]


def _number(row: dict, field: str, where: str) -> float:
    if field not in row:
        raise RecordError(f"{where}: missing field {field!r} (row has {short(sorted(row))})")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{where}: field {field!r} must be a finite number, got {short(value)}")
    try:
        number = float(value)
    except OverflowError:  # JSON integers have no size limit: 1e400 written out in digits
        digits = int(abs(value).bit_length() * math.log10(2)) + 1
        raise RecordError(f"{where}: field {field!r} must be a finite number, got an integer of about "
                          f"{digits} digits") from None
    if not math.isfinite(number):
        raise RecordError(f"{where}: field {field!r} must be a finite number, got {short(value)}")
    return number


def _chars(text: Text | None) -> int:
    if text is None:
        return 0
    return len(text) if isinstance(text, str) else sum(len(m["content"]) for m in text)


def parse_record(row: Any, kind: str, where: str, max_chars: int | None = MAX_RECORD_CHARS,
                 assistant_turns: str = "all") -> Record:
    """Validate one row of the given kind; `where` is e.g. 'data.jsonl:12'. A record of more than
    `max_chars` characters of text is refused (None: no cap). `assistant_turns`: which turns of a
    `messages` row are trained (`ASSISTANT_TURNS`)."""
    if kind not in KINDS:
        raise RecordError(f"{where}: unknown record kind {kind!r}; expected one of {KINDS}")
    if assistant_turns not in ASSISTANT_TURNS:
        raise ValueError(f"assistant_turns: expected one of {', '.join(ASSISTANT_TURNS)}, got {short(assistant_turns)}")
    if not isinstance(row, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(row).__name__}")
    record = _parse(row, kind, where, assistant_turns)
    size = sum(_chars(t) for t in (record.prompt, record.completion, record.chosen, record.rejected))
    if max_chars is not None and size > max_chars:
        raise RecordError(f"{where}: the record has {size:,} characters of text, over max_record_chars "
                          f"({max_chars:,}); shorten it or raise max_record_chars")
    return record


def _parse(row: dict, kind: str, where: str, turns: str) -> Record:
    if "messages" in row and ("prompt" in row or "completion" in row):
        raise RecordError(f"{where}: the row has both 'messages' and 'prompt'/'completion'; use one or the other")
    if kind == "demonstration":
        if "text" in row:
            return Record(kind, "", completion=_text(row, where), where=where)
        if "messages" in row:
            prompt, completion = _split_messages(row, where, turns)
            return Record(kind, prompt, completion=completion, where=where)
        return Record(kind, _check_text(row, "prompt", where),
                      completion=_check_text(row, "completion", where, ("assistant",)), where=where)
    if kind == "preference":
        if "prompt" not in row and "chosen" in row and "rejected" in row:
            prompt, chosen, rejected = _implicit_prompt(row, where)
        else:
            prompt = _check_text(row, "prompt", where)
            chosen = _check_text(row, "chosen", where, ("assistant",))
            rejected = _check_text(row, "rejected", where, ("assistant",))
            _check_differ(chosen, rejected, where)
        return Record(kind, prompt, chosen=chosen, rejected=rejected, where=where)
    prompt = _check_text(row, "prompt", where)
    completion = _check_text(row, "completion", where, ("assistant",))
    if kind == "binary":
        label = row.get("label")
        if not isinstance(label, bool) and label not in (0, 1):
            raise RecordError(f"{where}: field 'label' must be true or false, got {short(label)}")
        return Record(kind, prompt, completion=completion, target=float(label), where=where)
    score = _number(row, "score", where)
    if not 0.0 <= score <= 1.0:
        raise RecordError(f"{where}: field 'score' must lie in [0, 1] (rescale your scores), got {score!r}")
    return Record(kind, prompt, completion=completion, target=score, where=where)


def _text(row: dict, where: str) -> str:
    """A `text` row: plain language modelling, the loss on every token (prompt "")."""
    others = [f for f in ("messages", "prompt", "completion") if f in row]
    if others:
        raise RecordError(f"{where}: the row has both 'text' and {short(others)}; use one or the other")
    text = _check_text(row, "text", where)
    if not isinstance(text, str):
        raise RecordError(f"{where}: field 'text' must be a string (chat data goes in 'messages')")
    return text


def _check_differ(chosen: Text, rejected: Text, where: str) -> None:
    if chosen == rejected:  # a data error, not a tie to learn from: see docs/RELIABILITY.md
        raise RecordError(f"{where}: fields 'chosen' and 'rejected' are identical: the pair states no "
                          "preference and its pairwise loss has zero gradient; drop the row")


def _shared_prefix(a: Text, b: Text) -> int:
    """Length of the longest common prefix (characters, or messages); a shared prefix of text that
    ends in a space leaves the space to the completions, as TRL's `extract_prompt` does."""
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return n - 1 if isinstance(a, str) and n and a[n - 1] == " " else n


def _implicit_prompt(row: dict, where: str) -> tuple[Text, Text, Text]:
    """(prompt, chosen, rejected) of a preference row without `prompt`: the prompt is what
    `chosen` and `rejected` share from their start; the rest of each must be the assistant's."""
    chosen, rejected = _check_text(row, "chosen", where), _check_text(row, "rejected", where)
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise RecordError(f"{where}: fields 'chosen' and 'rejected' must both be text or both chat messages "
                          "to share an implicit prompt")
    _check_differ(chosen, rejected, where)
    n = _shared_prefix(chosen, rejected)
    if n == 0:
        raise RecordError(f"{where}: missing field 'prompt', and 'chosen' and 'rejected' share no opening "
                          f"{'text' if isinstance(chosen, str) else 'message'} to serve as the implicit prompt")
    unit = "characters" if isinstance(chosen, str) else "messages"
    for field, value in (("chosen", chosen), ("rejected", rejected)):
        rest = value[n:]
        if not rest or isinstance(rest, list) and not any(m["content"] for m in rest):
            raise RecordError(f"{where}: field {field!r} has no reply after the implicit prompt (its first {n} "
                              f"{unit}, shared with the other field)")
        for i, msg in enumerate(rest if isinstance(rest, list) else []):
            if msg["role"] != "assistant":
                raise RecordError(f"{where}: field {field!r}[{n + i}]: role {short(msg['role'])} after the implicit "
                                  f"prompt (the first {n} messages, shared with the other field); the reply must be "
                                  "the assistant's")
    return chosen[:n], chosen[n:], rejected[n:]


def read_jsonl(path: str | Path, max_chars: int | None = MAX_RECORD_CHARS):
    """Yield (where, row) for every non-blank line of a JSONL file, `where` being 'file:line'.
    Invalid UTF-8 or JSON raises RecordError naming the line. Blank lines are the only thing
    skipped. Memory stays bounded: a line is read only up to 6 * max_chars + 4096 characters
    (room for JSON's escapes around max_chars of text; None: no limit), a longer one is refused."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: {'is a directory, not a JSONL file' if path.is_dir() else 'no such file'}")
    line_chars = None if max_chars is None else 6 * max_chars + 4096
    limit = -1 if line_chars is None else 4 * line_chars + 2  # UTF-8: at most 4 bytes a character
    with path.open("rb") as f:
        for lineno in range(1, sys.maxsize):
            raw = f.readline(limit)
            if not raw:
                return
            where = f"{path}:{lineno}"
            if limit > 0 and len(raw) == limit and not raw.endswith(b"\n"):
                raise RecordError(f"{where}: the line is over {line_chars:,} characters; max_record_chars "
                                  f"({max_chars:,}) bounds a record's text")
            text = _decode(raw, where, line_chars, first=lineno == 1)
            if text.strip():
                yield where, _json(text, where)


def _decode(raw: bytes, where: str, line_chars: int | None, first: bool) -> str:
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")  # a byte-order mark may open the file
    except UnicodeDecodeError as err:
        raise RecordError(f"{where}: not UTF-8 text: byte {err.start + 1} of the line is "
                          f"{raw[err.start:err.start + 1]!r}") from None
    if line_chars is not None and len(text) > line_chars:
        raise RecordError(f"{where}: the line is over {line_chars:,} characters")
    return text


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"{where}: invalid JSON: {err.msg} at column {err.colno}") from None
    except ValueError as err:  # e.g. an integer over sys.get_int_max_str_digits() digits
        raise RecordError(f"{where}: invalid JSON: {str(err).split(';')[0]}") from None
    except RecursionError:
        raise RecordError(f"{where}: invalid JSON: nested too deeply") from None


def load_jsonl(path: str | Path, kind: str, max_chars: int | None = MAX_RECORD_CHARS,
               assistant_turns: str = "all") -> list[Record]:
    """Read and validate every line of a JSONL file; blank lines are allowed, nothing else is skipped."""
    records = [parse_record(row, kind, where, max_chars, assistant_turns) for where, row in read_jsonl(path, max_chars)]
    if not records:
        raise RecordError(f"{path}: no records")
    return records


def from_rows(rows, kind: str, name: str = "dataset", max_chars: int | None = MAX_RECORD_CHARS,
              assistant_turns: str = "all") -> list[Record]:
    """Validate rows from any iterable of dicts, e.g. a `datasets.Dataset`; an error names
    '<name>, row <i>' (i counted from 0, as `dataset[i]`). Nulls are dropped first (`without_nulls`)."""
    return [parse_record(without_nulls(dict(row)), kind, f"{name}, row {i}", max_chars, assistant_turns)
            for i, row in enumerate(rows)]


def without_nulls(row: dict) -> dict:
    """The row without None values, at the top and inside chat messages. Arrow gives every row
    all the columns of its table (and every message all the keys of any message): the ones a row
    lacks come back None, and dropping them lets the checks report a missing field as missing."""
    out = {}
    for key, value in row.items():
        if isinstance(value, list):
            value = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in value]
        if value is not None:
            out[key] = value
    return out
