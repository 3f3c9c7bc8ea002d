"""Safe exact arithmetic for verifiers (countdown, general_points) and a brute-force solver.

Model output is never eval'd. `parse` checks the characters (ASCII digits, + - * / ( ) and
spaces only), the length and the bracket depth *before* handing the text to `ast.parse`, then
accepts only integer literals, the four binary operators and (if asked) unary minus. `evaluate`
works in `fractions.Fraction` (8/(3-8/3) is exactly 24) and stops as soon as a numerator or
denominator exceeds `MAX_MAGNITUDE`. Every failure raises `ArithError` with a readable message,
so a verifier can turn it into feedback; pathological input fails in microseconds.

An expression is a tree of nested tuples: an int leaf, ("neg", x) or (op, left, right).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from fractions import Fraction
from functools import lru_cache

MAX_CHARS = 256  # input length
MAX_DEPTH = 24  # bracket depth, and depth of the expression tree
MAX_NODES = 64  # literals + operators
MAX_LITERAL = 10**6  # largest integer literal
MAX_MAGNITUDE = 10**15  # largest numerator/denominator of any intermediate result

ALLOWED_CHARS = frozenset("0123456789+-*/() \t\n")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}

Node = int | tuple


class ArithError(ValueError):
    """The text is not a safe arithmetic expression, or it cannot be evaluated."""


def parse(text: str, unary_minus: bool = False) -> Node:
    """Parse `text` into an expression tree; raise ArithError if it is not allowed."""
    if not isinstance(text, str):
        raise ArithError("the expression is not text")
    text = text.strip()
    if not text:
        raise ArithError("the expression is empty")
    if len(text) > MAX_CHARS:
        raise ArithError(f"the expression is longer than {MAX_CHARS} characters")
    bad = sorted({c for c in text if c not in ALLOWED_CHARS})
    if bad:
        raise ArithError(f"the expression contains illegal characters {''.join(bad)!r}")
    if "**" in text or "//" in text:
        raise ArithError("only + - * / are allowed")
    depth = 0
    for c in text:
        depth += (c == "(") - (c == ")")
        if depth > MAX_DEPTH:
            raise ArithError(f"brackets are nested deeper than {MAX_DEPTH}")
        if depth < 0:
            raise ArithError("unbalanced brackets")
    try:
        tree = ast.parse(text.replace("\n", " "), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ArithError(f"syntax error ({type(e).__name__})") from None
    count = [0]
    return _convert(tree, unary_minus, 0, count)


def _convert(node: ast.AST, unary_minus: bool, depth: int, count: list[int]) -> Node:
    count[0] += 1
    if depth > MAX_DEPTH or count[0] > MAX_NODES:
        raise ArithError("the expression is too large")
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if node.value > MAX_LITERAL:
            raise ArithError(f"the number {node.value} is larger than {MAX_LITERAL}")
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left = _convert(node.left, unary_minus, depth + 1, count)
        right = _convert(node.right, unary_minus, depth + 1, count)
        return (_OPS[type(node.op)], left, right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and unary_minus:
        return ("neg", _convert(node.operand, unary_minus, depth + 1, count))
    raise ArithError(f"{type(node).__name__} is not allowed; use integers, + - * / and brackets")


def _checked(x: Fraction | int) -> Fraction | int:
    x_num, x_den = (x, 1) if isinstance(x, int) else (x.numerator, x.denominator)
    if abs(x_num) > MAX_MAGNITUDE or x_den > MAX_MAGNITUDE:
        raise ArithError("an intermediate result is too large")
    return x


def apply(op: str, a: Fraction | int, b: Fraction | int) -> Fraction | int:
    """a op b, exact; integer division stays an int when it divides evenly."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ArithError("division by zero")
    q = Fraction(a) / Fraction(b)
    return q.numerator if q.denominator == 1 else q


def evaluate(node: Node) -> Fraction | int:
    """Exact value of an expression tree; raise ArithError on division by zero or overflow."""
    if isinstance(node, int):
        return node
    if node[0] == "neg":
        return -evaluate(node[1])
    op, left, right = node
    return _checked(apply(op, evaluate(left), evaluate(right)))


def literals(node: Node) -> list[int]:
    """The integer literals in the order they appear."""
    if isinstance(node, int):
        return [node]
    return [x for child in node[1:] for x in literals(child)]


def to_str(node: Node) -> str:
    """Render with the brackets the tree needs (and a few that help reading)."""
    if isinstance(node, int):
        return str(node)
    if node[0] == "neg":
        inner = to_str(node[1])
        return f"-{inner}" if isinstance(node[1], int) else f"-({inner})"
    op, left, right = node
    parts = []
    for side, child in (("l", left), ("r", right)):
        s = to_str(child)
        if isinstance(child, tuple) and child[0] != "neg":
            p, q = _PRECEDENCE[child[0]], _PRECEDENCE[op]
            if p < q or (side == "r" and p == q):
                s = f"({s})"
        parts.append(s)
    return f"{parts[0]} {op} {parts[1]}"


def fmt(x: Fraction | int, bracket: bool = False) -> str:
    """A value as the model should write it: 54, 8/3, or (8/3) as an operand."""
    if isinstance(x, int) or x.denominator == 1:
        return str(int(x)) if x >= 0 or not bracket else f"({int(x)})"
    return f"({x})" if bracket else str(x)


def steps(node: Node) -> list[str]:
    """One line per operation in evaluation order: ["19 + 35 = 54", "44 + 54 = 98"]."""
    out: list[str] = []

    def walk(n: Node) -> Fraction | int:
        if isinstance(n, int):
            return n
        if n[0] == "neg":
            v = walk(n[1])
            out.append(f"-{fmt(v, True)} = {fmt(-v)}")
            return -v
        a, b = walk(n[1]), walk(n[2])
        v = apply(n[0], a, b)
        out.append(f"{fmt(a, True)} {n[0]} {fmt(b, True)} = {fmt(v)}")
        return v

    walk(node)
    return out


# --- brute-force solver -------------------------------------------------------------------
# Dynamic programming over sub-multisets: `_reach(numbers)` maps every value an expression over
# exactly those numbers can take to one such expression. `solve` splits the numbers in two and
# looks up, for each value a of one side, the value b the other side must reach (t - a, t / a,
# ...), so the largest part is never enumerated in full.


def _combine(a, b, integers_only: bool) -> Iterator[tuple[str, bool, Fraction | int]]:
    """(op, swapped, value) for every way to combine values a and b."""
    yield "+", False, a + b
    yield "*", False, a * b
    for swapped, x, y in ((False, a, b), (True, b, a)):
        if not integers_only or x >= y:
            yield "-", swapped, x - y
        if y != 0 and (not integers_only or x % y == 0):
            yield "/", swapped, apply("/", x, y)


def _splits(numbers: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Unordered splits of a sorted multiset into two non-empty sorted parts."""
    n, out = len(numbers), set()
    for mask in range(1, 2 ** (n - 1)):  # the last number always goes right
        left = tuple(x for i, x in enumerate(numbers) if mask >> i & 1)
        right = tuple(x for i, x in enumerate(numbers) if not mask >> i & 1)
        out.add((left, right))
    return sorted(out)


@lru_cache(maxsize=8192)
def _reach_small(numbers: tuple[int, ...], integers_only: bool) -> dict:
    return _reach_uncached(numbers, integers_only)


def _reach(numbers: tuple[int, ...], integers_only: bool) -> dict:
    if len(numbers) <= 3:  # small parts recur across problems; big ones would fill the memory
        return _reach_small(numbers, integers_only)
    return _reach_uncached(numbers, integers_only)


def _reach_uncached(numbers: tuple[int, ...], integers_only: bool) -> dict:
    if len(numbers) == 1:
        return {numbers[0]: numbers[0]}
    out: dict = {}
    for left, right in _splits(numbers):
        right_reach = _reach(right, integers_only)
        for a, ta in _reach(left, integers_only).items():
            for b, tb in right_reach.items():
                for op, swapped, v in _combine(a, b, integers_only):
                    if v not in out and abs(v) <= MAX_MAGNITUDE:
                        out[v] = (op, tb, ta) if swapped else (op, ta, tb)
    return out


def _needed(a, t) -> Iterator[tuple[object, str, bool]]:
    """(b, op, swapped) such that `a op b` (or `b op a` if swapped) equals t."""
    yield t - a, "+", False
    yield a - t, "-", False
    yield t + a, "-", True
    if a != 0:
        yield apply("/", t, a), "*", False
        yield t * a, "/", True
    if t != 0 and a != 0:
        yield apply("/", a, t), "/", False


@lru_cache(maxsize=65536)
def _solve_sorted(numbers: tuple[int, ...], target: int) -> Node | None:
    if len(numbers) == 1:
        return numbers[0] if numbers[0] == target else None
    # Non-negative integer intermediates first: the solutions people write. Then any rational.
    for integers_only in (True, False):
        for left, right in _splits(numbers):
            right_reach = _reach(right, integers_only)
            for a, ta in _reach(left, integers_only).items():
                for b, op, swapped in _needed(a, target):
                    tb = right_reach.get(b)
                    if tb is not None and (b != 0 or op != "/"):
                        return (op, tb, ta) if swapped else (op, ta, tb)
    return None


def solve(numbers: list[int], target: int) -> Node | None:
    """An expression using every number exactly once that equals `target`, or None."""
    return _solve_sorted(tuple(sorted(numbers)), target)
