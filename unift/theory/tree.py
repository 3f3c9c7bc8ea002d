"""The search-tree task and one training step of RFT / UFT on it, as numpy array code.

Setting (Liu, Farina, Ozdaglar 2025, "UFT: Unifying Supervised and Reinforcement Fine-Tuning",
theory section): a deterministic tree of height H and branching B. A state at level h is a
node index i in [0, B^h); action a in [0, B) leads to node i*B + a at level h+1. The B^H leaves
carry the reward: 1.0 on the K correct leaves, 0.1 elsewhere (gap Delta = 0.9). The "solution"
used for hints is the path s*_0 (root), a*_0, s*_1, ..., a*_{H-1} to the first correct leaf.

The policy is tabular softmax, stored as log-probabilities, one array per level:
    logp[h]  # (B^h, B)   log pi(a | node i at level h)
pi_ref = the initial policy = uniform.

One iteration (`step`) is the pipeline rollout -> advantage -> mirror-ascent update, on a batch of
`groups` groups of `group_size` rollouts; all rollouts of a group share one hint length l
(as in the paper's GRPO runs, where all rollouts of a prompt share the hint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REWARD_CORRECT = 1.0
REWARD_OTHER = 0.1
# Log-probabilities are kept >= this floor so 1/pi stays finite (pi >= ~1e-13).
LOGP_FLOOR = -30.0


@dataclass(frozen=True)
class Tree:
    """A deterministic search tree with rewards at the leaves."""

    height: int
    """H: number of decisions from the root to a leaf."""
    branching: int
    """B: actions per state."""
    correct: np.ndarray
    """(K,) indices of the correct leaves in [0, B^H); correct[0] defines the hinted path."""

    def path_nodes(self, leaf: int) -> np.ndarray:
        """(H,) node index at levels 0..H-1 on the path to `leaf`: leaf // B^(H-h)."""
        H, B = self.height, self.branching
        return np.array([leaf // B ** (H - h) for h in range(H)], dtype=np.int64)

    def path_actions(self, leaf: int) -> np.ndarray:
        """(H,) action taken at level h on the path to `leaf`: (leaf // B^(H-h-1)) mod B."""
        H, B = self.height, self.branching
        return np.array([(leaf // B ** (H - h - 1)) % B for h in range(H)], dtype=np.int64)

    @property
    def a_star(self) -> np.ndarray:
        """(H,) the optimal (hinted) action at each level of the optimal path."""
        return self.path_actions(int(self.correct[0]))

    def reward(self, leaves: np.ndarray) -> np.ndarray:
        """(N,) 1.0 on correct leaves, 0.1 elsewhere."""
        return np.where(np.isin(leaves, self.correct), REWARD_CORRECT, REWARD_OTHER)


def make_tree(height: int, branching: int, correct_leaves: int, rng: np.random.Generator) -> Tree:
    """A tree whose K correct leaves are drawn uniformly without replacement."""
    correct = rng.choice(branching**height, size=correct_leaves, replace=False)
    return Tree(height, branching, np.asarray(correct, dtype=np.int64))


def uniform_policy(tree: Tree) -> list[np.ndarray]:
    """pi_ref: logp[h] = log(1/B) everywhere, shape (B^h, B) per level."""
    B = tree.branching
    return [np.full((B**h, B), -np.log(B)) for h in range(tree.height)]


def rollout(
    logp: list[np.ndarray], tree: Tree, hint: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample N root-to-leaf paths; rollout n follows the hint (a*_h) for h < hint[n], then pi.

    Returns nodes (N, H), actions (N, H), leaves (N,). Levels h < hint[n] are the hinted prefix:
    the rollout starts at s*_l, the l-th node of the optimal path.
    """
    n, H = hint.shape[0], tree.height
    a_star = tree.a_star
    nodes = np.zeros((n, H), dtype=np.int64)
    actions = np.zeros((n, H), dtype=np.int64)
    node = np.zeros(n, dtype=np.int64)  # (N,) everyone starts at the root
    for h in range(H):
        cdf = np.cumsum(np.exp(logp[h][node]), axis=1)  # (N, B)
        sampled = (rng.random(n)[:, None] * cdf[:, -1:] > cdf).sum(axis=1)  # inverse-CDF draw
        action = np.where(h < hint, a_star[h], np.minimum(sampled, tree.branching - 1))
        nodes[:, h], actions[:, h] = node, action
        node = node * tree.branching + action
    return nodes, actions, node


def group_advantages(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """A_n = r_n - mean of r over n's group (groups are contiguous blocks of `group_size`).

    The group mean is the Monte Carlo value of the group's start state s*_l, the baseline GRPO
    uses (without the std normalisation, which would rescale the step size per group).
    """
    r = rewards.reshape(-1, group_size)  # (groups, G)
    return (r - r.mean(axis=1, keepdims=True)).reshape(-1)


def mirror_update(
    logp: list[np.ndarray],
    tree: Tree,
    nodes: np.ndarray,
    actions: np.ndarray,
    hint: np.ndarray,
    adv: np.ndarray,
    eta: float,
    beta: float,
) -> None:
    """One mirror-ascent step, in place, on every state the batch touched (paper, theory section).

    For a state s reached by rollouts (level h >= l), with the importance-weighted advantage
        A_hat(s, a) = mean over rollouts n through s of 1[a_n = a] * A_n / pi_{t-1}(a | s)
    (importance weighting makes its expectation Q(s, a) - baseline for every action, not only
    the sampled ones; the baseline is a constant per state, which the softmax ignores, up to the
    small bias of a group mean that includes the rollout itself), the paper's update is
        pi_t(a|s) ∝ exp((eta*A_hat + eta*beta*log pi_ref + log pi_{t-1}) / (1 + eta*beta)),
    the closed form of argmax_pi eta*<A_hat, pi> - eta*beta*KL(pi||pi_ref) - KL(pi||pi_{t-1}).

    For a state s*_h in the hinted prefix (h < l) the objective has, instead of reward and KL, the
    term beta * log pi(a*_h | s*_h) (paper eq. 3.3). Its gradient in pi is beta / pi(a*|s) on a*,
    0 elsewhere; the same mirror step with that gradient in place of A and no KL term is
        pi_t(a|s) ∝ pi_{t-1}(a|s) * exp(eta * beta * 1[a = a*] / pi_{t-1}(a*|s)).
    A state touched by both kinds of rollout in one batch averages the two per rollout: its
    gradient is the mean over the rollouts touching it, and its KL weight is beta times the
    fraction of those rollouts that explored it.
    """
    log_ref = -np.log(tree.branching)
    a_star = tree.a_star
    for h in range(tree.height):
        states, inv = np.unique(nodes[:, h], return_inverse=True)  # (U,), (N,)
        old = logp[h][states]  # (U, B)
        hinted = h < hint  # (N,) True where s_h is in the hinted prefix
        pi_taken = np.exp(old[inv, actions[:, h]])  # (N,) pi_{t-1}(a_n | s_n)
        # per rollout: the gradient coefficient on its action (A_n or beta), over pi(a_n | s_n)
        coef = np.where(hinted, beta, adv) / pi_taken
        grad = np.zeros_like(old)  # (U, B)
        np.add.at(grad, (inv, np.where(hinted, a_star[h], actions[:, h])), coef)
        n_touch = np.bincount(inv, minlength=len(states)).astype(float)  # (U,)
        n_explore = np.bincount(inv, weights=(~hinted).astype(float), minlength=len(states))
        grad /= n_touch[:, None]
        kl = beta * (n_explore / n_touch)[:, None]  # (U, 1) effective KL weight
        new = (eta * grad + eta * kl * log_ref + old) / (1.0 + eta * kl)
        new -= _logsumexp(new)
        logp[h][states] = np.maximum(new, LOGP_FLOOR)


def _logsumexp(x: np.ndarray) -> np.ndarray:
    """log sum_a exp(x[:, a]), shape (U, 1), stable."""
    m = x.max(axis=1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def pass_at_1(logp: list[np.ndarray], tree: Tree) -> float:
    """P_pi(a rollout from the root ends on a correct leaf) = sum_k prod_h pi(a_kh | s_kh).

    This is the paper's pass@1 (one sample, temperature 1); exact, O(K*H) per call.
    """
    total = 0.0
    for leaf in tree.correct:
        nodes, acts = tree.path_nodes(int(leaf)), tree.path_actions(int(leaf))
        total += np.exp(sum(logp[h][nodes[h], acts[h]] for h in range(tree.height)))
    return float(total)


def greedy_correct(logp: list[np.ndarray], tree: Tree) -> bool:
    """Whether following argmax_a pi(a|s) from the root (ties -> lowest a) ends on a correct leaf."""
    node = 0
    for h in range(tree.height):
        node = node * tree.branching + int(np.argmax(logp[h][node]))
    return bool(np.isin(node, tree.correct))
