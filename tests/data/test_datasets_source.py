"""Sources from `datasets`: .json, .parquet and .csv files through `datasets.load_dataset`, and
`datasets.Dataset` objects from Python (`SourceConfig(dataset=ds)`). Rows are checked like JSONL
lines; an error names the file (or `sources.N.dataset`), the row and the field. Nothing leaves
the machine."""

import dataclasses
import json
import math
import socket

import datasets
import huggingface_hub
import pytest
import yaml

from tests.train.helpers import DATA, tiny_run
from unift.config import ConfigError, SourceConfig, load_config, validate
from unift.data.records import RecordError, load_jsonl
from unift.data.sources import load_records
from unift.train.metrics import read_metrics
from unift.train.run import train


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """datasets' Arrow cache in the test's directory, not the user's."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def rows_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def write(rows: list[dict], path, fmt: str):
    if fmt == "json":  # a JSON array, the other layout datasets' json builder reads
        path.write_text(json.dumps(rows))
        return path
    # every column of every row (from_list would take the first row's columns only)
    columns = {key: [row.get(key) for row in rows] for key in dict.fromkeys(k for row in rows for k in row)}
    ds = datasets.Dataset.from_dict(columns)
    if fmt == "parquet":
        ds.to_parquet(str(path))
    else:
        ds.to_csv(str(path), index=False)
    return path


def plain(records):
    return [dataclasses.replace(r, where="") for r in records]


CASES = [  # (format, kind, example file): CSV holds only flat columns (score.jsonl has text prompts)
    ("json", "demonstration", "demonstrations.jsonl"),  # prompt/completion rows mixed with messages rows
    ("json", "preference", "preferences.jsonl"),
    ("parquet", "demonstration", "demonstrations.jsonl"),
    ("parquet", "binary", "binary.jsonl"),
    ("parquet", "preference", "preferences.jsonl"),
    ("csv", "score", "score.jsonl"),
]


@pytest.mark.parametrize("fmt,kind,name", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_file_gives_the_records_of_its_jsonl_twin(tmp_path, fmt, kind, name):
    path = write(rows_of(name), tmp_path / f"data.{fmt}", fmt)
    records = load_records(path, kind)
    assert plain(records) == plain(load_jsonl(DATA / name, kind))
    assert records[3].where == f"{path}, row 3"


@pytest.mark.parametrize("fmt,row,needle", [
    ("parquet", {"prompt": "p", "completion": "c", "score": 3.0}, "row 2: field 'score' must lie in [0, 1]"),
    ("json", {"prompt": "p"}, "row 2: missing field 'completion' (row has ['prompt'])"),  # None in Arrow
    ("csv", {"prompt": "p", "completion": "c", "score": None}, "row 2: missing field 'score'"),
    ("json", {"prompt": "p", "completion": "c", "score": "high"}, "row 2: field 'score' must be a finite number"),
])
def test_a_bad_row_names_the_file_row_and_field(tmp_path, fmt, row, needle):
    good = {"prompt": "p", "completion": "c", "score": 0.5}
    path = write([good, good, row], tmp_path / f"scores.{fmt}", fmt)
    with pytest.raises(RecordError) as err:
        load_records(path, "score")
    assert str(err.value).startswith(f"{path}, row 2: ")
    assert needle in str(err.value)


def test_a_bad_message_names_the_row_and_message(tmp_path):
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    bad = [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}]
    path = write([{"messages": chat}, {"messages": bad}], tmp_path / "chat.parquet", "parquet")
    with pytest.raises(RecordError, match=r"chat.parquet, row 1: field 'messages'\[1\]: role 'robot' is not one of"):
        load_records(path, "demonstration")


@pytest.mark.parametrize("name,content,needle", [
    ("broken.json", '[{"prompt": "p", "completion": ', "broken.json: datasets cannot read it as json: "),
    ("fake.parquet", "not parquet", "fake.parquet: datasets cannot read it as parquet: "),
    ("empty.csv", "", "empty.csv: no records"),
    ("missing.csv", None, "missing.csv: no such file"),
])
def test_an_unreadable_file_is_one_error_naming_it(tmp_path, name, content, needle):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(RecordError, match=needle):
        load_records(tmp_path / name, "demonstration")


def test_reading_a_file_opens_no_connection(tmp_path, monkeypatch):
    """load_dataset pings the Hub to count a "download" even for a local file unless offline:
    unift turns that off for the call (and restores datasets' settings)."""
    calls = []

    def refuse(*args, **kwargs):  # a name lookup or a connection: either means a request went out
        calls.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as without tests/conftest.py
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", True)
    path = write(rows_of("score.jsonl"), tmp_path / "scores.json", "json")
    assert len(load_records(path, "score")) == 16
    assert calls == []
    assert datasets.config.HF_HUB_OFFLINE is False


def pref_dataset():
    return datasets.Dataset.from_list(rows_of("preferences.jsonl"))


def test_a_dataset_object_trains(tmp_path):
    config = tiny_run(tmp_path, [{"name": "pref", "kind": "preference", "objective": "dpo-sigmoid",
                                  "dataset": pref_dataset()}], steps=3, **{"optim.lr": 2e-3})
    run_dir = train(config)
    rows = read_metrics(run_dir)
    assert rows[0]["loss"] == pytest.approx(math.log(2), rel=1e-5)  # pi = pi_ref at step 1: -log sigma(0)
    assert rows[-1]["pref/rewards/margin"] > 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["sources"][0]["dataset"]
    fingerprint = pref_dataset()._fingerprint  # a hash of the rows: the same for the same rows
    assert saved == f"<datasets.Dataset {fingerprint}: 8 rows (prompt, chosen, rejected)>"


def test_a_bad_dataset_row_names_the_source_row_and_field(tmp_path):
    rows = rows_of("preferences.jsonl")
    rows[5]["rejected"] = rows[5]["chosen"]
    bad = datasets.Dataset.from_list(rows)
    config = tiny_run(tmp_path, [{"kind": "preference", "objective": "dpo", "dataset": bad}])
    with pytest.raises(RecordError, match=r"^sources.0.dataset, row 5: fields 'chosen' and 'rejected' are identical"):
        train(config)
    assert not (tmp_path / "run").exists()  # refused before the run directory, let alone the model


def test_what_is_not_a_dataset_is_refused_by_name(tmp_path):
    splits = datasets.DatasetDict({"train": pref_dataset()})
    with pytest.raises(RecordError, match=r"sources.0.dataset: a DatasetDict of splits \(train\); pass one split"):
        load_records(None, "preference", dataset=splits, name="sources.0.dataset")
    # a config.yaml written by a run holds the dataset's description, which no rerun can read
    with pytest.raises(RecordError, match="expected a datasets.Dataset, got str .in YAML, give the data as a file"):
        load_records(None, "preference", dataset="<datasets.Dataset: 8 rows>", name="sources.0.dataset")
    config = tiny_run(tmp_path, [{"kind": "preference", "objective": "dpo", "dataset": pref_dataset(),
                                  "path": str(DATA / "preferences.jsonl")}])
    with pytest.raises(ConfigError, match="sources.0: both path and dataset are given"):
        validate(config)


def test_assistant_turns_is_checked_by_key(tmp_path):
    config = tiny_run(tmp_path, [{"kind": "demonstration", "path": "x.jsonl", "assistant_turns": "first"}])
    with pytest.raises(ConfigError, match="sources.0.assistant_turns: expected one of all, last, got 'first'"):
        validate(config)
    assert SourceConfig().assistant_turns == "all"


def test_resume_tells_a_changed_dataset_by_its_fingerprint(tmp_path):
    from unift.train.checkpoint import RunDirError

    source = {"name": "pref", "kind": "preference", "objective": "dpo-sigmoid"}
    train(tiny_run(tmp_path, [{**source, "dataset": pref_dataset()}], steps=2))
    # the same rows again (a new object, the same fingerprint): the run continues
    assert len(read_metrics(train(tiny_run(tmp_path, [{**source, "dataset": pref_dataset()}], steps=2,
                                           resume=True)))) == 2
    other = datasets.Dataset.from_list(rows_of("preferences.jsonl")[::-1])
    with pytest.raises(RunDirError, match=rf"resume: settings changed since .*: sources.0.dataset \('<datasets.Dataset "
                                          rf"{pref_dataset()._fingerprint}: \.\.\. -> '<datasets.Dataset "
                                          rf"{other._fingerprint}: \.\.\.\)"):
        train(tiny_run(tmp_path, [{**source, "dataset": other}], steps=2, resume=True))


def test_a_parquet_path_trains_from_yaml(tmp_path):
    """`path: corpus.parquet` in a config, relative to the config file, as a .jsonl path is."""
    write([{"text": f"The number {i} follows {i - 1}."} for i in range(1, 9)], tmp_path / "corpus.parquet", "parquet")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({
        "model": {"name": "tiny"}, "steps": 3, "progress": False, "output_dir": str(tmp_path / "run"),
        "optim": {"lr": 2e-3, "schedule": "constant"},
        "sources": [{"kind": "demonstration", "objective": "sft", "path": "corpus.parquet"}]}))
    rows = read_metrics(train(load_config(tmp_path / "run.yaml"), config_dir=tmp_path))
    assert rows[-1]["loss"] < rows[0]["loss"]
