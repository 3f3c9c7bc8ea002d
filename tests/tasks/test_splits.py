"""Three disjoint splits decided by the problem alone: train, val (choosing settings), test."""

import hashlib

import pytest

from unift import tasks
from unift.tasks.base import VAL_FRACTION, split_of


def _h(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def test_split_of_by_hash_ranges():
    keys = [f"k{i}" for i in range(2000)]
    for key in keys:
        h = _h(key)
        expected = "test" if h < 0.1 else "val" if h >= 1 - VAL_FRACTION else "train"
        assert split_of(key, 0.1) == expected
    shares = {s: sum(split_of(k, 0.1) == s for k in keys) / len(keys) for s in ("train", "val", "test")}
    assert shares["val"] == pytest.approx(VAL_FRACTION, abs=0.015)
    assert shares["test"] == pytest.approx(0.1, abs=0.02)


@pytest.mark.parametrize("name", ["countdown", "knights_knaves", "general_points"])
def test_val_problems_are_neither_train_nor_test(name):
    task = tasks.get(name)
    key = task.split_key
    train = {key(p) for p in task.problems(300, seed=0, split="train")}
    val_problems = task.problems(40, seed=0, split="val")
    val = {key(p) for p in val_problems}
    test = {key(p) for p in task.problems(40, seed=0, split="test")}
    assert len(val_problems) == 40  # (general_points keys merge card orders: fewer distinct keys)
    assert not val & train and not val & test and not test & train
    with pytest.raises(ValueError, match="split must be one of"):
        task.problems(2, split="dev")
