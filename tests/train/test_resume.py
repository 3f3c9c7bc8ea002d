"""A run killed with SIGKILL mid-training resumes from its last checkpoint and produces the
same metrics as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.train.helpers import ROOT, source, tiny_run
from unift.config import UniftWarning, dump_config
from unift.train.metrics import read_metrics
from unift.train.run import train

TIMING = {"tokens_per_s", "step_s"}


def config_for(tmp_path, name):
    config = tiny_run(tmp_path / name, [
        source("demonstration", "sft", "demonstrations.jsonl", name="demo", weight=0.5, batch_size=3),
        source("preference", "una-pairwise", "preferences.jsonl", name="pref", weight=0.5, batch_size=3),
    ], steps=10, save_every=2, **{"optim.lr": 1e-3, "optim.warmup_steps": 2})
    return config


def strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    reference = strip(read_metrics(train(config_for(tmp_path, "straight"))))

    config = config_for(tmp_path, "killed")
    run_dir = tmp_path / "killed" / "run"
    run_dir.mkdir(parents=True)
    config_path = tmp_path / "killed.yaml"
    dump_config(config, config_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "unift.cli", "train", str(config_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 180
    # kill once step 5 is logged: the checkpoint of step 4 exists, steps 5+ are lost
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(read_metrics(run_dir))
    assert 5 <= killed_at < 10

    config.resume = True
    with pytest.warns(UniftWarning, match=f"taking over the stale lock of pid {proc.pid}"):  # left by the kill
        resumed = strip(read_metrics(train(config)))
    assert [r["step"] for r in resumed] == list(range(1, 11))
    assert len(resumed) == len(reference)
    for got, want in zip(resumed, reference, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (got["step"], key)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["resume"] is True
