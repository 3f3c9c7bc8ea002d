"""The mixture: one deterministic, resumable stream of items per source.

Every optimisation step draws `batch_size` items from every source (the trainer sums the
weighted losses). Each stream walks a fresh permutation per epoch, drawn from a generator seeded
by (run seed, source index, epoch), so its position is two integers that go into checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class StreamState:
    epoch: int = 0
    position: int = 0


class Stream(Generic[T]):
    def __init__(self, items: list[T], seed: int, index: int):
        if not items:
            raise ValueError("a source needs at least one item")
        self.items = items
        self.seed = seed
        self.index = index
        self.state = StreamState()
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.index, epoch])
        return rng.permutation(len(self.items))

    def take(self, n: int) -> list[T]:
        out = []
        while len(out) < n:
            if self.state.position == len(self.items):
                self.state = StreamState(self.state.epoch + 1, 0)
                self._order = self._permutation(self.state.epoch)
            out.append(self.items[self._order[self.state.position]])
            self.state.position += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.state.epoch, "position": self.state.position, "size": len(self.items)}

    def load_state_dict(self, state: dict) -> None:
        """Continue where a checkpoint left off; its permutations are of `size` items, so the
        same order needs the same data (older checkpoints lack `size`: the position is checked)."""
        size = state.get("size", len(self.items))
        if size != len(self.items) or state["position"] > len(self.items):
            raise ValueError(f"the data has {len(self.items)} items, the checkpoint's had "
                             f"{size if 'size' in state else 'more'}; resume with the data the run started with")
        self.state = StreamState(state["epoch"], state["position"])
        self._order = self._permutation(self.state.epoch)


def shard(items: list[T], rank: int, world: int) -> list[T]:
    """This process's share of a global batch (contiguous blocks; equal sizes required so that
    averaging gradients over processes equals the single-process gradient)."""
    if len(items) % world:
        raise ValueError(f"global batch of {len(items)} does not split evenly over {world} processes")
    size = len(items) // world
    return items[rank * size : (rank + 1) * size]
