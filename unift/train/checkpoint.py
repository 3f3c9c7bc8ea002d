"""Checkpoints that lose nothing: written atomically, holding everything a resumed run needs.

A checkpoint is one file, `checkpoint.pt` in the run directory, written to a temporary file in
the same directory and renamed over the old one (`os.replace` is atomic on POSIX): a run killed
at any instant leaves either the previous checkpoint or the new one, never a torn file.
It holds the trainable weights (all weights, or the LoRA adapters), the optimiser, the LR
schedule, the Python/NumPy/torch RNG states, each data stream's position and the step.

A run directory is writable by anyone who can hand a user a file, so loading must never run
code: `load` uses `torch.load(weights_only=True)`, whose unpickler builds only tensors and plain
containers (dict, list, tuple, str, numbers, None) and refuses every other class or function.
`save` therefore stores only those (`plain` checks it): the NumPy RNG state's array becomes a
tensor. A file that does not load, or is not shaped like a checkpoint, raises `CheckpointError`
naming it.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

NAME = "checkpoint.pt"
KEYS = ("step", "model", "optimizer", "scheduler", "rng", "streams", "extra")
PLAIN = (str, int, float, bool, type(None), torch.Tensor)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


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
    """The global RNG states in types `weights_only` loads: NumPy's key array (uint32) becomes an
    int64 tensor, the tuples become lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def plain(obj, where: str = "checkpoint") -> None:
    """Raise TypeError if `obj` holds anything `load` would refuse: a checkpoint that cannot be
    resumed is better found when it is written than when a run needs it."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            plain(key, f"{where} key")
            plain(value, f"{where}/{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            plain(value, f"{where}/{i}")
    elif not isinstance(obj, PLAIN):
        raise TypeError(f"{where}: a {type(obj).__name__} cannot be stored in a checkpoint")


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(run_dir: Path, *, step: int, model, optimizer, scheduler, streams: dict, extra: dict | None = None):
    state = {
        "step": step,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "streams": {name: s.state_dict() for name, s in streams.items()},
        "extra": extra or {},
    }
    plain(state)
    atomic_save(state, Path(run_dir) / NAME)


def load(run_dir: Path) -> dict | None:
    """The checkpoint in `run_dir`, or None if there is none. Never unpickles code (see the
    module docstring); raises CheckpointError for a file that is not a unift checkpoint."""
    path = Path(run_dir) / NAME
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: noise here
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file fails in many ways (zip, pickle, EOF)
        raise CheckpointError(f"{path}: not a valid unift checkpoint ({_reason(e)})") from e
    if not isinstance(ckpt, dict) or (missing := [k for k in KEYS if k not in ckpt]):
        what = f"missing {', '.join(missing)}" if isinstance(ckpt, dict) else "not a dict"
        raise CheckpointError(f"{path}: not a valid unift checkpoint ({what})")
    return ckpt


def _reason(e: Exception) -> str:
    """One short line from torch.load's error, whose messages run to many lines and advise
    reloading with weights_only=False, exactly what must not be done with an untrusted file."""
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        if detail.startswith("Unsupported global:"):
            name = detail.split(" was not an allowed global")[0].split("GLOBAL")[-1].strip()
            older = "; unift before safe loading stored NumPy arrays" if "numpy" in name else ""
            return f"it refers to {name}, which a checkpoint never holds{older}"[:200]
        return f"unreadable pickle: {detail}"[:200]
    if isinstance(e, EOFError):
        return "the file is empty or truncated"
    first = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""
    return f"{type(e).__name__}: {first}"[:200] if first else type(e).__name__


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
