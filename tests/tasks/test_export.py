"""`unift data`: SFT and RL records that the trainer can load and re-verify."""

from __future__ import annotations

import json

import pytest

from unift import tasks
from unift.cli import main as cli_main
from unift.tasks.export import main, parse_variant


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_parse_variant():
    assert parse_variant(
        ["ood_numbers", "max_target=50", "rule=face_is_10", "require_face=true", 'types=["json"]']
    ) == {
        "variant": "ood_numbers",
        "max_target": 50,
        "rule": "face_is_10",
        "require_face": True,
        "types": ["json"],
    }


@pytest.mark.parametrize(
    ("task", "variant"),
    [
        ("countdown", ["ood_numbers"]),
        ("knights_knaves", ["max_people=4"]),
        ("general_points", ["ood_rule"]),
        ("navigation", ["relative"]),
        ("instructions", []),
    ],
)
def test_rl_records_rebuild_their_verifier(tmp_path, task, variant):
    out = tmp_path / "rl.jsonl"
    args = [task, "--split", "test", "--n", "20", "--seed", "3", "--kind", "rl", "--out", str(out)]
    assert main(args + sum((["--variant", v] for v in variant), [])) == 0
    rows = _read(out)
    assert len(rows) == 20
    for row in rows:
        assert set(row) == {"prompt", "task", "variant", "problem"} and row["task"] == task
        verifier = tasks.get(row["task"], **row["variant"])
        assert row["prompt"] == verifier.prompt(row["problem"])
        assert verifier.score(row["problem"], verifier.reference_completion(row["problem"])).correct
    expected = tasks.get(task, **parse_variant(variant)).problems(20, seed=3, split="test")
    assert [r["problem"] for r in rows] == expected


def test_sft_records_and_text_prompts(tmp_path):
    out = tmp_path / "sft.jsonl"
    assert (
        cli_main(
            [
                "data",
                "countdown",
                "--n",
                "5",
                "--kind",
                "sft",
                "--format",
                "text",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    task = tasks.get("countdown")
    for row, problem in zip(_read(out), task.problems(5), strict=True):
        assert row == {
            "prompt": task.prompt_text(problem),
            "completion": task.reference_completion(problem),
        }


def test_help_list_and_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--variant" in capsys.readouterr().out
    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "ood_numbers" in listing and "OOD" in listing and "general_points" in listing
    assert main(["no_such_task", "--n", "1"]) == 2
    assert main(["countdown", "--variant", "bogus=1", "--n", "1"]) == 2
