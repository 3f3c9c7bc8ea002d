"""Metrics: one JSON object per step in metrics.jsonl (always step, loss, lr, tokens_per_s),
mirrored to TensorBoard when it is installed."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def _plain(value):
    value = float(value.item()) if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def open_step_log(path: Path, resume_step: int | None):
    """Open a JSONL log of per-step rows for appending. A fresh run starts it empty; a resumed
    run first drops, atomically, the rows written after the checkpoint it resumes from (they
    will be recomputed)."""
    if resume_step is None or not path.exists():
        return path.open("w", encoding="utf-8")
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in rows if json.loads(r)["step"] <= resume_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(r + "\n" for r in kept))
    os.replace(tmp, path)
    return path.open("a", encoding="utf-8")


class MetricsWriter:
    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = open_step_log(self.path, resume_step)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def write(self, row: dict) -> dict:
        row = {k: _plain(v) for k, v in row.items()}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, int | float):
                    self.tb.add_scalar(key, value, row["step"])
        return row

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
