"""A NaN or infinite loss, gradient norm or weight stops the run with a message naming the step
and the source, exit code 2, and no model or checkpoint written from the bad weights; the last
good checkpoint stays (docs/RELIABILITY.md, "Non-finite runs")."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.train.helpers import source, tiny_run
from unift.config import dump_config
from unift.train import checkpoint, run
from unift.train.metrics import read_metrics


def config_for(tmp_path, **overrides):
    return tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl", name="demo", batch_size=2)],
                    **{"steps": 4, **overrides})


def main(tmp_path, capsys, config, *overrides) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    dump_config(config, path)
    code = run.main([str(path), *overrides])
    return code, capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("override", ["optim.lr=.inf", "sources.0.weight=.nan", "sources.0.weight=-.inf"])
def test_non_finite_settings_exit_2_and_write_no_model(tmp_path, capsys, override):
    code, line = main(tmp_path, capsys, config_for(tmp_path), override)
    assert code == 2 and line.startswith("unift train: error: "), line
    assert not (tmp_path / "run").exists()


def test_an_exploding_run_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """lr 1e30 is finite, so the config is accepted; step 1's update leaves weights near 1e30
    (finite: its checkpoint is written), step 2's gradient is NaN: the run stops there."""
    config = config_for(tmp_path, save_every=1, **{"optim.lr": 1e30, "optim.grad_clip": 0.0})
    code, line = main(tmp_path, capsys, config)
    run_dir = Path(config.output_dir)
    assert code == 2
    assert line.startswith("unift train: error: step 2: non-finite values (gradient norm nan"), line
    assert line.endswith(f"); stopped without saving a model or checkpoint ({run_dir / 'checkpoint.pt'} is "
                         "kept); lower optim.lr or check the data"), line
    assert not (run_dir / "model").exists()
    ckpt = checkpoint.load(run_dir)
    assert ckpt["step"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]  # the bad step is logged (its non-finite values as null)


def test_the_run_stops_at_the_first_non_finite_step(tmp_path):
    """Without checkpoints on the way, the guard stops at step 2, not at the final save."""
    config = config_for(tmp_path, steps=6, **{"optim.lr": 1e30, "optim.grad_clip": 0.0})
    with pytest.raises(run.NonFiniteError, match=r"^step 2: .*\(no checkpoint had been written\)"):
        run.train(config)
    assert [r["step"] for r in read_metrics(config.output_dir)] == [1, 2]
    assert sorted(p.name for p in Path(config.output_dir).iterdir()) == ["config.yaml", "metrics.jsonl",
                                                                        "samples.jsonl", "tb"]


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    """A step whose loss and gradient norm are finite but whose update overflows (here planted
    after step 1) writes no checkpoint and no model."""
    real = run.train_step

    def poisoned(policy, *args, **kwargs):
        metrics = real(policy, *args, **kwargs)
        with torch.no_grad():
            next(p for p in policy.parameters() if p.requires_grad).view(-1)[0] = math.inf
        return metrics

    monkeypatch.setattr(run, "train_step", poisoned)
    config = config_for(tmp_path, steps=3, save_every=1)
    with pytest.raises(run.NonFiniteError, match=r"^step 1: non-finite values \(the updated weight model\."):
        run.train(config)
    assert not (Path(config.output_dir) / "checkpoint.pt").exists()
    assert not (Path(config.output_dir) / "model").exists()


class Named:
    def __init__(self, name):
        self.name = name


@pytest.mark.parametrize(
    ("metrics", "named"),
    [
        ({"demo/loss": math.nan, "pref/loss": 0.5, "loss": math.nan, "grad_norm": 1.0}, "source demo: loss nan"),
        ({"demo/loss": 0.1, "pref/loss": math.inf, "loss": math.inf, "grad_norm": math.nan},
         "source pref: loss inf, gradient norm nan"),
        ({"demo/loss": 0.1, "pref/loss": 0.2, "loss": math.nan, "grad_norm": 1.0}, "the weighted loss is nan"),
        ({"demo/loss": 0.1, "pref/loss": 0.2, "loss": 0.3, "grad_norm": math.inf}, "gradient norm inf"),
        ({"demo/loss": 0.1, "pref/loss": 0.2, "loss": 0.3, "grad_norm": 1e30}, ""),
    ],
)
def test_the_guard_names_the_source(metrics, named):
    assert run.non_finite(metrics, [Named("demo"), Named("pref")]) == named


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    """The final save meets a full disk: exit 2, one line naming the file; step 2's checkpoint
    stays whole (the write goes to a temporary file, removed)."""
    real = torch.save

    def full(obj, f, *args, **kwargs):
        if obj["step"] == 3:
            raise OSError(28, "No space left on device")
        real(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full)
    config = config_for(tmp_path, steps=3, save_every=2)
    code, line = main(tmp_path, capsys, config)
    run_dir = Path(config.output_dir)
    assert code == 2
    assert line == (f"unift train: error: {run_dir / 'checkpoint.pt'}: No space left on device; the previous "
                    "checkpoint is kept")
    assert checkpoint.load(run_dir)["step"] == 2
    assert not list(run_dir.glob("*.tmp"))


def test_a_full_disk_at_the_final_model_is_one_line_and_resume_writes_it(tmp_path, capsys, monkeypatch):
    """The model's write meets a full disk after part of its file: exit 2, one line naming
    model/, no partial model directory left; the final checkpoint (written first) is whole, and
    resume=true writes the model from it: the trained weights, no step trained again."""
    from safetensors.torch import load_file
    from transformers import PreTrainedModel

    def full(self, directory, *args, **kwargs):
        (Path(directory) / "model.safetensors").write_bytes(b"\0" * 100)  # torn
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    config = config_for(tmp_path, steps=2)
    code, line = main(tmp_path, capsys, config)
    run_dir = Path(config.output_dir)
    assert code == 2
    assert line == (f"unift train: error: {run_dir / 'model'}: No space left on device; no model was written "
                    "(the final checkpoint is kept: resume=true writes the model from it)")
    assert not (run_dir / "model").exists() and not list(run_dir.glob("model.*"))
    ckpt = checkpoint.load(run_dir)
    assert ckpt["step"] == 2
    monkeypatch.undo()
    code, _ = main(tmp_path, capsys, config, "resume=true")
    assert code == 0
    saved = load_file(run_dir / "model" / "model.safetensors")
    assert set(saved) == set(ckpt["model"])
    for name, tensor in ckpt["model"].items():
        torch.testing.assert_close(saved[name], tensor, rtol=0, atol=0, msg=name)
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]
