"""`unift compare` completes a comparison from its records: a run that ended writes finished.json
last, and a run with it is finished without model/ and checkpoint.pt (about 2 GB each on the
135M model), unless a later stage of its arm starts from its model/. The report builds from
the records alone."""

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.train.helpers import tiny_compare
from unift import __version__, compare
from unift.compare import TokenLengths, settings_for
from unift.compare.cli import report_only
from unift.config import dump_config
from unift.train.checkpoint import FINISHED, MODEL, NAME
from unift.train.flops import ModelFlops
from unift.train.metrics import read_metrics

TINY = tiny_compare(evals=1)
RUNS = ("sft", "sft-rft_1_sft", "sft-rft_2_rft")  # sft-rft's second stage starts from its first's model/
# what a later session keeps of a comparison (in git): no model/, checkpoint.pt, tb/, report
RECORDS = ("config.yaml", "metrics.jsonl", "evals.jsonl", "samples.jsonl", FINISHED)


def argv(out: Path) -> list[str]:
    return ["--algos", "sft,sft-rft", "--match", "steps", "--steps", "2", "--out", str(out), *TINY]


def trained(out: Path, capsys) -> set[str]:
    """Run the comparison in `out`; -> the runs it trained (their metrics.jsonl rewritten)."""
    def stamp(name):
        path = out / "runs" / name / "metrics.jsonl"
        return (path.stat().st_ino, path.stat().st_mtime_ns) if path.exists() else None

    before = {name: stamp(name) for name in RUNS}
    assert compare.main(argv(out)) == 0
    names = {name for name in RUNS if stamp(name) != before[name]}
    assert capsys.readouterr().out.count("already trained") == len(RUNS) - len(names)
    return names


def delete_big_files(run: Path) -> None:
    shutil.rmtree(run / MODEL)
    (run / NAME).unlink()


def results_table(out: Path) -> str:
    return re.search(r"<table id='results'>(.*?)</table>", (out / "report.html").read_text(), re.S).group(1)


def test_a_comparison_completes_from_its_records(tmp_path, capsys, monkeypatch):
    out = Path("cmp")  # relative, as a comparison is run from the project's root in each session
    (tmp_path / "first").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    assert trained(out, capsys) == set(RUNS)
    # finished.json: the last step and the run's FLOPs, as the last metrics row and the final evaluation
    for name in RUNS:
        run = out / "runs" / name
        last = read_metrics(run)[-1]
        evals = [json.loads(line) for line in (run / "evals.jsonl").read_text().splitlines()]
        assert json.loads((run / FINISHED).read_text()) == {"step": last["step"], "flops": last["flops"],
                                                             "unift": __version__}
        assert {(e["step"], e["flops"]) for e in evals if e["step"] == last["step"]} == {(last["step"], last["flops"])}
    assert [json.loads((out / "runs" / n / FINISHED).read_text())["step"] for n in RUNS] == [2, 1, 1]

    # a later session on another machine has the records only: the report builds from them as it was
    first = tmp_path / "first" / out
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "second")
    shutil.copytree(first / "base", out / "base")
    shutil.copy(first / "compare.json", out / "compare.json")
    for name in RUNS:
        (out / "runs" / name).mkdir(parents=True)
        for record in RECORDS:
            shutil.copy(first / "runs" / name / record, out / "runs" / name / record)
    assert report_only(out) == 0
    capsys.readouterr()
    assert results_table(out) == results_table(first)
    assert all((out / f"fig_{n}.png").exists() for n in ("accuracy", "reward"))

    # sft, a last stage, is finished; sft-rft's first stage has no model/ for the second: both retrain
    assert trained(out, capsys) == {"sft-rft_1_sft", "sft-rft_2_rft"}
    assert not (out / "runs" / "sft" / MODEL).exists() and (out / "runs" / "sft-rft_1_sft" / MODEL).is_dir()
    # a last stage's big files deleted: nothing to train
    delete_big_files(out / "runs" / "sft-rft_2_rft")
    assert trained(out, capsys) == set()
    # a run killed before its end (no finished.json, no model/) trains again, and alone
    (out / "runs" / "sft" / FINISHED).unlink()
    assert trained(out, capsys) == {"sft"}
    assert json.loads((out / "runs" / "sft" / FINISHED).read_text())["step"] == 2


def _run_dir(tmp_path: Path, **settings):
    """A run directory holding the records of a run of `config` (config.yaml, metrics.jsonl)."""
    s = settings_for("countdown", match="steps", steps=2, **settings)
    run = tmp_path / "run"
    config, _ = compare.build_run_config(s, compare.Stage("sft"), "tiny", run, tmp_path / "sft.yaml",
                                         model=ModelFlops(1000, 100), lengths=TokenLengths(prompt=120, solution=50))
    run.mkdir()
    dump_config(config, run / "config.yaml")
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    return run, config


@pytest.mark.parametrize(("files", "last_stage", "earlier_stage"), [
    ([MODEL], True, True),  # a run from before finished.json
    ([MODEL, FINISHED], True, True),
    ([FINISHED], True, False),  # model/ deleted: a later stage could not start from it
    ([], False, False),  # killed before the end
])
def test_finished_needs_finished_json_or_model(tmp_path, files, last_stage, earlier_stage):
    run, config = _run_dir(tmp_path)
    if MODEL in files:
        (run / MODEL).mkdir()
    if FINISHED in files:
        (run / FINISHED).write_text('{"step": 2}\n')
    assert compare.finished(run, config, needs_model=False) is last_stage
    assert compare.finished(run, config, needs_model=True) is earlier_stage
    assert compare.finished(run, config) is earlier_stage  # by default a run's model is needed


def test_finished_json_without_metrics_or_with_another_config_is_not_finished(tmp_path):
    run, config = _run_dir(tmp_path)
    (run / FINISHED).write_text('{"step": 2}\n')
    assert compare.finished(run, config, needs_model=False)
    config.optim.lr *= 2
    assert not compare.finished(run, config, needs_model=False)
    config.optim.lr /= 2
    (run / "metrics.jsonl").unlink()
    assert not compare.finished(run, config, needs_model=False)


def test_only_an_arms_last_stage_may_lack_its_model(tmp_path):
    runs = compare.plan(settings_for("countdown", match="steps", steps=4), compare.arms_for(["sft-rft", "uft"]),
                        tmp_path)
    assert [(r.name, r.needs_model) for r in runs] == [("sft-rft_1_sft", True), ("sft-rft_2_rft", False),
                                                       ("uft", False)]
