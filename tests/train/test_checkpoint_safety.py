"""Checkpoints never run code when loaded: a crafted, damaged or foreign checkpoint.pt gives a
one-line error naming the file, and what a checkpoint stores (RNG and stream states included)
survives the safe loader exactly."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import random

import numpy as np
import pytest
import torch

from tests.train.helpers import source, tiny_run
from unift.config import RolloutSpec, dump_config
from unift.data.mixture import Stream
from unift.rollout.task_source import TaskRollout
from unift.train import checkpoint
from unift.train.optim import MasterAdamW
from unift.train.run import main as train_main
from unift.train.run import rollout_args


class Touch:
    """Unpickling this creates `path` (the payload of a crafted checkpoint)."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


class System:
    """Unpickling this runs a shell command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def crafted_files(marker: pathlib.Path) -> dict[str, bytes]:
    """Checkpoints whose unpickling would create `marker`: torch's zip format and a bare pickle."""
    buffer = io.BytesIO()
    torch.save({"step": 1, "model": {}, "payload": Touch(marker)}, buffer)
    return {
        "zip": buffer.getvalue(),
        "pickle": pickle.dumps({"step": 1, "payload": System(f"touch {marker}")}),
    }


def assert_refused(run_dir: pathlib.Path, match: str = "not a valid unift checkpoint"):
    with pytest.raises(checkpoint.CheckpointError, match=match) as err:
        checkpoint.load(run_dir)
    message = str(err.value)
    assert message.startswith(f"{run_dir / checkpoint.NAME}: ") and "\n" not in message, message
    assert "weights_only" not in message  # torch's advice to load unsafely is not passed on
    return message


@pytest.mark.parametrize("kind", ["zip", "pickle"])
def test_crafted_checkpoint_does_not_execute(tmp_path, kind):
    marker = tmp_path / "pwned"
    (tmp_path / checkpoint.NAME).write_bytes(crafted_files(marker)[kind])
    message = assert_refused(tmp_path)
    assert not marker.exists()
    if kind == "zip":
        assert "it refers to getattr" in message  # names what it refused to build


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty or truncated"),
        (os.urandom(4096), "not a valid unift checkpoint"),
        (b"step: 3\n", "not a valid unift checkpoint"),
    ],
    ids=["empty", "random", "text"],
)
def test_damaged_checkpoint_names_the_file(tmp_path, content, match):
    (tmp_path / checkpoint.NAME).write_bytes(content)
    assert_refused(tmp_path, match)


def test_truncated_and_foreign_checkpoints_name_the_file(tmp_path):
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    checkpoint.save(tmp_path, step=1, model=model, optimizer=optimizer, scheduler=scheduler,
                    streams={})
    path = tmp_path / checkpoint.NAME
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert_refused(tmp_path)
    torch.save([1, 2, 3], path)
    assert_refused(tmp_path, r"\(not a dict\)")
    torch.save({"step": 1, "model": {}}, path)
    assert_refused(tmp_path, "missing optimizer")


def test_unift_train_resume_reports_a_crafted_checkpoint_in_one_line(tmp_path, capsys):
    config = tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl")], steps=2)
    config.resume = True
    run_dir = pathlib.Path(config.output_dir)
    run_dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    (run_dir / checkpoint.NAME).write_bytes(crafted_files(marker)["zip"])
    dump_config(config, tmp_path / "config.yaml")
    assert train_main([str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert err.startswith(f"unift train: error: {run_dir / checkpoint.NAME}: not a valid")
    assert "\n" not in err


def test_a_pickled_model_directory_does_not_execute(tmp_path, capsys):
    """`model.name` naming a directory whose weights are a crafted pytorch_model.bin: transformers
    loads it with torch's weights-only unpickler, which refuses the payload; `unift train` exits 2
    with one line naming the directory (not torch's advice to load it unsafely)."""
    from unift import models

    policy, tokenizer = models.load("tiny")
    model_dir = tmp_path / "model"
    policy.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    for f in model_dir.glob("*.safetensors"):
        f.unlink()
    marker = tmp_path / "pwned"
    torch.save({"payload": Touch(marker)}, model_dir / "pytorch_model.bin")
    config = tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl")], steps=1)
    config.model.name = str(model_dir)
    dump_config(config, tmp_path / "config.yaml")
    capsys.readouterr()  # save_pretrained's progress bar
    assert train_main([str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert err.startswith(f"unift train: error: {model_dir}: its pickled weights name code") and "\n" not in err
    assert "weights_only" not in err
    assert not (pathlib.Path(config.output_dir) / "model").exists()


def draws() -> tuple:
    """Numbers from every global RNG, including the cached second Gaussians of Python and NumPy."""
    return (
        [random.random() for _ in range(3)] + [random.gauss(0, 1)],
        np.random.rand(3).tolist() + [np.random.normal()],
        torch.rand(3).tolist(),
    )


def test_round_trip_restores_rng_and_stream_states_exactly(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached Gaussian in each generator: part of the state
    np.random.normal()
    stream = Stream(list(range(7)), seed=4, index=1)
    stream.take(10)
    rollout = TaskRollout(None, None, None, seed=5, **rollout_args(RolloutSpec()))
    rollout.rng.random()
    model = torch.nn.Linear(4, 4).to(torch.bfloat16)
    optimizer = MasterAdamW(model.parameters(), lr=1e-3)
    model.weight.grad = torch.ones_like(model.weight)
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)
    checkpoint.save(tmp_path, step=7, model=model, optimizer=optimizer, scheduler=scheduler,
                    streams={"demo": stream, "demo/rollout": rollout}, extra={"flops": 1.5})
    want = draws(), stream.take(5), [rollout.rng.random() for _ in range(3)]

    ckpt = checkpoint.load(tmp_path)
    stream2 = Stream(list(range(7)), seed=4, index=1)
    rollout2 = TaskRollout(None, None, None, seed=0, **rollout_args(RolloutSpec()))
    model2 = torch.nn.Linear(4, 4).to(torch.bfloat16)
    optimizer2 = MasterAdamW(model2.parameters(), lr=1e-3)
    scheduler2 = torch.optim.lr_scheduler.LambdaLR(optimizer2, lambda s: 0.5)
    step = checkpoint.restore(ckpt, model=model2, optimizer=optimizer2, scheduler=scheduler2,
                              streams={"demo": stream2, "demo/rollout": rollout2})
    got = draws(), stream2.take(5), [rollout2.rng.random() for _ in range(3)]
    assert step == 7 and ckpt["extra"] == {"flops": 1.5}
    assert got == want
    for a, b in zip(optimizer.masters, optimizer2.masters, strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    assert scheduler2.state_dict() == scheduler.state_dict()


def test_save_refuses_state_the_safe_loader_would_refuse(tmp_path):
    class Legacy:
        def state_dict(self):
            return {"rng": np.random.get_state()}  # holds a numpy array

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with pytest.raises(TypeError, match="streams/legacy/rng/1: a ndarray"):
        checkpoint.save(tmp_path, step=1, model=model, optimizer=optimizer, scheduler=scheduler,
                        streams={"legacy": Legacy()})
    assert not (tmp_path / checkpoint.NAME).exists()
