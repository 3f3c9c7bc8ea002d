"""`unift compare` on the tiny model with a minuscule budget (two algorithms end to end, report
included), and its pieces: settings and overrides, algorithms as stages, the FLOPs-per-step
estimate written out by hand."""

import base64
import json
import re

import pytest

from unift import compare
from unift.compare import TokenLengths, arms_for, flops_per_step, settings_for, split_overrides
from unift.config import load_config
from unift.train.metrics import read_metrics

TINY = ["--model", "tiny", "--set", "batch_size=2", "--set", "num_generations=2", "--set", "max_new_tokens=8",
        "--set", "eval_n=4", "--set", "num_problems=32", "--set", "progress=false", "--set", "evals=2",
        "--set", "lr=1e-3"]


def test_compare_two_algorithms_on_tiny_writes_the_report(tmp_path, capsys):
    out = tmp_path / "cmp"
    budget = 4e10
    assert compare.main(["--algos", "rft,sft", "--budget", str(budget), "--out", str(out), *TINY]) == 0
    manifest = json.loads((out / "compare.json").read_text())
    assert [a["name"] for a in manifest["arms"]] == ["rft", "sft"]
    assert manifest["distributions"] == {"easy": "id", "ood_4numbers": "ood"}
    base = [json.loads(line) for line in (out / "base" / "evals.jsonl").read_text().splitlines()]
    assert [(r["step"], r["flops"], r["label"]) for r in base] == [(0, 0.0, "easy"), (0, 0.0, "ood_4numbers")]
    for name in ("rft", "sft"):
        run = out / "runs" / name
        rows = read_metrics(run)
        config = load_config(out / "configs" / f"{name}.yaml")  # every written config loads
        assert config.max_flops == budget and config.sources[0].preset == name
        # the trainer stops at the budget (at most one step past it) or at the estimated steps
        per_step = rows[-1]["flops"] / len(rows)
        assert rows[-1]["flops"] >= budget or len(rows) == config.steps
        assert rows[-1]["flops"] < budget + 2 * per_step
        evals = [json.loads(line) for line in (run / "evals.jsonl").read_text().splitlines()]
        assert {e["label"] for e in evals} == {"easy", "ood_4numbers"}
        assert max(e["step"] for e in evals) == rows[-1]["step"]  # evaluated at the end
    assert any(r.get("rollout_tokens") for r in read_metrics(out / "runs" / "rft"))
    assert not any(r.get("rollout_tokens") for r in read_metrics(out / "runs" / "sft"))

    page = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3 and all(base64.b64decode(x).startswith(b"\x89PNG") for x in images)
    assert all((out / f"fig_{n}.png").exists() for n in ("accuracy", "reward", "hints"))
    table = re.search(r"<table id='results'>(.*?)</table>", page, re.S).group(1)
    for name in ("base model", "rft", "sft"):
        assert f"<td>{name}</td>" in table
    printed = capsys.readouterr().out
    assert "| rft |" in printed and "report.html" in printed

    # a second call finds both runs finished and only rebuilds the report
    assert compare.main(["--algos", "rft,sft", "--budget", str(budget), "--out", str(out), *TINY]) == 0
    assert printed.count("already trained") == 0 and capsys.readouterr().out.count("already trained") == 2


def test_settings_layers_and_overrides():
    s = settings_for("general_points", lr=1e-5)
    assert s.variant == {"variant": "id"} and s.ood == {"ood_rule": {"variant": "ood_rule"}} and s.lr == 1e-5
    mine, run = split_overrides(["lr=3e-5", "budget=2e15", "optim.warmup_steps=2", "eval_n=16"])
    assert mine == {"lr": 3e-5, "budget": 2e15, "eval_n": 16}
    assert run == ["optim.warmup_steps=2"]
    with pytest.raises(ValueError):
        split_overrides(["lr"])


def test_algorithms_are_stages():
    sft_rft, uft = arms_for(["sft-rft", "uft"])
    assert [(s.preset, s.share) for s in sft_rft.stages] == [("sft", 0.5), ("rft", 0.5)]
    assert [(s.preset, s.share) for s in uft.stages] == [("uft", 1.0)]
    with pytest.raises(ValueError, match="unknown algorithm"):
        arms_for(["ppo"])


def _config(tmp_path, preset: str, **settings):
    s = settings_for("countdown", batch_size=8, num_generations=4, max_new_tokens=100, **settings)
    path = tmp_path / f"{preset}.yaml"
    config, _ = compare.build_run_config(s, compare.Stage(preset), "tiny", tmp_path / "run", path, [],
                                         n_params=1000, lengths=TokenLengths(prompt=120, solution=50))
    return config


def test_flops_per_step_by_hand(tmp_path):
    N, lengths = 1000, TokenLengths(prompt=120, solution=50)
    # SFT: 8 prompts x (120 + 50) tokens trained, 6 N each
    sft = _config(tmp_path, "sft")
    assert flops_per_step(sft, N, lengths, rollout_fill=0.5) == 6 * N * 8 * 170
    # RFT: 8 x 4 rollouts of C = 0.5 * 100 = 50 tokens: trained on 120 + 50, generated 50
    rft = _config(tmp_path, "rft")
    assert flops_per_step(rft, N, lengths, rollout_fill=0.5) == 32 * (6 * N * 170 + 2 * N * 50)
    # R3: hint length uniform over the cut points, i.e. half the solution on average (25 tokens)
    r3 = _config(tmp_path, "r3")
    assert flops_per_step(r3, N, lengths, rollout_fill=0.5) == 32 * (6 * N * 195 + 2 * N * 50)
    # steps: the budget over the estimate, at least one
    assert rft.steps == compare.estimate_steps(rft.max_flops, flops_per_step(rft, N, lengths, 0.75))
    assert compare.estimate_steps(1.0, 1e9) == 1


def test_generalization_study_on_tiny(tmp_path):
    from unift import study

    out = tmp_path / "study"
    assert study.main(["generalization", "--task", "general_points", "--budget", "3e10", "--viter", "1,2",
                       "--out", str(out), *TINY]) == 0
    d = out / "general_points"
    manifest = json.loads((d / "compare.json").read_text())
    assert [a["name"] for a in manifest["arms"]] == ["sft", "rl", "rl-viter2"]
    assert manifest["eval_variants"] == {"id": {"variant": "id"}, "ood_rule": {"variant": "ood_rule"}}
    assert load_config(d / "configs" / "rl-viter2.yaml").sources[0].rollout.viter == 2
    # every model, SFT included, is evaluated with retries: success@2 next to pass@1
    for arm in ("sft", "rl", "rl-viter2"):
        rows = [json.loads(line) for line in (d / "runs" / arm / "evals.jsonl").read_text().splitlines()]
        assert all("success@2" in r and r["success@2"] >= r["pass@1"] for r in rows)
    page = (d / "report.html").read_text()
    assert "success@2" in page and page.count("data:image/png;base64,") == 2
