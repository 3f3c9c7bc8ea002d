"""Where a run reports besides metrics.jsonl: experiment trackers (`RunConfig.report_to`) and one
progress display.

Trackers are accelerate's classes (`accelerate.tracking`), each kept on this machine unless the
user's environment sends it elsewhere:
  tensorboard  event files in <run>/tb/
  wandb        offline, in <run>/wandb/ (`wandb sync` uploads it); WANDB_MODE, if set, wins
  mlflow       a sqlite store, <run>/mlflow.db (`mlflow ui --backend-store-uri sqlite:///<run>/mlflow.db`);
               MLFLOW_TRACKING_URI, if set, wins
  trackio      trackio's local database (TRACKIO_DIR, default ~/.cache/huggingface/trackio;
               `trackio show`); TRACKIO_SPACE_ID, if set, sends it to a Space
Each gets every metrics.jsonl row under its metrics.jsonl names (`demo/loss`, `reward_mean`, ...)
at its step, and every evals.jsonl row (the run's held-out evaluations, `unift.train.evals`) at its
step as `eval/<label>/<metric>` (`eval/id/pass@1`, `eval/ood/format_rate`, ...; a source may not
be named `eval`). MLflow refuses `@` in a name: there `pass@1` is `pass_at_1`. The caller opens
them on the main process only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import warnings
from pathlib import Path

TRACKERS = {  # report_to name -> (module it imports, pip package that provides it)
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "trackio": ("trackio", "trackio"),
    "mlflow": ("mlflow", "mlflow"),  # mlflow-skinny provides the module too
}
# MLflow's local store (sqlite) needs these beyond mlflow-skinny; the full mlflow package has them
MLFLOW_LOCAL = ("sqlalchemy", "alembic")
PROJECT = "unift"  # trackio's project; wandb's and mlflow's unless WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME say


def check_report_to(names: list[str]) -> None:
    """Raise ValueError (one line) for a tracker name unift does not know, or one whose package is
    not installed, naming the pip package: a run must not find out after loading the model."""
    if not isinstance(names, list):
        raise ValueError(f"expected a list of trackers ({', '.join(TRACKERS)}; [] for none), got {names!r}")
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}; known: {', '.join(TRACKERS)} ([] for none)")
        module, package = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"{name} needs the {package} package, which is not installed: pip install {package}")
        missing = [m for m in MLFLOW_LOCAL if importlib.util.find_spec(m) is None] if name == "mlflow" else []
        if missing and "MLFLOW_TRACKING_URI" not in os.environ:
            raise ValueError(f"mlflow's local store (<run>/mlflow.db) needs {' and '.join(missing)}, which the full "
                             f"mlflow package brings: pip install {' '.join(missing)} (or set MLFLOW_TRACKING_URI)")


def open_trackers(names: list[str], run_dir: Path, params: dict) -> list:
    """Start accelerate's tracker for each name (in order, once each) and give it the run's config
    (`params`, flattened to dotted keys; TensorBoard's stays in config.yaml beside tb/)."""
    from accelerate import PartialState

    # accelerate's trackers log through its logger, which needs the process state: the run's
    # Accelerator made it (`distributed.init`); a process set up by hand (`Dist()`) is on the CPU
    PartialState(cpu=True)
    run_dir = Path(run_dir)
    out = []
    for name in dict.fromkeys(names):
        tracker = _tracker(name, run_dir)
        tracker.main_process_only = False  # the caller opens trackers on the main process only
        tracker.start()
        if name != "tensorboard":  # its add_hparams would write a second, timestamped event directory
            tracker.store_init_configuration(flatten(params))
        out.append(tracker)
    return out


def _tracker(name: str, run_dir: Path):
    from accelerate import tracking

    if name == "tensorboard":
        return tracking.TensorBoardTracker("tb", run_dir)  # -> run_dir/tb
    if name == "wandb":
        offline = {} if "WANDB_MODE" in os.environ else {"mode": "offline"}
        return tracking.WandBTracker(os.environ.get("WANDB_PROJECT", PROJECT), dir=str(run_dir), name=run_dir.name,
                                     **offline)
    if name == "mlflow":
        if "MLFLOW_TRACKING_URI" not in os.environ:
            import mlflow

            # sqlite, MLflow 3's own default store, in the run directory. Not the file store: it keeps
            # each metric in a file named by its key, and `demo/loss` cannot be both a file and the
            # directory of `demo/loss/policy`.
            mlflow.set_tracking_uri(f"sqlite:///{(run_dir / 'mlflow.db').resolve()}")
            local = {"logging_dir": str((run_dir / "mlartifacts").resolve())}  # else ./mlartifacts
        else:
            local = {}
        # MLFLOW_EXPERIMENT_NAME, if set, wins over the experiment name
        return tracking.MLflowTracker(experiment_name=PROJECT, run_name=run_dir.name, **local)
    if name == "trackio":
        return tracking.TrackioTracker(PROJECT, name=run_dir.name)
    raise ValueError(f"unknown tracker {name!r}")


def flatten(params: dict, prefix: str = "") -> dict:
    """A nested config as {dotted key: scalar}; lists and None as JSON text (what every tracker's
    hyperparameter table accepts)."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = json.dumps(value, default=str)
    return out


EVAL = "eval"  # the namespace of the evaluations' metrics in the trackers


def log(trackers: list, row: dict) -> None:
    """One metrics.jsonl row to every tracker at its step: the numbers, under their own names
    (None, a non-finite value in the JSON, is left out)."""
    _send(trackers, _numbers(row, skip=("step",)), row["step"])


def log_eval(trackers: list, row: dict) -> None:
    """One evals.jsonl row (one variant label's evaluation) to every tracker at its step: its
    numbers as `eval/<label>/<metric>`. Its `flops` is left out: the metrics.jsonl row of that step
    has it."""
    values = _numbers(row, skip=("step", "flops"))
    _send(trackers, {f"{EVAL}/{row['label']}/{k}": v for k, v in values.items()}, row["step"])


def _numbers(row: dict, skip: tuple[str, ...]) -> dict:
    return {k: v for k, v in row.items()
            if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)}


def _send(trackers: list, values: dict, step: int) -> None:
    for tracker in trackers:
        tracker.log(mlflow_names(values) if tracker.name == "mlflow" else values, step=step)


def mlflow_names(values: dict) -> dict:
    """`values` under names MLflow accepts (letters, digits, `_-. /:`): `pass@1` -> `pass_at_1`,
    any other character -> `_`."""
    return {re.sub(r"[^/\w.\- :]", "_", k.replace("@", "_at_")): v for k, v in values.items()}


def finish(trackers: list) -> None:
    for tracker in trackers:
        tracker.finish()


@contextlib.contextmanager
def one_progress_display(show: bool):
    """While unift shows its own progress bar (`show`), the libraries' tqdm bars (transformers'
    "Loading weights" and "Writing model shards", huggingface_hub's, datasets') stay off, so the
    terminal has one display; their settings are restored afterwards. An environment variable
    forcing a library's bars on (HF_HUB_DISABLE_PROGRESS_BARS=0, ...) still wins."""
    if not show:
        yield
        return
    import datasets.utils as ds
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf

    was = hf.is_progress_bar_enabled(), hub.are_progress_bars_disabled(), ds.are_progress_bars_disabled()
    with warnings.catch_warnings():  # the libraries warn when an environment variable overrides the call
        warnings.simplefilter("ignore")
        hf.disable_progress_bar()  # transformers' own switch, and huggingface_hub's
        ds.disable_progress_bars()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if was[0]:
                hf.enable_progress_bar()  # (turns huggingface_hub's on too: set it back next)
            (hub.disable_progress_bars if was[1] else hub.enable_progress_bars)()
            (ds.disable_progress_bars if was[2] else ds.enable_progress_bars)()
