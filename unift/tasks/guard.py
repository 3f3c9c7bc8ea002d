"""Limits for third-party verifiers that may evaluate model output.

Our own verifiers never evaluate model text (see `arith`). Two adapters hand it to code that
does: some reasoning-gym datasets score with `eval` or sympy's `parse_expr` (itself an eval),
and math-verify simplifies sympy expressions, where 9**9**9**9 or 99999999! never return. So the
adapters screen the text first and reject, with a reason:
- `power_problem`: power towers and exponents of 1000 or more ('9**9**9**9', '2^{10000}');
- `code_problem` (eval-based verifiers only): any non-ASCII character, '__', calls of anything
  but a few math functions, attribute access, keywords such as import/lambda, sequence
  repetition, factorials. Python reads identifiers in NFKC form, so 'ｅｘｅｃ' (full-width) is
  `exec` to `eval` but not to an ASCII pattern: callers `normalise` the text first (full-width
  digits become digits) and hand the normalised text on, and what is still non-ASCII is refused;
- `sympy_problem`: the same limits on already-parsed sympy expressions (math-verify's parse does
  not evaluate, its verify does).
`time_limit` bounds a call with SIGALRM (main thread only; elsewhere it is a no-op). Screens
reduce the risk; they are not a sandbox: reasoning-gym verifiers run in a separate, limited
process (`sandbox`), whose main thread applies `time_limit` and whose parent kills it when a
call overruns anyway.
"""

from __future__ import annotations

import re
import signal
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

MAX_EXPONENT_SCAN = 200  # characters read to delimit one exponent
SAFE_CALLS = frozenset(
    "sqrt exp log ln sin cos tan cot sec csc asin acos atan sinh cosh tanh Abs abs Rational "
    "floor ceiling".split()
)
_POW = re.compile(r"\*\*|\^")
_OPEN, _CLOSE = "([{", ")]}"
_KEYWORDS = re.compile(
    r"\b(lambda|import|exec|eval|open|getattr|setattr|delattr|globals|locals|vars|compile|"
    r"input|breakpoint|help|exit|quit|memoryview|bytearray|type|object|class|def|yield|await)\b"
)
_CALL = re.compile(r"([A-Za-z_]\w*|[)\]'\"])\s*\(")
_ATTRIBUTE = re.compile(r"[A-Za-z_)\]'\"]\s*\.\s*[A-Za-z_]")
_REPEAT = re.compile(r"[\]'\"]\s*\*|\*\s*[\['\"]")
_FACTORIAL = re.compile(r"[\w)\]}]\s*!(?!=)")


def power_problem(text: str) -> str | None:
    """Why `text` may hold an explosive power, or None."""
    for m in _POW.finditer(text):
        i = m.end()
        while i < len(text) and text[i] in " \t+-":
            i += 1
        if i < len(text) and text[i] in _OPEN:
            depth, j = 0, i
            while j < len(text) and j - i < MAX_EXPONENT_SCAN:
                depth += (text[j] in _OPEN) - (text[j] in _CLOSE)
                j += 1
                if depth == 0:
                    break
            if depth != 0:
                return "an exponent is too long"
        else:
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] in "._"):
                j += 1
        exponent = text[i:j]
        if _POW.search(exponent) or _POW.match(text[j:].lstrip()):
            return "power towers are not allowed"
        if re.search(r"\d{4,}", exponent):
            return "exponents of 1000 or more are not allowed"
    return None


def normalise(text: str) -> str:
    """`text` in NFKC form: the form Python's parser gives identifiers ('ｅｖａｌ' is eval)."""
    return unicodedata.normalize("NFKC", text)


def code_problem(text: str) -> str | None:
    """Why `text` is unsafe to give an eval-based verifier, or None. Only ASCII passes: the
    patterns below see what `eval` sees only when no character has another NFKC form."""
    if not text.isascii():
        char = next(c for c in text if not c.isascii())
        return f"the non-ASCII character {char!r} (U+{ord(char):04X}) is not allowed"
    if "__" in text:
        return "double underscores are not allowed"
    if m := _KEYWORDS.search(text):
        return f"{m.group(0)!r} is not allowed"
    for m in _CALL.finditer(text):
        if m.group(1) not in SAFE_CALLS:
            return f"calling {m.group(1)!r} is not allowed"
    if _ATTRIBUTE.search(text):
        return "attribute access is not allowed"
    if _REPEAT.search(text):
        return "repeating sequences is not allowed"
    if _FACTORIAL.search(text):
        return "factorials are not allowed"
    return power_problem(text)


def sympy_problem(exprs: list, max_nodes: int = 2000) -> str | None:
    """Why parsed sympy expressions are unsafe to simplify, or None."""
    import sympy

    nodes = 0
    for expr in exprs:
        if not isinstance(expr, sympy.Basic):
            continue
        for node in sympy.preorder_traversal(expr):
            nodes += 1
            if nodes > max_nodes:
                return "the answer is too large"
            if isinstance(node, sympy.Pow) and not node.exp.free_symbols:
                if any(
                    isinstance(a, sympy.Pow | sympy.Function)
                    for a in sympy.preorder_traversal(node.exp)
                ):
                    return "power towers are not allowed"
                if node.exp.is_Number and abs(node.exp) >= 1000:
                    return "exponents of 1000 or more are not allowed"
            if isinstance(node, sympy.Function):
                for arg in node.args:
                    if arg.free_symbols:
                        continue
                    if any(
                        isinstance(a, sympy.Pow | sympy.Function)
                        for a in sympy.preorder_traversal(arg)
                    ):
                        return "nested functions of large numbers are not allowed"
                    if arg.is_Number and abs(arg) > 1000:
                        return f"{type(node).__name__} of a number above 1000 is not allowed"
    return None


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the block after `seconds` (main thread on Unix; else no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def alarm(signum, frame):
        raise TimeoutError(f"the verifier took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
