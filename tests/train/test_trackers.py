"""report_to, samples.jsonl and one progress display.

One `unift train` run in a subprocess (so wandb, mlflow and trackio keep their process-wide
state out of the test process) on a tiny model saved as a model directory (so transformers
loads it with "Loading weights" and saves it with "Writing model shards"), with every installed
tracker and a held-out evaluation of two variants (at step 0, at step 2 by `every_steps`, and
the final one at step 3): each tracker's offline files hold metrics.jsonl's values under
metrics.jsonl's names and evals.jsonl's values as `eval/<label>/<metric>` at their steps, and
stderr holds none of transformers' bars. Config errors and samples.jsonl in-process.
"""

import json
import os
import sqlite3
import struct
import subprocess
import sys

import pytest
import yaml

from tests.rl import toy_task  # noqa: F401  (registers the "vowels" task)
from tests.rl.test_rl_trainer import config_with, task_source
from tests.train.helpers import DATA
from unift.config import ConfigError, build_config, load_config, validate
from unift.train import trackers
from unift.train.metrics import read_metrics
from unift.train.run import samples_due, train


def installed(name: str) -> bool:
    try:
        trackers.check_report_to([name])
    except ValueError:
        return False
    return True


TRACKED = [name for name in trackers.TRACKERS if installed(name)]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`unift train` with the progress bar on and every installed tracker; (run_dir, stdout,
    stderr, trackio's directory)."""
    from unift.models import tiny

    tmp = tmp_path_factory.mktemp("trackers")
    model, tokenizer = tiny("tiny")
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    config = {"model": {"name": str(tmp / "model")}, "steps": 3, "max_length": 128, "precision": "fp32",
              "output_dir": str(tmp / "run"), "report_to": TRACKED,
              "eval": {"task": "countdown", "variants": {"id": {"variant": "id"}, "ood": {"variant": "ood_numbers"}},
                       "n": 3, "k": 2, "max_new_tokens": 6, "every_steps": 2},
              "sources": [{"name": "demo", "kind": "demonstration", "objective": "sft", "batch_size": 2,
                           "path": str(DATA / "demonstrations.jsonl")}]}
    (tmp / "run.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items()  # the user settings that would send a tracker elsewhere
           if k not in ("WANDB_MODE", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME",
                        "TRACKIO_SPACE_ID", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    env.update(OMP_NUM_THREADS="1", TRACKIO_DIR=str(tmp / "trackio"), WANDB_CONFIG_DIR=str(tmp / "wandb-config"),
               WANDB_CACHE_DIR=str(tmp / "wandb-cache"), WANDB_DATA_DIR=str(tmp / "wandb-data"))
    out = subprocess.run([sys.executable, "-m", "unift.cli", "train", str(tmp / "run.yaml")], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp / "run", out.stdout, out.stderr, tmp / "trackio"


def expected(run_dir, key: str) -> dict[int, float]:
    rows = read_metrics(run_dir)
    assert len(rows) == 3
    return {r["step"]: r[key] for r in rows}


EVAL_METRICS = ("n", "pass@1", "reward_mean", "format_rate", "finished_rate", "truncated_rate",
                "completion_tokens_mean", "pass@2")


def expected_evals(run_dir) -> dict[str, dict[int, float]]:
    """{tracker name `eval/<label>/<metric>`: {step: value}} from the run's evals.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert [(r["step"], r["label"]) for r in rows] == [(0, "id"), (0, "ood"), (2, "id"), (2, "ood"),
                                                       (3, "id"), (3, "ood")]
    assert all(set(EVAL_METRICS) <= set(r) for r in rows)
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        for key in EVAL_METRICS:
            out.setdefault(f"eval/{r['label']}/{key}", {})[r["step"]] = r[key]
    return out


def test_one_progress_display(cli_run):
    _, stdout, stderr, _ = cli_run
    assert "Loading weights" not in stderr and "Writing model shards" not in stderr, stderr[-2000:]
    assert "3/3" in stdout  # unift's own bar ran, finished


def test_tensorboard_event_file_has_the_metrics(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = cli_run[0]
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    for key in ("loss", "demo/loss"):
        got = {e.step: e.value for e in events.Scalars(key)}
        assert got == pytest.approx(expected(run_dir, key), rel=1e-6)  # float32 in the event file


def test_tensorboard_event_file_has_the_evaluations(cli_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = cli_run[0]
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    evals = expected_evals(run_dir)
    assert sorted(t for t in events.Tags()["scalars"] if t.startswith("eval/")) == sorted(evals)
    for key, want in evals.items():
        got = {e.step: e.value for e in events.Scalars(key)}
        assert got == pytest.approx(want, rel=1e-6), key


def wandb_history(path) -> list[dict]:
    """The history records of a .wandb file: W&B's LevelDB-style log (a 7-byte header, then 32 KiB
    blocks of chunks: crc32, length, type 1 full / 2 first / 3 middle / 4 last) of protobuf
    `Record`s."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunks, rows = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunks)
            chunks = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_wandb_offline_run_has_the_metrics(cli_run):
    if "wandb" not in TRACKED:
        pytest.skip("wandb is not installed")
    run_dir = cli_run[0]
    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    history = wandb_history(path)
    for key in ("loss", "demo/loss"):
        assert {h["_step"]: h[key] for h in history if key in h} == expected(run_dir, key)
    for key, want in expected_evals(run_dir).items():
        assert {h["_step"]: h[key] for h in history if key in h} == want, key


def test_mlflow_local_store_has_the_metrics(cli_run):
    if "mlflow" not in TRACKED:
        pytest.skip("mlflow is not installed")
    run_dir = cli_run[0]
    db = sqlite3.connect(run_dir / "mlflow.db")
    (name,) = db.execute("select name from experiments where name != 'Default'").fetchone()
    assert name == "unift"
    for key in ("loss", "demo/loss"):
        got = dict(db.execute("select step, value from metrics where key = ?", (key,)).fetchall())
        assert got == expected(run_dir, key)
    for key, want in expected_evals(run_dir).items():  # MLflow's names: pass@1 -> pass_at_1
        got = dict(db.execute("select step, value from metrics where key = ?",
                              (key.replace("@", "_at_"),)).fetchall())
        assert got == want, key
    params = dict(db.execute("select key, value from params").fetchall())  # the config, flattened
    assert params["steps"] == "3" and params["optim.lr"] == "1e-05" and json.loads(params["report_to"]) == TRACKED
    db.close()


def test_trackio_local_database_has_the_metrics(cli_run):
    if "trackio" not in TRACKED:
        pytest.skip("trackio is not installed")
    run_dir, _, _, trackio_dir = cli_run
    db = sqlite3.connect(trackio_dir / "unift.db")
    rows = db.execute("select step, metrics from metrics where run_name = 'run'").fetchall()
    db.close()
    rows = [(step, json.loads(m)) for step, m in rows]
    for key in ("loss", "demo/loss"):
        assert {step: m[key] for step, m in rows if key in m} == expected(run_dir, key)
    for key, want in expected_evals(run_dir).items():
        assert {step: m[key] for step, m in rows if key in m} == want, key


# -- config errors -------------------------------------------------------------------------------


def test_a_missing_tracker_package_is_a_config_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # importlib finds no wandb
    path = tmp_path / "run.yaml"
    path.write_text("report_to: [tensorboard, wandb]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: report_to: wandb needs the wandb package, which is not installed: "
                              "pip install wandb")


def test_mlflow_local_store_needs_sqlalchemy_and_alembic(monkeypatch):
    monkeypatch.setitem(sys.modules, "alembic", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match=r"report_to: mlflow's local store .* needs alembic.*pip install alembic"):
        build_config({"report_to": ["mlflow"]})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")  # a server: no local store
    if installed("mlflow"):
        assert build_config({"report_to": ["mlflow"]}).report_to == ["mlflow"]


def test_a_source_named_eval_is_refused():
    with pytest.raises(ConfigError, match=r"^sources\.0\.name: 'eval' is taken by the evaluations' metrics"):
        validate(build_config({"sources": [{"name": "eval", "kind": "demonstration", "path": "x.jsonl"}]}))


def test_mlflow_names():
    assert trackers.mlflow_names({"eval/id/pass@1": 0.5, "eval/a b/x:y": 1, "reward/f#2": 2}) == {
        "eval/id/pass_at_1": 0.5, "eval/a b/x:y": 1, "reward/f_2": 2}


def test_unknown_tracker_and_none():
    with pytest.raises(ConfigError, match=r"config: report_to: unknown tracker 'comet'; known: tensorboard, wandb"):
        build_config({"report_to": ["comet"]})
    assert build_config({}).report_to == ["tensorboard"]
    assert build_config({"report_to": []}).report_to == []


def test_log_completions_is_trls_name_for_samples_every():
    assert build_config({"log_completions": False}).samples_every == 0
    assert build_config({"log_completions": True}).samples_every == 1
    with pytest.raises(ConfigError, match="samples_every"):
        build_config({"log_completions": True, "samples_every": 2})


# -- samples.jsonl -------------------------------------------------------------------------------


def test_samples_due_first_every_nth_and_last():
    # every 3 of 7 steps: steps 1, 3, 6 and 7 (1-based), i.e. 0, 2, 5, 6
    assert [s for s in range(7) if samples_due(s, 3, 7)] == [0, 2, 5, 6]
    assert [s for s in range(3) if samples_due(s, 1, 3)] == [0, 1, 2]
    assert not any(samples_due(s, 0, 7) for s in range(7))


def test_samples_jsonl_every_n_steps_with_prompt_completion_reward(tmp_path):
    config = config_with(tmp_path, [task_source(preset="rft", num_generations=2, max_new_tokens=6)], steps=4,
                         samples_every=3, report_to=[])
    config.sources[0].batch_size = 2
    run_dir = train(config)
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == [1, 3, 4]  # the first, the 3rd, the last
    assert not (run_dir / "tb").exists()  # report_to: []
    for r in rows:
        assert r["source"] == "vowels" and "Write something (#" in r["prompt"]
        assert isinstance(r["completion"], str) and isinstance(r["correct"], bool)
        # the vowels task's reward: the share of lowercase vowels in the completion (toy_task.py)
        text = r["completion"].replace("<|im_end|>", "")
        assert r["reward"] == pytest.approx(sum(c in "aeiou" for c in text) / max(1, len(text)))


def test_no_samples_with_samples_every_0(tmp_path):
    config = config_with(tmp_path, [task_source(preset="rft", num_generations=2, max_new_tokens=6)], steps=2,
                         samples_every=0, report_to=[])
    config.sources[0].batch_size = 2
    run_dir = train(config)
    assert (run_dir / "samples.jsonl").read_text() == ""


def test_library_bars_are_restored_after_the_run():
    from transformers.utils import logging as hf

    before = hf.is_progress_bar_enabled()
    with trackers.one_progress_display(True):
        assert not hf.is_progress_bar_enabled()
    assert hf.is_progress_bar_enabled() == before


def test_samples_carry_the_verifiers_feedback(tmp_path, monkeypatch):
    """A verifier whose feedback names its own reward: each row's feedback is its row's."""
    from tests.rl.toy_task import Vowels
    from unift.tasks import Score

    def score(self, problem, completion):
        share = sum(c in "aeiou" for c in completion) / max(1, len(completion))
        return Score(share, share > 0.5, share, f"vowel share {share:.4f}")

    monkeypatch.setattr(Vowels, "score", score)
    config = config_with(tmp_path, [task_source(preset="rft", num_generations=2, max_new_tokens=6)], steps=1,
                         report_to=[])
    config.sources[0].batch_size = 2
    rows = [json.loads(line) for line in (train(config) / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert r["feedback"] == f"vowel share {r['reward']:.4f}"
