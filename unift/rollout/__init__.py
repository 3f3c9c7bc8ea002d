"""Rollouts: sample G completions per prompt with their log-probs (see `engine`)."""

from unift.rollout.engine import Engine, Rollouts, make_engine

__all__ = ["Engine", "Rollouts", "make_engine"]
