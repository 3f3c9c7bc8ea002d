"""Bad inputs to `unift train` end as one line, `unift train: error: WHERE: WHAT`, naming the
file and line and field, or the config key, with exit code 2, before the model loads
(docs/RELIABILITY.md, "Inputs"). `--debug` shows the traceback instead."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import yaml

from tests.train.helpers import DATA, ROOT, source
from unift import cli
from unift.config import ConfigError, UniftWarning, load_config
from unift.data.records import RecordError, load_jsonl, parse_record
from unift.train import run

GOOD = {
    "demonstration": {"prompt": "p", "completion": "c"},
    "preference": {"prompt": "p", "chosen": "c", "rejected": "r"},
    "score": {"prompt": "p", "completion": "c", "score": 0.5},
}


def write_config(tmp_path, sources=None, **top) -> str:
    data = {"model": {"name": "tiny"}, "steps": 1, "max_length": 64, "progress": False,
            "output_dir": str(tmp_path / "run"),
            "sources": sources or [source("demonstration", "sft", "demonstrations.jsonl", batch_size=2)], **top}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def one_line_error(capsys, argv) -> str:
    """Run `unift train ARGV` in-process; it must fail with exit code 2 and one stderr line."""
    assert run.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unift train: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err[len("unift train: error: "):]


def data_file(tmp_path, kind, bad: str | bytes) -> str:
    """A JSONL file of `kind` whose line 2 is `bad` (line 1 is a good row)."""
    path = tmp_path / "data.jsonl"
    good = json.dumps(GOOD[kind]).encode() + b"\n"
    path.write_bytes(good + (bad if isinstance(bad, bytes) else bad.encode()) + b"\n")
    return str(path)


LONG_INT = "1" + "0" * 400  # 401 digits: a JSON number over float's range
HUGE_INT = "1" + "0" * 5000  # over Python's 4300-digit limit for int(str)

DATA_CASES = {
    # id: (kind, objective, line 2, what the message must name)
    "401-digit score": ("score", "una-score-mse", f'{{"prompt": "p", "completion": "c", "score": {LONG_INT}}}',
                        "field 'score' must be a finite number, got an integer of about 401 digits"),
    "lone surrogate": ("demonstration", "sft", '{"prompt": "\\ud800", "completion": "c"}',
                       "field 'prompt': a lone surrogate U+D800 at character 0"),
    "lone surrogate in a message": ("demonstration", "sft",
                                    '{"messages": [{"role": "user", "content": "q"}, '
                                    '{"role": "assistant", "content": "a\\udfff"}]}',
                                    "field 'messages[1].content': a lone surrogate U+DFFF"),
    "non-UTF-8 bytes": ("demonstration", "sft", b'{"prompt": "p\xff\xfe", "completion": "c"}',
                        "not UTF-8 text: byte 14 of the line is b'\\xff'"),
    "integer over 4300 digits": ("score", "una-score-mse",
                                 f'{{"prompt": "p", "completion": "c", "score": {HUGE_INT}}}',
                                 "invalid JSON: Exceeds the limit (4300 digits)"),
    "completion role not assistant": ("demonstration", "sft",
                                      '{"prompt": "p", "completion": [{"role": "user", "content": "c"}]}',
                                      "field 'completion'[0]: role 'user' is not 'assistant'"),
    "rejected role not assistant": ("preference", "dpo",
                                    '{"prompt": "p", "chosen": "c", "rejected": [{"role": "system", "content": "r"}]}',
                                    "field 'rejected'[0]: role 'system' is not 'assistant'"),
    "empty prompt": ("demonstration", "sft", '{"prompt": "", "completion": "c"}', "field 'prompt' is empty"),
    "empty completion": ("demonstration", "sft", '{"prompt": "p", "completion": ""}',
                         "field 'completion' is empty"),
    "empty prompt and completion": ("demonstration", "sft", '{"prompt": "", "completion": ""}',
                                    "field 'prompt' is empty"),
    "empty assistant message": ("demonstration", "sft",
                                '{"messages": [{"role": "user", "content": "q"}, '
                                '{"role": "assistant", "content": ""}]}',
                                "the assistant's message (the completion) is empty"),
    "unknown role in messages": ("demonstration", "sft",
                                 '{"messages": [{"role": "hacker", "content": "q"}, '
                                 '{"role": "assistant", "content": "a"}]}',
                                 "field 'messages'[0]: role 'hacker' is not one of system, user, assistant, tool"),
    "both prompt and messages": ("demonstration", "sft",
                                 '{"prompt": "p", "completion": "c", "messages": '
                                 '[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
                                 "the row has both 'messages' and 'prompt'/'completion'"),
    "chosen == rejected": ("preference", "dpo", '{"prompt": "p", "chosen": "same", "rejected": "same"}',
                           "fields 'chosen' and 'rejected' are identical"),
    "bad JSON": ("demonstration", "sft", '{"prompt": "p", "completion": ', "invalid JSON: Expecting value"),
    "deep nesting": ("demonstration", "sft", "[" * 100_000, "invalid JSON"),
}


@pytest.mark.parametrize("case", DATA_CASES, ids=list(DATA_CASES))
def test_bad_record_is_one_line_naming_file_line_and_field(tmp_path, capsys, case):
    kind, objective, line, needle = DATA_CASES[case]
    path = data_file(tmp_path, kind, line)
    config = write_config(tmp_path, [{"name": "s", "kind": kind, "objective": objective, "path": path}])
    message = one_line_error(capsys, [config])
    assert message.startswith(f"{path}:2: "), message
    assert needle in message, message
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = data_file(tmp_path, "demonstration", '{"prompt": "", "completion": "c"}')
    config = write_config(tmp_path, [{"kind": "demonstration", "objective": "sft", "path": path}])
    with pytest.raises(RecordError, match="field 'prompt' is empty"):
        run.main([config, "--debug"])
    with pytest.raises(RecordError):
        cli.main(["--debug", "train", config])
    assert cli.main(["train", config]) == 2  # the flag does not stick
    assert capsys.readouterr().err.strip().startswith("unift train: error: ")


def test_the_command_line_prints_one_line_and_exits_2(tmp_path):
    path = data_file(tmp_path, "score", f'{{"prompt": "p", "completion": "c", "score": {LONG_INT}}}')
    config = write_config(tmp_path, [{"kind": "score", "objective": "una-score-mse", "path": path}])
    proc = subprocess.run([sys.executable, "-m", "unift.cli", "train", config], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"unift train: error: {path}:2: field 'score' must be a finite number, "
                                   "got an integer of about 401 digits")


CONFIG_CASES = {
    # id: (overrides, what the message must say)
    "sources.5.weight=1": (["sources.5.weight=1"], "override sources.5.weight: index 5 is past the end of a list "
                                                   "of 1 item(s)"),
    "sources.2={...}": (["sources.2={kind: demonstration}"], "index 2 is past the end"),
    "sources.x.weight=1": (["sources.x.weight=1"], "override sources.x.weight: 'x' is not a list index"),
    "steps.x=1": (["steps.x=1"], "override steps.x: steps is 1, not a mapping or list"),
    "optim.betas=0.9": (["optim.betas=0.9"], "optim.betas: expected a list of 2 values, got 0.9"),
    "optim.betas=[0.9, 1.5]": (["optim.betas=[0.9, 1.5]"], "optim.betas.1: expected a finite number >= 0 and < 1"),
    "sources=[]": (["sources=[]"], "sources: the mixture needs at least one source"),
    "optim.grad_accum=0": (["optim.grad_accum=0"], "optim.grad_accum: expected an integer >= 1, got 0"),
    "batch_size=0": (["sources.0.batch_size=0"], "sources.0.batch_size: expected an integer >= 1, got 0"),
    "batch_size=-3": (["sources.0.batch_size=-3"], "sources.0.batch_size: expected an integer >= 1, got -3"),
    "max_length=1": (["max_length=1"], "max_length: expected an integer >= 2, got 1"),
    "max_length=0": (["max_length=0"], "max_length: expected an integer >= 2, got 0"),
    "steps=0": (["steps=0"], "steps: expected an integer >= 1, got 0"),
    "steps=-2": (["steps=-2"], "steps: expected an integer >= 1, got -2"),
    "optim.lr=.inf": (["optim.lr=.inf"], "optim.lr: expected a finite number > 0, got inf"),
    "optim.lr=0": (["optim.lr=0"], "optim.lr: expected a finite number > 0, got 0"),
    "weight=.nan": (["sources.0.weight=.nan"], "sources.0.weight: expected a finite number, got nan"),
    "beta=-1": (["sources.0.beta=-1"], "sources.0.beta: expected a finite number >= 0, got -1"),
    "resume and overwrite": (["resume=true", "overwrite=true"], "resume and overwrite: choose one"),
    "unknown objective": (["sources.0.objective=sfx"], "sources.0.objective: unknown objective 'sfx'"),
    "objective for another kind": (["sources.0.objective=dpo"], "sources.0.objective: objective 'dpo' takes"),
    "unknown task": (["sources.0.kind=task", "sources.0.objective=grpo", "sources.0.task=nope"], "sources.0.task: "),
    "bad YAML value": (["steps=[1"], "override 'steps=[1': invalid YAML value"),
    "missing data file": (["sources.0.path=/nonexistent.jsonl"], "/nonexistent.jsonl: no such file"),
    "data path is a directory": (["sources.0.path=/tmp"], "/tmp: is a directory, not a JSONL file"),
}


@pytest.mark.parametrize("case", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_bad_config_value_is_one_line_naming_the_key(tmp_path, capsys, case):
    overrides, needle = CONFIG_CASES[case]
    message = one_line_error(capsys, [write_config(tmp_path), *overrides])
    assert needle in message, message
    assert not (tmp_path / "run").exists()


def test_an_override_may_add_the_next_source():
    config = load_config(None, ["sources.0={kind: demonstration, path: a.jsonl}",
                                "sources.1={kind: preference, path: b.jsonl, objective: dpo}"])
    assert [s.kind for s in config.sources] == ["demonstration", "preference"]


@pytest.mark.parametrize("what", ["directory", "missing"])
def test_config_path_that_is_not_a_file(tmp_path, capsys, what):
    path = tmp_path if what == "directory" else tmp_path / "nope.yaml"
    message = one_line_error(capsys, [str(path)])
    what = "is a directory" if what == "directory" else "no such file"
    assert message == f"{path}: {what}; expected a YAML config file"


def test_config_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"steps: \xff\n")
    assert one_line_error(capsys, [str(path)]).startswith(f"{path}: cannot read the config: 'utf-8' codec")


def test_output_dir_under_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    message = one_line_error(capsys, [write_config(tmp_path, output_dir=str(tmp_path / "file" / "run"))])
    assert message == f"output_dir: cannot create {tmp_path / 'file' / 'run'}: Not a directory"
    message = one_line_error(capsys, [write_config(tmp_path, output_dir=str(tmp_path / "file"))])
    assert message == f"output_dir: {tmp_path / 'file'} exists and is not a directory"


def test_read_only_output_dir(tmp_path, capsys, monkeypatch):
    # a chmod would not stop root (who runs CI here), so the refusals are simulated
    config = write_config(tmp_path, output_dir=str(tmp_path / "ro" / "run"))

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    assert one_line_error(capsys, [config]) == f"output_dir: cannot create {tmp_path / 'ro' / 'run'}: Permission denied"
    monkeypatch.undo()
    (tmp_path / "ro" / "run").mkdir(parents=True)
    monkeypatch.setattr(run.os, "access", lambda path, mode: False)
    assert one_line_error(capsys, [config]) == f"output_dir: {tmp_path / 'ro' / 'run'} is not writable"


def test_rl_problem_file_with_a_missing_field(tmp_path, capsys):
    path = tmp_path / "rl.jsonl"
    path.write_text('{"problem": {"target": 3, "numbers": [1, 2]}}\n{"prompt": "p"}\n')
    config = write_config(tmp_path, [{"kind": "task", "task": "countdown", "objective": "grpo", "path": str(path)}])
    assert one_line_error(capsys, [config]).startswith(f"{path}:2: field 'problem' (an object) is missing")


def test_jsonl_task_file_with_bad_json(tmp_path, capsys):
    path = tmp_path / "problems.jsonl"
    path.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?", "answer": \n')
    config = write_config(tmp_path, [{"kind": "task", "task": "jsonl", "variant": {"path": str(path)},
                                      "objective": "grpo"}])
    assert one_line_error(capsys, [config]).startswith(f"{path}:2: invalid JSON: Expecting value")
    config = write_config(tmp_path, eval={"task": "jsonl", "variants": {"id": {"path": str(path)}}})
    assert one_line_error(capsys, [config]).startswith(f"{path}:2: invalid JSON")


def test_beta_zero_warns_where_the_objective_reads_beta(tmp_path):
    def config(objective, kind, path):
        return load_config(None, [f"sources.0={{kind: {kind}, objective: {objective}, path: {DATA / path}, "
                                  "beta: 0}"])

    with pytest.warns(UniftWarning, match=r"sources.0.beta = 0: objective dpo is a function of beta"):
        run.check_sources(config("dpo", "preference", "preferences.jsonl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.check_sources(config("sft", "demonstration", "demonstrations.jsonl"))  # beta only in diagnostics


def test_beta_zero_warning_is_one_line_on_the_command_line(tmp_path, capsys):
    path = data_file(tmp_path, "preference", '{"prompt": "p", "chosen": "x", "rejected": "x"}')
    config = write_config(tmp_path, [{"kind": "preference", "objective": "dpo", "beta": 0, "path": path}])
    assert cli.main(["train", config]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("unift train: warning: sources.0.beta = 0: objective dpo")
    assert err[1].startswith(f"unift train: error: {path}:2: fields 'chosen' and 'rejected' are identical")


def test_error_line_names_the_file_of_an_os_error():
    assert cli.error_line(OSError(28, "No space left on device", "/run/checkpoint.pt")) == \
        "/run/checkpoint.pt: No space left on device"
    assert cli.error_line(KeyError("unknown task 'x'")) == "unknown task 'x'"
    assert cli.error_line(ValueError("a\n  b\n")) == "a; b"


def test_records_also_checked_for_datasets_rows():
    with pytest.raises(RecordError, match=r"ds\[0\]: field 'prompt': a lone surrogate"):
        parse_record({"prompt": "\udc80", "completion": "c"}, "demonstration", "ds[0]")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError) and issubclass(RecordError, ValueError)


def test_good_example_files_still_load():
    for kind, name in [("demonstration", "demonstrations.jsonl"), ("preference", "preferences.jsonl"),
                       ("score", "score.jsonl"), ("binary", "binary.jsonl")]:
        assert load_jsonl(DATA / name, kind)


def test_unift_data_with_a_negative_n_is_an_error(capsys):
    assert cli.main(["data", "countdown", "--n", "-5"]) == 2
