"""`unift compare` on the tiny model with a minuscule budget (two algorithms end to end, report
included), and its pieces: settings and overrides, algorithms as stages, the FLOPs-per-step
estimate written out by hand."""

import base64
import json
import re

import pytest

from tests.train.helpers import tiny_compare
from unift import compare, models
from unift.compare import TokenLengths, arms_for, flops_per_step, parse_overrides, settings_for
from unift.config import load_config
from unift.train.flops import ModelFlops
from unift.train.metrics import read_metrics

TINY = tiny_compare(evals=2)


def test_compare_two_algorithms_on_tiny_writes_the_report(tmp_path, capsys):
    out = tmp_path / "cmp"
    budget = 4e10
    assert compare.main(["--algos", "rft,sft", "--budget", str(budget), "--out", str(out), *TINY]) == 0
    manifest = json.loads((out / "compare.json").read_text())
    assert [a["name"] for a in manifest["arms"]] == ["rft", "sft"]
    assert manifest["distributions"] == {"easy": "id", "ood_4numbers": "ood"}
    assert manifest["match"] == "flops" and manifest["budget"] == budget and manifest["seeds"] == [0]
    lengths = TokenLengths(**manifest["token_lengths"])
    base = [json.loads(line) for line in (out / "base" / "evals.jsonl").read_text().splitlines()]
    assert [(r["step"], r["flops"], r["label"]) for r in base] == [(0, 0.0, "easy"), (0, 0.0, "ood_4numbers")]
    for name in ("rft", "sft"):
        run = out / "runs" / name
        rows = read_metrics(run)
        config = load_config(out / "configs" / f"{name}.yaml")  # every written config loads
        assert config.max_flops == budget and config.sources[0].preset == name
        # the trainer stops at the step boundary nearest the budget, or at the estimated steps
        per_step = rows[-1]["flops"] / len(rows)
        assert abs(rows[-1]["flops"] - budget) <= 0.6 * per_step or len(rows) == config.steps
        # the steps estimate counts what the trainer counts: with the rollouts' actual length it
        # is within 5% of the measured FLOPs per step
        fill = sum(r.get("completion_tokens_mean", 0) for r in rows) / len(rows) / 8
        estimate = flops_per_step(config, ModelFlops.from_model(models.load("tiny")[0]), lengths, fill or 1.0)
        assert estimate == pytest.approx(per_step, rel=0.05)
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
    assert s.variant == {"variant": "id"} and s.ood == {"ood_rule": {"variant": "ood_rule"}}
    assert s.run["optim.lr"] == 1e-5 and s.value("lr") == 1e-5  # a short name sets its RunConfig key
    # the task's lengths over RUN_DEFAULTS, both the rollouts' and the evaluation's
    assert (s.run["sources.0.rollout.max_new_tokens"], s.run["eval.max_new_tokens"], s.run["eval.n"]) == (160, 160, 128)
    o = parse_overrides(["lr=3e-5", "budget=2e15", "optim.warmup_steps=2", "eval_n=16"])
    assert o.values == {"optim.lr": 3e-5, "budget": 2e15, "optim.warmup_steps": 2, "eval.n": 16} and not o.arms
    with pytest.raises(ValueError):
        parse_overrides(["lr"])


def test_algorithms_are_stages():
    sft_rft, uft = arms_for(["sft-rft", "uft"])
    assert [(s.preset, s.share) for s in sft_rft.stages] == [("sft", 0.5), ("rft", 0.5)]
    assert [(s.preset, s.share) for s in uft.stages] == [("uft", 1.0)]
    with pytest.raises(ValueError, match="unknown algorithm"):
        arms_for(["trpo"])


def _config(tmp_path, preset: str, model=None, **settings):
    s = settings_for("countdown", batch_size=8, num_generations=4, max_new_tokens=100, **settings)
    path = tmp_path / f"{preset}.yaml"
    config, _ = compare.build_run_config(s, compare.Stage(preset), "tiny", tmp_path / "run", path,
                                         model=model or ModelFlops(1000, 100),
                                         lengths=TokenLengths(prompt=120, solution=50))
    return config


def test_flops_per_step_by_hand(tmp_path):
    """body 1000 and head 100 weights: a forward pass costs 2 (1000 tokens + 100 head rows), the
    backward twice that; 8 prompts, P = 120, S = 50, G = 4, C = 0.5 x 100 = 50."""
    M, lengths = ModelFlops(body=1000, head=100), TokenLengths(prompt=120, solution=50)

    def fwd(tokens, head_rows):
        return 2 * (1000 * tokens + 100 * head_rows)

    # SFT: 8 rows of 120 + 50 tokens, the head at the 50 solution positions; forward + backward,
    # and pi_ref's diagnostics-only forward on 1 step in diagnostics_every = 10 (c_kl = 0)
    sft = _config(tmp_path, "sft")
    assert flops_per_step(sft, M, lengths, rollout_fill=0.5) == pytest.approx(8 * 3.1 * fwd(170, 50))
    # RFT: per prompt one group of 120 + 4 x 50 packed tokens (the prompt once), head at the 200
    # completion positions; forward + backward + pi_ref (c_kl = 0.001); prefill 120 tokens with
    # the head at the last; decode 200 tokens through body and head
    rft = _config(tmp_path, "rft")
    rft_step = 8 * (4 * fwd(320, 200) + fwd(120, 1) + fwd(200, 200))
    assert flops_per_step(rft, M, lengths, rollout_fill=0.5) == pytest.approx(rft_step) == 27_201_600
    # R3: the hint is uniform over the cut points, half the solution (25 tokens) on average, shared
    # by the group and prefilled with the prompt; no NLL term (c_nll 0), so no head on it
    r3 = _config(tmp_path, "r3")
    assert flops_per_step(r3, M, lengths, rollout_fill=0.5) == pytest.approx(
        8 * (4 * fwd(345, 200) + fwd(145, 1) + fwd(200, 200)))
    # UFT: the NLL term trains the H hint tokens: the head runs there too
    uft = _config(tmp_path, "uft")
    H = compare.mean_hint_share(uft.sources[0].rollout.hint) * 50
    assert 0 < H < 50
    assert flops_per_step(uft, M, lengths, rollout_fill=0.5) == pytest.approx(
        8 * (4 * fwd(320 + H, 200 + H) + fwd(120 + H, 1) + fwd(200, 200)))
    # two PPO epochs: a rollout batch serves two steps (generation halved); two mini-batches: the
    # second is scored by pi_old before the first update (half a forward per step)
    rft.sources[0].rollout.ppo_epochs = 2
    assert flops_per_step(rft, M, lengths, 0.5) == pytest.approx(
        8 * (4 * fwd(320, 200) + (fwd(120, 1) + fwd(200, 200)) / 2))
    rft.sources[0].rollout.ppo_epochs, rft.sources[0].rollout.mini_batches = 1, 2
    assert flops_per_step(rft, M, lengths, 0.5) == pytest.approx(rft_step + 8 * 0.5 * fwd(320, 200))
    # verification iterations: 0.8 of the 4 attempts retried, each a row of 50 + 30 + 50 tokens beyond
    # the shared prompt (head at 50), its 120 + 50 + 30 conversation prefilled, 50 tokens decoded
    rft.sources[0].rollout.mini_batches, rft.sources[0].rollout.viter = 1, 2
    retries = 0.8 * 4 * (4 * fwd(130, 50) + fwd(200, 1) + fwd(50, 50))
    assert flops_per_step(rft, M, lengths, 0.5) == pytest.approx(rft_step + 8 * retries)
    # LoRA-like: half the weights train, so the backward is 1.5 forwards
    assert flops_per_step(sft, ModelFlops(1000, 100, trainable=0.5), lengths, 0.5) == pytest.approx(
        8 * 2.6 * fwd(170, 50))
    # steps: the budget over the estimate, rounded up, at least one
    assert sft.steps == compare.estimate_steps(sft.max_flops, flops_per_step(sft, M, lengths, 0.75))
    assert compare.estimate_steps(1.0, 1e9) == 1 and compare.estimate_steps(10.0, 4.0) == 3


def test_generalization_arms_grpo_and_ppo_per_viter(capsys):
    from unift import study

    arms = study.generalization_arms([1, 3], ["sft", "grpo", "ppo"])
    assert [(a.name, a.stages[0].preset, (a.stages[0].source or {}).get("rollout", {}).get("viter"))
            for a in arms] == [("sft", "sft", None), ("grpo", "rft", 1), ("grpo-viter3", "rft", 3),
                               ("ppo", "ppo", 1), ("ppo-viter3", "ppo", 3)]
    assert [a.name for a in study.generalization_arms([1, 3], ["ppo"])] == ["ppo", "ppo-viter3"]
    assert study.main(["generalization", "--arms", "sft,dpo"]) == 2
    assert "--arms: a comma-separated list of sft | grpo | ppo, got 'sft,dpo'" in capsys.readouterr().err


def test_generalization_study_on_tiny(tmp_path):
    from unift import study

    out = tmp_path / "study"
    assert study.main(["generalization", "--task", "general_points", "--budget", "3e10", "--viter", "1,2",
                       "--arms", "sft,grpo", "--out", str(out), *TINY]) == 0
    d = out / "general_points"
    manifest = json.loads((d / "compare.json").read_text())
    assert [a["name"] for a in manifest["arms"]] == ["sft", "grpo", "grpo-viter2"]
    assert manifest["eval_variants"] == {"id": {"variant": "id"}, "ood_rule": {"variant": "ood_rule"}}
    assert load_config(d / "configs" / "grpo-viter2.yaml").sources[0].rollout.viter == 2
    # every model, SFT included, is evaluated with retries: success@2 next to pass@1
    for arm in ("sft", "grpo", "grpo-viter2"):
        rows = [json.loads(line) for line in (d / "runs" / arm / "evals.jsonl").read_text().splitlines()]
        assert all("success@2" in r and r["success@2"] >= r["pass@1"] for r in rows)
    page = (d / "report.html").read_text()
    assert "success@2" in page and page.count("data:image/png;base64,") == 2
