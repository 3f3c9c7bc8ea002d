import random

import pytest

from unift.config import HintSpec
from unift.rollout.hints import (
    cosine_p,
    cut_points,
    hint_p,
    make_hint,
    sample_hint_length,
)
from unift.train.run import hint_schedule


def schedule(**settings):
    """The library's HintSchedule of the config's `rollout.hint` settings."""
    return hint_schedule(HintSpec(**settings))


def test_cut_points_follow_the_rounding_rule():
    # 7 pieces, L = 5: num = 5, c_i = round(i/5 * 7) = 0, 1.4->1, 2.8->3, 4.2->4, 5.6->6, then 7
    assert cut_points(7, 5) == [0, 1, 3, 4, 6, 7]
    assert cut_points(3, 5) == [0, 1, 2, 3]  # num = min(L, 3) = 3
    assert cut_points(0, 5) == [0]


def test_cosine_schedule_values():
    # eq. B.1 of the reference code: p(t) = 0.05 + 0.45 (1 + cos(pi (t + 1) / 10)) for 0-based t
    # t=0 -> 0.05 + 0.45 (1 + cos(0.1 pi)) = 0.05 + 0.45 * 1.951057 = 0.927975
    assert cosine_p(0, 0.05, 0.95, 10) == pytest.approx(0.927975, abs=1e-6)
    # t=4 -> cos(pi / 2) = 0: 0.5, the midpoint, on the 5th of 10 hinted steps
    assert cosine_p(4, 0.05, 0.95, 10) == pytest.approx(0.5)
    # t=9, the last hinted step -> cos(pi) = -1: exactly p_low
    assert cosine_p(9, 0.05, 0.95, 10) == pytest.approx(0.05)
    assert cosine_p(10, 0.05, 0.95, 10) == 0.0


def test_binomial_draws_match_p_and_stop_at_T_hint():
    spec = schedule(schedule="cosine", T_hint=0.5)  # 50 of 100 steps
    rng = random.Random(0)
    ks = [sample_hint_length(spec, 25, 100, 5, rng) for _ in range(4000)]
    assert sum(ks) / len(ks) / 5 == pytest.approx(hint_p(spec, 25, 100), abs=0.02)
    assert all(sample_hint_length(spec, t, 100, 5, rng) == 0 for t in range(50, 100))


def test_make_hint_is_a_prefix_of_the_solution():
    pieces = ["a\n", "b\n", "c\n"]
    assert make_hint(pieces, 0, 5) == ""
    assert make_hint(pieces, 2, 5) == "a\nb\n"
    assert make_hint(pieces, 3, 5) == "a\nb\nc\n"


def test_other_schedules():
    assert hint_p(schedule(schedule="full"), 99, 100) == 1.0
    assert hint_p(schedule(schedule="none"), 0, 100) == 0.0
    stage = schedule(schedule="stage", T_hint=60, stages=3)
    assert [hint_p(stage, t, 100) for t in (0, 19, 20, 40, 59, 60)] == pytest.approx([1, 1, 2 / 3, 1 / 3, 1 / 3, 0])
    rng = random.Random(1)
    ks = {sample_hint_length(schedule(schedule="uniform"), 90, 100, 4, rng) for _ in range(200)}
    assert ks == {0, 1, 2, 3, 4}
