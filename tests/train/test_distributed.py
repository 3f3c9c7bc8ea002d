"""The trainer runs unchanged under `accelerate launch` with the shipped CPU config
(configs/accelerate/cpu-2proc.yaml): 2 CPU processes (gloo), each with half of the same global
batch, give the single-process losses and the same updated weights. Both runs go through
accelerate's Accelerator (`unift.train.distributed.init`, `device: auto` resolving to the CPU)."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.train.helpers import ROOT, source, tiny_run
from unift.config import dump_config
from unift.train.metrics import read_metrics
from unift.train.run import train


def config_for(tmp_path, name):
    # fp32: the comparison is exact up to summation order, without bf16 rounding on top
    return tiny_run(tmp_path / name, [
        source("demonstration", "sft", "demonstrations.jsonl", name="demo", weight=0.5, batch_size=4),
        source("preference", "dpo-sigmoid", "preferences.jsonl", name="pref", weight=0.5, batch_size=4),
    ], steps=3, precision="fp32", **{"optim.lr": 1e-3})


@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None,
                    reason="accelerate CLI not installed")
def test_two_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    single = read_metrics(train(config_for(tmp_path, "single")))

    config = config_for(tmp_path, "ddp")
    config_path = tmp_path / "ddp.yaml"
    dump_config(config, config_path)
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [accelerate, "launch", "--config_file", str(ROOT / "configs" / "accelerate" / "cpu-2proc.yaml"),
         "--dynamo_backend", "no", "-m", "unift.cli", "train", str(config_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    multi = read_metrics(tmp_path / "ddp" / "run")
    assert len(multi) == len(single) == 3
    for a, b in zip(single, multi, strict=True):
        # step 1: same loss and gradient on the same data (AdamW would hide a gradient off by a
        # constant factor, grad_norm does not); steps 2-3: the averaged gradients made the same update
        for key in ("loss", "demo/loss", "pref/loss", "pref/rewards/margin", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
        assert b["tokens"] == a["tokens"]
