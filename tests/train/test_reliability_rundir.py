"""Run directories lose nothing (docs/RELIABILITY.md, "Run directories"): one live run per
directory (a lock), a directory holding a run is refused unless resume=true or overwrite=true,
a resumed run refuses settings that would alter it, skips a torn last log line and removes what
killed runs left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.train.helpers import DATA, ROOT, source, tiny_run
from unift.config import UniftWarning, dump_config
from unift.data.mixture import Stream
from unift.train import checkpoint, run
from unift.train.distributed import Dist
from unift.train.metrics import open_step_log, read_metrics


def config_for(tmp_path: Path, **overrides):
    overrides = {"steps": 2, **overrides}
    return tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl", name="demo", batch_size=2)],
                    **overrides)


def cli_error(capsys, config, *overrides) -> str:
    path = Path(config.output_dir).parent / "config.yaml"
    dump_config(config, path)
    assert run.main([str(path), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unift train: error: ") and "\n" not in err, err
    return err[len("unift train: error: "):]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-step tiny run, copied for each test that changes it."""
    tmp = tmp_path_factory.mktemp("finished")
    run.train(config_for(tmp))
    return tmp


@pytest.fixture
def done(finished, tmp_path):
    shutil.copytree(finished / "run", tmp_path / "run")
    return tmp_path


# -- the lock ---------------------------------------------------------------------------------


def test_a_second_run_into_a_live_directory_fails_in_one_line(tmp_path, capsys):
    config = config_for(tmp_path)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True)
    with checkpoint.RunLock(run_dir):
        assert (run_dir / checkpoint.LOCK).read_text() == f"{os.getpid()}\n"
        message = cli_error(capsys, config)
    assert message == (f"{run_dir}: in use by another unift run (pid {os.getpid()}, {run_dir / '.lock'}); "
                       "wait for it to end or choose another output_dir")
    assert sorted(p.name for p in run_dir.iterdir()) == []  # the lock went with its holder


def test_a_lock_held_by_another_process_and_taken_over_once_it_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from unift.train.checkpoint import RunLock; "
         "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)", str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(checkpoint.RunDirError, match=f"in use by another unift run \\(pid {holder.pid},"):
            checkpoint.RunLock(run_dir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / checkpoint.LOCK).read_text().strip() == str(holder.pid)  # left behind by the kill
    with pytest.warns(UniftWarning, match=f"taking over the stale lock of pid {holder.pid}"):
        lock = checkpoint.RunLock(run_dir).acquire()
    assert (run_dir / checkpoint.LOCK).read_text() == f"{os.getpid()}\n"
    lock.release()
    assert not (run_dir / checkpoint.LOCK).exists()


def test_two_concurrent_runs_cannot_both_write(tmp_path):
    """Two `unift train` processes into one directory: exactly one trains, the other exits 2."""
    config = config_for(tmp_path, steps=3)
    path = tmp_path / "config.yaml"
    dump_config(config, path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "unift.cli", "train", str(path)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    assert [code for code, _ in results] == [0, 2], results
    refused = results[1][1].strip()
    # the loser was either turned away by the lock, or came second and found the winner's run
    assert "in use by another unift run" in refused or "holds a run" in refused, refused
    assert [r["step"] for r in read_metrics(config.output_dir)] == [1, 2, 3]


# -- refusing a directory that holds a run ----------------------------------------------------


def test_a_finished_run_is_refused_and_kept(done, capsys):
    run_dir = done / "run"
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    metrics = (run_dir / "metrics.jsonl").read_text()
    message = cli_error(capsys, config_for(done))
    assert message == (f"output_dir: {run_dir} holds a run (config.yaml, metrics.jsonl, checkpoint.pt, model, "
                       "finished.json); "
                       "resume=true continues it, overwrite=true replaces it, or choose another output_dir")
    assert (run_dir / "metrics.jsonl").read_text() == metrics
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


@pytest.mark.parametrize("leftover", ["config.yaml", "metrics.jsonl", "finished.json"])
def test_any_file_of_a_run_marks_it(tmp_path, capsys, leftover):
    config = config_for(tmp_path)
    Path(config.output_dir).mkdir(parents=True)
    (Path(config.output_dir) / leftover).write_text("")
    assert f"holds a run ({leftover})" in cli_error(capsys, config)


def test_overwrite_replaces_the_run_and_nothing_else(done):
    run_dir = done / "run"
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "evals.jsonl").write_text('{"step": 9}\n')
    config = config_for(done, overwrite=True, steps=1)
    run.train(config)
    assert [r["step"] for r in read_metrics(run_dir)] == [1]
    assert not (run_dir / "evals.jsonl").exists()
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["steps"] == 1
    assert json.loads((run_dir / checkpoint.FINISHED).read_text())["step"] == 1


def test_a_finished_run_writes_finished_json_last(finished):
    """finished.json: the last step and the FLOPs of the run, as its last metrics row."""
    from unift import __version__

    run_dir = finished / "run"
    last = read_metrics(run_dir)[-1]
    assert json.loads((run_dir / checkpoint.FINISHED).read_text()) == {"step": 2, "flops": last["flops"],
                                                                         "unift": __version__}
    assert last["step"] == 2 and last["flops"] > 0


def test_a_run_over_a_finished_one_is_unfinished_until_it_ends(done, monkeypatch):
    """A run that starts in a directory holding finished.json removes it before its first step
    (overwrite=true with the outputs, as soon as the directory is claimed; resume=true before it
    writes config.yaml): killed on the way, it never looks finished."""
    run_dir = done / "run"
    finished_json = (run_dir / checkpoint.FINISHED).read_text()

    def killed(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(run, "save_model", killed)  # resumed, then killed at the very end
    with pytest.raises(RuntimeError, match="killed"):
        run.train(config_for(done, resume=True))
    assert not (run_dir / checkpoint.FINISHED).exists() and (run_dir / checkpoint.NAME).exists()
    (run_dir / checkpoint.FINISHED).write_text(finished_json)
    monkeypatch.setattr(run, "build_policy", killed)  # overwritten, then killed loading the model
    with pytest.raises(RuntimeError, match="killed"):
        run.train(config_for(done, overwrite=True))
    assert not (run_dir / checkpoint.FINISHED).exists() and not (run_dir / checkpoint.MODEL).exists()


# -- resume: config changes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["optim.lr=0.5"], "optim.lr (1e-05 -> 0.5)"),
        (["seed=1"], "seed (0 -> 1)"),
        (["steps=3"], "steps (2 -> 3)"),
        (["optim.schedule=linear"], "optim.schedule ('cosine' -> 'linear')"),
        (["sources.0.objective=uft-implicit-mse"], "sources.0.objective ('sft' -> 'uft-implicit-mse')"),
        (["sources.0.weight=0.5"], "sources.0.weight (1.0 -> 0.5)"),
        (["model.name=tiny:layers=1"], "model.name ('tiny' -> 'tiny:layers=1')"),
        (["max_length=64"], "max_length (128 -> 64)"),
        (["precision=bf16"], "precision ('auto' -> 'bf16')"),
        ([f"sources.1={{kind: preference, objective: dpo, path: {DATA / 'preferences.jsonl'}}}"],
         "sources (1 items -> 2 items)"),
        (["optim.lr=0.5", "seed=3"], "optim.lr (1e-05 -> 0.5), seed (0 -> 3)"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_resume_refuses_changes_that_alter_the_run(done, capsys, overrides, named):
    run_dir = done / "run"
    kept = {name: (run_dir / name).read_bytes() for name in ("metrics.jsonl", "config.yaml", "checkpoint.pt")}
    message = cli_error(capsys, config_for(done), "resume=true", *overrides)
    assert message.startswith(f"resume: settings changed since {run_dir / 'checkpoint.pt'}: {named}; "
                              "they would alter the run"), message
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept


def test_resume_allows_safe_changes(done, capsys):
    run_dir = done / "run"
    overrides = ["resume=true", "save_every=1", "progress=true", "diagnostics=false", "diagnostics_every=3",
                 "max_flops=1e18", "gradient_checkpointing=true", "max_record_chars=1000", "eval.n=3",
                 f"output_dir={run_dir}/../run"]
    path = done / "config.yaml"
    dump_config(config_for(done), path)
    assert run.main([str(path), *overrides]) == 0, capsys.readouterr().err
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]  # finished: nothing more to do
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["save_every"] == 1


def test_resume_checks_the_requested_precision_not_the_resolved_one(tmp_path):
    """config.yaml records what `auto` resolved to; the checkpoint keeps the request."""
    config = config_for(tmp_path)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    checkpoint.save(run_dir, step=1, model=model, optimizer=optimizer, scheduler=scheduler, streams={},
                    extra={"config": run.requested(config)})
    resolved = run.requested(config) | {"precision": "fp32"}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(resolved))
    config.resume = True
    assert run.resume_point(config, run_dir, Dist()) is not None
    config.precision = "fp32"  # the same as auto resolved to, but another request: refused
    with pytest.raises(checkpoint.RunDirError, match=r"precision \('auto' -> 'fp32'\)"):
        run.resume_point(config, run_dir, Dist())
    # an older checkpoint without the config: config.yaml, where auto matches any precision
    checkpoint.save(run_dir, step=1, model=model, optimizer=optimizer, scheduler=scheduler, streams={})
    config.precision = "auto"
    assert run.resume_point(config, run_dir, Dist()) is not None
    config.precision = "bf16"
    with pytest.raises(checkpoint.RunDirError, match=r"since .*config.yaml: precision \('fp32' -> 'bf16'\)"):
        run.resume_point(config, run_dir, Dist())


def test_resume_reads_a_field_added_since_at_its_default(tmp_path):
    """A checkpoint written before a RunConfig field existed holds no key for it: at its default
    the field is no change, at another value it is."""
    config = config_for(tmp_path)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    older = run.requested(config)
    del older["sources"][0]["weight"], older["optim"]["min_lr_ratio"]  # "added since", at defaults 1.0, 0.0
    checkpoint.save(run_dir, step=1, model=model, optimizer=optimizer, scheduler=scheduler, streams={},
                    extra={"config": older})
    config.resume = True
    assert run.resume_point(config, run_dir, Dist())["step"] == 1  # the defaults match: resumed
    config.optim.min_lr_ratio = 0.5
    with pytest.raises(checkpoint.RunDirError, match=r"optim.min_lr_ratio \(0.0 -> 0.5\)"):
        run.resume_point(config, run_dir, Dist())


def test_resume_without_a_checkpoint_compares_config_yaml(tmp_path, capsys):
    config = config_for(tmp_path)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True)
    dump_config(config, run_dir / "config.yaml")  # a run killed before its first checkpoint
    assert "seed (0 -> 5)" in cli_error(capsys, config, "resume=true", "seed=5")


def test_resume_with_another_model_size_is_refused(done, capsys):
    assert "model.name ('tiny' -> 'tiny:hidden_size=32')" in cli_error(
        capsys, config_for(done), "resume=true", "model.name=tiny:hidden_size=32")


def test_restore_into_another_model_names_the_parameter(tmp_path):
    def parts(n):
        model = torch.nn.Linear(n, 2)
        optimizer = torch.optim.AdamW(model.parameters())
        return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    model, optimizer, scheduler = parts(4)
    checkpoint.save(tmp_path, step=1, model=model, optimizer=optimizer, scheduler=scheduler, streams={})
    bigger, optimizer, scheduler = parts(8)
    before = bigger.weight.detach().clone()
    with pytest.raises(checkpoint.CheckpointError, match=r"ckpt: the checkpoint does not match the model "
                                                         r"\(weight is \(2, 4\) there, \(2, 8\) here\)"):
        checkpoint.restore(checkpoint.load(tmp_path), model=bigger, optimizer=optimizer, scheduler=scheduler,
                           streams={}, where="ckpt")
    assert torch.equal(bigger.weight, before)


def test_resume_with_a_smaller_data_file_is_refused(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    shutil.copy(DATA / "demonstrations.jsonl", data)
    config = config_for(tmp_path)
    config.sources[0].path = str(data)
    run.train(config)
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:3]))  # the same file, edited since the checkpoint
    capsys.readouterr()
    message = cli_error(capsys, config, "resume=true")
    assert message == (f"{tmp_path / 'run' / 'checkpoint.pt'}: source 'demo': the data has 3 items, the "
                       f"checkpoint's had {len(lines)}; resume with the data the run started with")


def test_stream_state_checks_the_data_size():
    stream = Stream(list(range(5)), seed=0, index=0)
    stream.take(4)
    state = stream.state_dict()
    assert state == {"epoch": 0, "position": 4, "size": 5}
    with pytest.raises(ValueError, match="the data has 3 items, the checkpoint's had 5"):
        Stream(list(range(3)), 0, 0).load_state_dict(state)
    with pytest.raises(ValueError, match="the data has 3 items, the checkpoint's had more"):
        Stream(list(range(3)), 0, 0).load_state_dict({"epoch": 0, "position": 4})  # an older checkpoint


# -- resume: torn logs and stale temporaries ---------------------------------------------------


def test_resume_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    with open_step_log(path, resume_step=2) as f:
        f.write('{"step": 3, "loss": 1.0}\n')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')  # not a kill: a damaged log
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a row of a unift log"):
        open_step_log(path, resume_step=3)


def test_a_killed_run_with_a_torn_metrics_line_resumes(done):
    """The state a kill mid-write leaves: a torn metrics line, a partial checkpoint and
    model, a stale lock; resuming removes them and finishes."""
    run_dir = done / "run"
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "loss": 1.2')
    (run_dir / "checkpoint.pt.ab12cd_9.tmp").write_bytes(b"\0" * 1000)
    (run_dir / "model.x1y2z3w4").mkdir()
    (run_dir / "model.x1y2z3w4" / "model.safetensors").write_bytes(b"\0" * 500)
    (run_dir / "metrics.tmp").write_text("")
    (run_dir / checkpoint.LOCK).write_text("999999999\n")
    config = config_for(done, resume=True, steps=2)
    with pytest.warns(UserWarning) as caught:
        run.train(config)
    messages = [str(w.message) for w in caught]
    assert any("removed 3 temporary file(s) left by an interrupted run (0.0 MB)" in m for m in messages), messages
    assert any("taking over the stale lock of pid 999999999" in m for m in messages), messages
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["checkpoint.pt", "config.yaml", "finished.json", "metrics.jsonl", "model", "samples.jsonl",
                     "tb"], names


def test_only_the_temporaries_of_unift_are_removed(tmp_path):
    stale = ["checkpoint.pt.k2j4_9az.tmp", "finished.json.x1_9ab2c.tmp", "model.abcd1234", "metrics.tmp", "evals.tmp",
             "samples.tmp"]
    kept = ["checkpoint.pt", "finished.json", "model", "model.safetensors", "model.abcd12345", "notes.tmp",
            "checkpoint.pt.tmp", "finished.json.tmp"]
    for name in stale + kept:
        if name.startswith("model.abcd") or name == "model":
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text("x")
    assert checkpoint.remove_stale(tmp_path) == (6, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_compare_still_finds_a_finished_run(finished):
    """`unift compare` skips a run whose config.yaml matches: the file keeps its format."""
    from unift.compare.runs import finished as is_finished

    assert is_finished(finished / "run", config_for(finished))  # config.yaml: the resolved precision, as before
