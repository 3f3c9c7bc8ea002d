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

`TimeLimit` is the hard limit on in-process verifiers (every `Task.score`, see `base`): the
same alarm, but it raises `TimeLimitExceeded`, which is not an `Exception` (a verifier's
`except Exception` cannot swallow it), it re-arms an enclosing timer with the time that timer
has left, and it records whether it fired.
"""

from __future__ import annotations

import re
import signal
import threading
import time
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
# Runs scanned after a power operator (each within the stretch up to the next operator)
_SIGNS, _NAME, _SPACES = re.compile(r"[ \t+-]*"), re.compile(r"[\w.]*"), re.compile(r"\s*")
_BIG = re.compile(r"\d{4,}")
_KEYWORDS = re.compile(
    r"\b(lambda|import|exec|eval|open|getattr|setattr|delattr|globals|locals|vars|compile|"
    r"input|breakpoint|help|exit|quit|memoryview|bytearray|type|object|class|def|yield|await)\b"
)
# A run of word characters is read once, from its start ((?<!\w)); the called name is the run
# without its leading digits. `[A-Za-z_]\w*` tried again at every position of a long run that
# was not followed by "(" (quadratic), and found the same names.
_CALL = re.compile(r"((?<!\w)\w+|[)\]'\"])\s*\(")
_ATTRIBUTE = re.compile(r"[A-Za-z_)\]'\"]\s*\.\s*[A-Za-z_]")
_REPEAT = re.compile(r"[\]'\"]\s*\*|\*\s*[\['\"]")
_FACTORIAL = re.compile(r"[\w)\]}]\s*!(?!=)")


def power_problem(text: str) -> str | None:
    """Why `text` may hold an explosive power, or None."""
    for m in _POW.finditer(text):
        i = _SIGNS.match(text, m.end()).end()
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
            j = _NAME.match(text, i).end()
        exponent = text[i:j]
        k = _SPACES.match(text, j).end()  # not text[j:].lstrip(): a copy per operator
        if _POW.search(exponent) or _POW.match(text, k):
            return "power towers are not allowed"
        if _BIG.search(exponent):
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
        name = m.group(1).lstrip("0123456789")  # "2(3)" calls nothing
        if name and name not in SAFE_CALLS:
            return f"calling {name!r} is not allowed"
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


class TimeLimitExceeded(BaseException):
    """A `TimeLimit` block overran. A BaseException, like KeyboardInterrupt, so that a
    verifier's `except Exception` does not swallow it; `limit` is the block's `TimeLimit`."""

    def __init__(self, limit: TimeLimit):
        super().__init__(f"the verifier took longer than {limit.seconds} s")
        self.limit = limit


class TimeLimit:
    """`with TimeLimit(seconds):` raises TimeLimitExceeded in the block after `seconds`.

    SIGALRM through ITIMER_REAL, so only in the main thread of the main interpreter on Unix; in
    any other thread, with `seconds` None or <= 0, or inside a block whose own timer (an outer
    limit) expires first, the block runs without an alarm of its own (`armed` False). On exit
    the timer is cleared, the previous SIGALRM handler restored and an outer timer re-armed
    with the time it has left. `expired` tells whether the alarm fired (a verifier with a bare
    `except:` may have caught it). Python runs the handler between bytecodes, also inside a
    long regex match, not inside other C calls.
    """

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.armed = False
        self.expired = False
        self._previous = None
        self._outer = (0.0, 0.0)
        self._start = 0.0

    def _alarm(self, signum, frame) -> None:
        if self.armed:
            self.expired = True
            raise TimeLimitExceeded(self)

    def __enter__(self) -> TimeLimit:
        if (
            not self.seconds
            or self.seconds <= 0
            or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()
        ):
            return self
        outer = signal.getitimer(signal.ITIMER_REAL)
        if 0 < outer[0] <= self.seconds:  # an enclosing timer fires first: it stays in charge
            return self
        try:
            self._previous = signal.signal(signal.SIGALRM, self._alarm)
        except ValueError:  # not the main interpreter
            return self
        self._outer, self._start, self.armed = outer, time.monotonic(), True
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        """Disarm and restore (idempotent). The alarm can fire at the very end of the block,
        before `__exit__` runs its first line: the caller that catches TimeLimitExceeded calls
        `close` again, and the handler stops raising as soon as `armed` is False."""
        if not self.armed:
            return
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        # None: the previous handler was not set from Python; the default is the best guess
        signal.signal(signal.SIGALRM, signal.SIG_DFL if self._previous is None else self._previous)
        delay, interval = self._outer
        if delay:
            left = delay - (time.monotonic() - self._start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), interval)
