"""Checkpoints that lose nothing: written atomically, holding everything a resumed run needs.

A checkpoint is one file, `checkpoint.pt` in the run directory, written to a temporary file in
the same directory and renamed over the old one (`os.replace` is atomic on POSIX): a run killed
at any instant leaves either the previous checkpoint or the new one, never a torn file.
It holds the trainable weights (all weights, or the LoRA adapters; PPO's value head under
"value_head"), the optimiser, the LR schedule, the Python/NumPy/torch RNG states, each data
stream's position and the step.

A run directory is writable by anyone who can hand a user a file, so loading must never run
code: `load` uses `torch.load(weights_only=True)`, whose unpickler builds only tensors and plain
containers (dict, list, tuple, str, numbers, None) and refuses every other class or function.
`save` therefore stores only those (`plain` checks it): the NumPy RNG state's array becomes a
tensor. A file that does not load, or is not shaped like a checkpoint, raises `CheckpointError`
naming it.

The run directory around it: `RunLock` (one live run per directory), `previous_run` (what marks
a run there), `clear_run` (overwrite=true), `remove_stale` (temporary files of killed runs) and
`mark_finished` (finished.json, the last file a run writes).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pickle
import random
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from unift.config import UniftWarning

NAME = "checkpoint.pt"
LOCK = ".lock"
MODEL = "model"
MODEL_TMP_PREFIX = "model."  # run.save_model's temporary directory, renamed to MODEL when complete
FINISHED = "finished.json"  # written last, after MODEL: the run ended (`mark_finished`)
RUN_FILES = ("config.yaml", "metrics.jsonl", NAME, MODEL, FINISHED)  # any of these: a run lives here
# what overwrite=true replaces (the trackers' offline files too: unift.train.trackers)
OUTPUTS = (*RUN_FILES, "evals.jsonl", "samples.jsonl", "tb", "wandb", "mlflow.db", "mlartifacts")
# temporaries a kill can leave: atomic_save's and mark_finished's (mkstemp), save_model's (mkdtemp),
# open_step_log's
STALE = re.compile(r"(checkpoint\.pt|finished\.json)\.[a-z0-9_]{8}\.tmp|model\.[a-z0-9_]{8}"
                   r"|(metrics|evals|samples)\.tmp")
KEYS = ("step", "model", "optimizer", "scheduler", "rng", "streams", "extra")
PLAIN = (str, int, float, bool, type(None), torch.Tensor)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


class RunDirError(ValueError):
    """An output_dir a run cannot use (in use, holding another run); one line naming it."""


@contextlib.contextmanager
def replacing(path: Path):
    """A binary file that replaces `path` whole when the block ends (written to a temporary file
    beside it, synced, renamed over it), or, if the block fails, not at all."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path: Path) -> None:
    try:
        with replacing(path) as f:
            torch.save(obj, f)
    except OSError as e:
        if e.filename is None:  # torch's writes name no file (a full disk)
            raise OSError(e.errno, f"{e.strerror or e}; the previous checkpoint is kept", str(path)) from e
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


def save(run_dir: Path, *, step: int, model, optimizer, scheduler, streams: dict, extra: dict | None = None,
         value_head=None):
    """value_head: PPO's critic (`unift.models.ValueHead`), stored beside the model's weights."""
    state = {
        "step": step,
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "streams": {name: s.state_dict() for name, s in streams.items()},
        "extra": extra or {},
    }
    if value_head is not None:
        state["value_head"] = trainable_state(value_head)
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


def restore(ckpt: dict, *, model, optimizer, scheduler, streams: dict, where: str = NAME, value_head=None) -> int:
    """Load `ckpt` into the run's objects (and PPO's `value_head`); -> its step. A checkpoint of
    another model or data raises CheckpointError (`where` names it) before anything is changed."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if what := _mismatch(ckpt["model"], params, "the model"):
        raise CheckpointError(f"{where}: the checkpoint does not match the model ({what})")
    saved_head = ckpt.get("value_head")
    if (saved_head is None) != (value_head is None):
        raise CheckpointError(f"{where}: the checkpoint {'has no' if saved_head is None else 'has a'} value head "
                              f"and this run {'trains one' if saved_head is None else 'does not'} (adv_estimator)")
    head_params = dict(value_head.named_parameters()) if value_head is not None else {}
    if value_head is not None and (what := _mismatch(saved_head, head_params, "the value head")):
        raise CheckpointError(f"{where}: the checkpoint does not match the value head ({what})")
    if unknown_streams := sorted(set(ckpt["streams"]) - set(streams)):
        raise CheckpointError(f"{where}: the checkpoint has data streams this run lacks: {', '.join(unknown_streams)}")
    for name, state in ckpt["streams"].items():
        try:
            streams[name].load_state_dict(state)
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{where}: source {name!r}: {e}") from None
    with torch.no_grad():
        for name, value in ckpt["model"].items():
            params[name].copy_(value)
        for name, value in (saved_head or {}).items():
            head_params[name].copy_(value)
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    return int(ckpt["step"])


def _mismatch(saved: dict, params: dict, what: str) -> str:
    """Why saved tensors do not fit `params` (names or shapes), or '' if they do."""
    unknown = [n for n in saved if n not in params]
    absent = [n for n in params if n not in saved]
    shapes = [f"{n} is {tuple(v.shape)} there, {tuple(params[n].shape)} here" for n, v in saved.items()
              if n in params and v.shape != params[n].shape]
    if unknown:
        return f"parameters unknown to {what}: {', '.join(unknown[:3])}"
    if absent:
        return f"parameters missing from the checkpoint: {', '.join(absent[:3])}"
    return shapes[0] if shapes else ""


# -- the run directory ------------------------------------------------------------------------


class RunLock:
    """output_dir/.lock, holding the live run's pid. The lock is `flock`, not the file's
    existence: the kernel drops it when its process dies however it dies, so a lock file left by
    a killed run is stale by construction and is taken over (with a warning); a live holder
    makes `acquire` raise RunDirError naming its pid."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _pid(fd)
                os.close(fd)
                raise RunDirError(f"{self.run_dir}: in use by another unift run (pid {holder or '?'}, "
                                  f"{self.path}); wait for it to end or choose another output_dir") from None
            except OSError as e:  # a file system without locks (some network mounts)
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                warnings.warn(f"{self.path}: cannot lock ({e.strerror}); nothing stops a second run here",
                              UniftWarning, stacklevel=2)
            try:  # the holder we waited on may have removed the file: lock the one in place
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _pid(fd)
        if previous and previous != os.getpid():
            warnings.warn(f"{self.path}: taking over the stale lock of pid {previous} (a run that ended without "
                          "removing it, e.g. killed)", UniftWarning, stacklevel=2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a waiting opener sees the inode change
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def mark_finished(run_dir: Path, *, step: int, flops: float, version: str) -> None:
    """run_dir/finished.json {"step", "flops", "unift"}: the run ended normally, its model saved.
    Written atomically (a temporary file renamed over it), so it exists whole or not at all.
    `unift compare` takes it as a finished run once model/ and checkpoint.pt are deleted."""
    with replacing(Path(run_dir) / FINISHED) as f:
        f.write((json.dumps({"step": step, "flops": flops, "unift": version}) + "\n").encode())


def previous_run(run_dir: Path) -> list[str]:
    """The files of a run present in run_dir (config.yaml, metrics.jsonl, checkpoint, model,
    finished.json)."""
    return [name for name in RUN_FILES if (Path(run_dir) / name).exists()]


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's outputs (`OUTPUTS`), and nothing else of the directory."""
    for name in OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def remove_stale(run_dir: Path) -> tuple[int, int]:
    """Delete the temporary files a killed run leaves (`STALE`: a partial checkpoint or model,
    about 1.6 GB each for a 135M model); call only while holding the lock. -> (count, bytes)."""
    count = size = 0
    for path in Path(run_dir).iterdir():
        if not STALE.fullmatch(path.name) or path.is_symlink():
            continue
        if path.is_dir():
            size += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        else:
            size += path.stat().st_size
            path.unlink()
        count += 1
    return count, size
