"""Metrics: one JSON object per step in metrics.jsonl (always step, loss, lr, tokens_per_s),
mirrored, under the same names, to the trackers in `RunConfig.report_to` (`unift.train.trackers`:
TensorBoard in <run>/tb/ by default), which also get the evaluations' rows (evals.jsonl) as
`eval/<label>/<metric>`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from unift.train import trackers


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
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = [line for line, row in _rows(lines, path) if row["step"] <= resume_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(r + "\n" for r in kept))
    os.replace(tmp, path)
    return path.open("a", encoding="utf-8")


class MetricsWriter:
    """metrics.jsonl plus the trackers named in `report_to`, started with the run's config
    (`params`, plain types) for their hyperparameter tables."""

    def __init__(self, run_dir: Path, resume_step: int | None = None,
                 report_to: tuple[str, ...] | list[str] = ("tensorboard",), params: dict | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = open_step_log(self.path, resume_step)
        self.trackers = trackers.open_trackers(list(report_to), Path(run_dir), params or {}) if report_to else []

    def write(self, row: dict) -> dict:
        row = {k: _plain(v) for k, v in row.items()}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        trackers.log(self.trackers, row)
        return row

    def track_eval(self, row: dict) -> None:
        """An evals.jsonl row (written by `unift.train.evals.Evaluator`) to the trackers, as
        `eval/<label>/<metric>` at its step."""
        trackers.log_eval(self.trackers, row)

    def close(self) -> None:
        self.file.close()
        trackers.finish(self.trackers)


def _rows(lines: list[str], path: Path):
    """(line, row) for each JSON row with a step. A last line that does not parse is skipped: a
    kill or a full disk tears the line being written. Any other bad line is an error."""
    lines = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    for n, (lineno, line) in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("no step")
        except ValueError:
            if n == len(lines) - 1:
                return
            raise ValueError(f"{path}:{lineno}: not a row of a unift log (a JSON object with a step)") from None
        yield line, row


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of run_dir/metrics.jsonl (a torn last line, from a kill, is left out)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [row for _, row in _rows(path.read_text().splitlines(), path)]
