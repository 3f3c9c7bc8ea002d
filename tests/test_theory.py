"""Tests for the search-tree simulator (unift.theory): hand-worked updates, then the separation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unift.theory import main
from unift.theory.cli import parse_ints
from unift.theory.simulate import SimConfig, hint_lengths, train_until_solved
from unift.theory.tree import (
    Tree,
    group_advantages,
    mirror_update,
    pass_at_1,
    rollout,
    uniform_policy,
)


def test_path_indexing():
    # B=3, H=2, leaf 7 = node 2 at level 1 (7 // 3), reached by actions (2, 1)
    tree = Tree(2, 3, np.array([7]))
    assert tree.path_nodes(7).tolist() == [0, 2]
    assert tree.a_star.tolist() == [2, 1]
    assert tree.reward(np.array([7, 0, 8])).tolist() == [1.0, 0.1, 0.1]


def test_group_advantages_by_hand():
    # group 1: mean (1 + 0.1*3)/4 = 0.325 -> [0.675, -0.225, -0.225, -0.225]; group 2: all equal -> 0
    r = np.array([1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    np.testing.assert_allclose(
        group_advantages(r, 4), [0.675, -0.225, -0.225, -0.225, 0, 0, 0, 0], atol=1e-12
    )


def _one_step(tree, logp, actions, hint, adv, eta, beta):
    nodes = np.zeros((len(hint), tree.height), dtype=np.int64)
    for h in range(1, tree.height):
        nodes[:, h] = nodes[:, h - 1] * tree.branching + actions[:, h - 1]
    mirror_update(logp, tree, nodes, actions, hint, adv, eta, beta)
    return [np.exp(x) for x in logp]


def test_mirror_update_explored_state_by_hand():
    # H=1, B=3, pi uniform; one rollout took a=1 with A=0.6; eta=1, beta=0.5.
    # A_hat = [0, 0.6/(1/3), 0] = [0, 1.8, 0]; pi_ref = pi_{t-1} = uniform, so
    # pi_t ∝ exp((A_hat + 0.5 log(1/3) + log(1/3)) / 1.5) ∝ exp([0, 1.2, 0])
    # = [1, e^1.2, 1] / (2 + e^1.2) = [0.187966, 0.624068, 0.187966]
    tree = Tree(1, 3, np.array([2]))
    pi = _one_step(
        tree,
        uniform_policy(tree),
        np.array([[1]]),
        np.array([0]),
        np.array([0.6]),
        eta=1.0,
        beta=0.5,
    )
    np.testing.assert_allclose(pi[0][0], [0.187966, 0.624068, 0.187966], atol=1e-6)


def test_mirror_update_kl_pulls_to_reference():
    # Zero advantage, eta*beta = 1: pi_t ∝ exp((log pi_ref + log pi_{t-1}) / 2) = sqrt(pi_ref pi)
    # pi_{t-1} = [0.5, 0.25, 0.25] -> ∝ [0.7071, 0.5, 0.5] -> [0.414214, 0.292893, 0.292893]
    tree = Tree(1, 3, np.array([2]))
    logp = [np.log([[0.5, 0.25, 0.25]])]
    pi = _one_step(tree, logp, np.array([[0]]), np.array([0]), np.array([0.0]), eta=2.0, beta=0.5)
    np.testing.assert_allclose(pi[0][0], [0.414214, 0.292893, 0.292893], atol=1e-6)


def test_mirror_update_hinted_prefix_by_hand():
    # H=2, B=2, correct leaf 3: a* = (1, 1). One rollout with hint l=1: the root is hinted.
    # Root: gradient of beta*log pi(a*) is beta/pi(a*) = 0.5/0.5 = 1 on a*, no KL term:
    # pi_t ∝ pi_{t-1} exp(eta*1[a=a*]) = [1, e]/(1+e) = [0.268941, 0.731059].
    # Level 1 (node 1 = s*_1) was explored with A=0 from a uniform pi: stays uniform.
    tree = Tree(2, 2, np.array([3]))
    pi = _one_step(
        tree,
        uniform_policy(tree),
        np.array([[1, 0]]),
        np.array([1]),
        np.array([0.0]),
        eta=1.0,
        beta=0.5,
    )
    np.testing.assert_allclose(pi[0][0], [0.268941, 0.731059], atol=1e-6)
    np.testing.assert_allclose(pi[1], [[0.5, 0.5], [0.5, 0.5]], atol=1e-12)


def test_mirror_update_mixed_state_averages_per_rollout():
    # The root is hinted for rollout 1 (l=1) and explored by rollout 2 (l=0, a=0, A=-0.4).
    # grad = ([0, 0.5/0.5] + [-0.4/0.5, 0]) / 2 = [-0.4, 0.5]; KL weight = beta * 1/2 = 0.25;
    # pi_t ∝ exp(grad / 1.25) = softmax([-0.32, 0.4]) -> pi(a*) = 1/(1+e^-0.72) = 0.672607
    tree = Tree(2, 2, np.array([3]))
    pi = _one_step(
        tree,
        uniform_policy(tree),
        np.array([[1, 0], [0, 0]]),
        np.array([1, 0]),
        np.array([0.0, -0.4]),
        eta=1.0,
        beta=0.5,
    )
    assert pi[0][0][1] == pytest.approx(0.672607, abs=1e-6)


def test_rollout_follows_hint_then_policy():
    rng = np.random.default_rng(0)
    tree = Tree(3, 2, np.array([5]))  # a* = (1, 0, 1), s* = (0, 1, 2)
    logp = uniform_policy(tree)
    nodes, actions, leaves = rollout(logp, tree, np.full(50, 3), rng)
    assert (leaves == 5).all()  # full hint: every rollout lands on the correct leaf
    nodes, actions, leaves = rollout(logp, tree, np.full(4000, 2), rng)
    assert (nodes[:, 2] == 2).all()  # starts at s*_2
    assert set(leaves.tolist()) == {4, 5}
    assert abs((leaves == 5).mean() - 0.5) < 0.05  # uniform pi at the last level
    logp[2][2] = np.log([1e-12, 1 - 1e-12])
    _, _, leaves = rollout(logp, tree, np.full(100, 2), rng)
    assert (leaves == 5).all()


def test_pass_at_1_is_probability_of_a_correct_leaf():
    tree = Tree(3, 2, np.array([5, 6]))
    logp = uniform_policy(tree)
    assert pass_at_1(logp, tree) == pytest.approx(2 / 8)  # K / B^H under pi_ref
    for h, (node, a) in enumerate(zip(tree.path_nodes(5), tree.path_actions(5), strict=True)):
        logp[h][node] = np.log(np.where(np.arange(2) == a, 0.9, 0.1))
    assert pass_at_1(logp, tree) == pytest.approx(0.9**3 + 0.9 * 0.1 * 0.5)  # leaf 6 shares s_1


def test_hint_lengths_schedules():
    rng = np.random.default_rng(0)
    cfg = SimConfig(groups=5000)
    assert (hint_lengths("rft", cfg, 10, 0, rng) == 0).all()
    uni = hint_lengths("uft", cfg, 10, 0, rng)
    assert uni.min() == 0 and uni.max() == 10
    cos = SimConfig(groups=5000, schedule="cosine", hint_iters=10, hint_pieces=5)
    first = hint_lengths("uft", cos, 10, 0, rng)
    # cut points round(i/5 * 10) = 0, 2, ..., 10; k ~ Binomial(5, p(1)), p(1) = 0.05 + 0.45
    # (1 + cos(pi/10)) = 0.9280, so E[l] = 2 * 5 * 0.9280 = 9.28
    assert set(first.tolist()) <= {0, 2, 4, 6, 8, 10}
    assert first.mean() == pytest.approx(9.28, abs=0.1)
    assert (hint_lengths("uft", cos, 10, 10, rng) == 0).all()  # t = 11 > T_hint: no hint


def test_parse_ints():
    assert parse_ints("2..5") == [2, 3, 4, 5]
    assert parse_ints("2,3") == [2, 3]


def test_separation_rft_exponential_uft_polynomial():
    """B=2, H=5..10, 16 seeds (about 3 s).

    RFT sees no signal until a rollout from the root hits the correct leaf, a geometric wait of
    mean B^H/K, so mean visits ~ B^H/K + c(H) with c(H) the polynomial cost of learning after the
    first hit (about 20-40 visits here). The fitted slope of log(mean visits) on H should be log 2
    = 0.693, minus a bias from c(H) (about 0.07 over H=5..10) and with noise: the mean of 16
    geometric waits has relative sd 1/4, so the slope's sd is about 0.25/sqrt(17.5) = 0.06.
    Tolerance 0.2 = bias + 2 sd. UFT learns one level at a time from hinted starts; its visits
    grow by about 1.1 per level at the top heights (we assert < 1.4, well below B = 2).
    """
    heights, b, seeds = np.arange(5, 11), 2, 16
    cfg = SimConfig()
    mean = {
        m: np.array(
            [
                np.mean([train_until_solved(m, int(h), b, cfg, s).visits for s in range(seeds)])
                for h in heights
            ]
        )
        for m in ("rft", "uft")
    }
    slope = np.polyfit(heights, np.log(mean["rft"]), 1)[0]
    assert abs(slope - math.log(b)) < 0.2, (slope, mean)
    assert (mean["rft"] >= b**heights / 4).all()  # the paper's lower bound B^H / (4K)
    uft_factor = math.sqrt(mean["uft"][-1] / mean["uft"][-3])  # per level, H=8 -> 10
    assert uft_factor < 1.4, mean["uft"]
    assert mean["uft"][-1] < mean["rft"][-1] / 4


def test_cli_writes_json_and_png(tmp_path):
    rc = main(["--heights", "2..3", "--branching", "2", "--seeds", "2", "--out", str(tmp_path)])
    assert rc == 0
    record = json.loads((tmp_path / "theory.json").read_text())
    rows = record["results"]["2"]["rft"]["rows"]
    assert [r["height"] for r in rows] == [2, 3] and len(rows[0]["visits"]) == 2
    assert record["lower_bound"]["2"] == [1.0, 2.0]
    assert (tmp_path / "theory.png").stat().st_size > 0
