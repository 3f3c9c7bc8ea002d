"""Safe arithmetic: what parses, what is refused, exact values, and the solver."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unift.tasks import arith

from .helpers import brute_solvable


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("44 + (19 + 35)", 98),
        ("8/(3-8/3)", 24),
        ("(1 + 2) / 3", 1),
        ("7 / 2", Fraction(7, 2)),
        ("2*3-4/8", Fraction(11, 2)),
        ("((((5))))", 5),
        (" 6 *\n 4 ", 24),
    ],
)
def test_exact_values(text, value):
    assert arith.evaluate(arith.parse(text)) == value


def test_unary_minus_only_when_allowed():
    assert arith.evaluate(arith.parse("-26 + 45", unary_minus=True)) == 19
    with pytest.raises(arith.ArithError):
        arith.parse("-26 + 45")
    with pytest.raises(arith.ArithError):
        arith.parse("+26", unary_minus=True)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("9**9**9**9", "only"),
        ("2 ^ 3", "illegal"),
        ("7 // 2", "only"),
        ("٣ + ٤", "illegal"),
        ("__import__('os').system('ls')", "illegal"),
        ("(" * 10_000 + "1" + ")" * 10_000, "longer"),
        ("(" * 30 + "1" + ")" * 30, "nested"),
        ("1/0", "division by zero"),
        ("5 / (3 - 3)", "division by zero"),
        ("1e9", "illegal"),
        ("1.5 + 2", "illegal"),
        ("1_000", "illegal"),
        ("0x10", "illegal"),
        ("999999 * 999999 * 999999", "too large"),
        ("1234567", "larger than"),
        ("", "empty"),
        ("(1 + 2", "syntax"),
        ("1 2", "syntax"),
        ("(1)(2)", "not allowed"),
        ("01 + 2", "syntax"),
        (")1(", "unbalanced"),
        ("1" + "+1" * 100, "too large"),
    ],
)
def test_refusals_explain_themselves(text, why):
    with pytest.raises(arith.ArithError, match=why):
        arith.evaluate(arith.parse(text))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.text(alphabet="0123456789+-*/() ", max_size=60))
def test_parse_and_evaluate_only_raise_arith_error(text):
    try:
        value = arith.evaluate(arith.parse(text, unary_minus=True))
    except arith.ArithError:
        return
    assert isinstance(value, int | Fraction)


def _tree(draw_ints, depth):
    return st.recursive(
        draw_ints, lambda kids: st.tuples(st.sampled_from("+-*/"), kids, kids), max_leaves=depth
    )


@settings(max_examples=200, deadline=None)
@given(_tree(st.integers(0, 99), 6))
def test_to_str_round_trips(tree):
    try:
        value = arith.evaluate(tree)
    except arith.ArithError:
        return
    again = arith.parse(arith.to_str(tree))
    assert arith.evaluate(again) == value
    assert arith.literals(again) == arith.literals(tree)


def test_steps_show_each_operation():
    tree = arith.parse("8 / (3 - 8 / 3)")
    assert arith.steps(tree) == ["8 / 3 = 8/3", "3 - (8/3) = 1/3", "8 / (1/3) = 24"]
    assert arith.steps(arith.parse("44 + (19 + 35)")) == ["19 + 35 = 54", "44 + 54 = 98"]


def test_solver_agrees_with_naive_enumeration():
    """On random 3-4 number problems (solvable or not) the solver finds an answer exactly when
    a naive enumeration of every expression says one exists, and its answer is right."""
    rng = random.Random(0)
    for _ in range(150):
        numbers = [rng.randint(1, 13) for _ in range(rng.choice((3, 4)))]
        target = rng.randint(1, 60)
        tree = arith.solve(numbers, target)
        assert (tree is not None) == brute_solvable(numbers, target), (numbers, target)
        if tree is not None:
            assert arith.evaluate(tree) == target and sorted(arith.literals(tree)) == sorted(
                numbers
            )


def test_solver_needs_fractions_sometimes():
    assert arith.evaluate(arith.solve([3, 3, 8, 8], 24)) == 24
    assert arith.solve([1, 1, 1, 1], 24) is None
