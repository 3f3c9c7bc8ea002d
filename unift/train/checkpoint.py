"""Checkpoints that lose nothing: written atomically, holding everything a resumed run needs.

A checkpoint is one file, `checkpoint.pt` in the run directory, written to a temporary file in
the same directory and renamed over the old one (`os.replace` is atomic on POSIX): a run killed
at any instant leaves either the previous checkpoint or the new one, never a torn file.
It holds the trainable weights (all weights, or the LoRA adapters), the optimiser, the LR
schedule, the Python/NumPy/torch RNG states, each data stream's position and the step.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

NAME = "checkpoint.pt"


def atomic_save(obj, path: Path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(run_dir: Path, *, step: int, model, optimizer, scheduler, streams: dict, extra: dict | None = None):
    atomic_save(
        {
            "step": step,
            "model": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "streams": {name: s.state_dict() for name, s in streams.items()},
            "extra": extra or {},
        },
        Path(run_dir) / NAME,
    )


def load(run_dir: Path) -> dict | None:
    path = Path(run_dir) / NAME
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def restore(ckpt: dict, *, model, optimizer, scheduler, streams: dict) -> int:
    params = dict(model.named_parameters())
    missing = [n for n in ckpt["model"] if n not in params]
    if missing:
        raise ValueError(f"checkpoint does not match the model: unknown parameters {missing[:3]}...")
    with torch.no_grad():
        for name, value in ckpt["model"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    for name, state in ckpt["streams"].items():
        streams[name].load_state_dict(state)
    set_rng_state(ckpt["rng"])
    return int(ckpt["step"])
