"""The RL path of the trainer on the tiny model: RFT raises the mean reward, UFT-hint's logged
schedule follows the cosine and reaches 0 at T_hint, and task sources mix with offline ones."""

import math

import pytest
import torch

from tests.rl import toy_task  # noqa: F401  (registers the "vowels" task)
from tests.train.helpers import source, tiny_run
from unift.config import SourceConfig
from unift.data.tokenize import render_prompt
from unift.rollout.engine import make_engine
from unift.tasks import get
from unift.train.metrics import read_metrics
from unift.train.run import train


def task_source(task="vowels", preset="rft", variant=None, **rollout):
    raw = {"name": task, "kind": "task", "task": task, "objective": "grpo", "preset": preset,
           "variant": variant or {}, "batch_size": 4,
           "rollout": {"num_generations": 8, "max_new_tokens": 12, "num_problems": 64, **rollout}}
    return raw


def config_with(tmp_path, sources, **kw):
    from unift.config import _convert

    config = tiny_run(tmp_path, [], **kw)
    config.sources = [_convert(s, SourceConfig, f"sources.{i}") for i, s in enumerate(sources)]
    return config


def mean_reward(model, tokenizer, n=16, g=8, seed=123):
    task = get("vowels")
    problems = task.problems(n, seed=5, split="test")
    engine = make_engine("hf", model, tokenizer, dtype="float32")
    ids = [tokenizer(render_prompt(tokenizer, task.prompt(p)), add_special_tokens=False)["input_ids"]
           for p in problems]
    out = engine.generate(ids, g, 12, temperature=1.0, seed=seed)
    return sum(task.score(problems[i // g], t).reward for i, t in enumerate(out.texts)) / len(out.texts)


def test_rft_raises_mean_reward_on_the_tiny_model(tmp_path):
    from unift.models import load

    config = config_with(tmp_path, [task_source(preset="rft")], steps=20,
                         **{"optim.lr": 5e-2, "optim.schedule": "constant"})
    before = mean_reward(*load("tiny"))
    run_dir = train(config)
    after = mean_reward(*load(str(run_dir)))
    rows = read_metrics(run_dir)
    print("mean reward before, after:", before, after)
    assert after > before + 0.05, (before, after)
    assert all(r["hint_fraction"] == 0 and r["hint_p"] == 0 for r in rows)
    for key in ("reward_mean", "correct_rate", "kl", "entropy", "completion_tokens_mean", "rollout_tokens_per_s"):
        assert key in rows[-1]


def test_uft_hint_schedule_is_logged_and_reaches_zero_at_T_hint(tmp_path):
    config = config_with(tmp_path, [task_source(preset="uft", num_generations=2, max_new_tokens=4,
                                                hint={"T_hint": 0.5, "schedule": "cosine"})],
                         steps=8, **{"optim.lr": 1e-4})
    config.sources[0].batch_size = 8
    rows = read_metrics(train(config))
    T = 4
    for r in rows:
        t = r["step"] - 1
        expected = 0.05 + 0.45 * (1 + math.cos(math.pi * (t + 1) / T)) if t < T else 0.0  # eq. B.1
        assert r["hint_p"] == pytest.approx(expected)
        if t >= T:
            assert r["hint_fraction"] == 0 and r["hint_tokens_mean"] == 0
    assert rows[0]["hint_fraction"] > 0.5  # p = 0.82 over 3 cut points: P(k > 0) = 1 - 0.18^3
    assert rows[0]["vowels/nll/hint"] > 0


def test_sft_preset_trains_on_reference_solutions_without_rollouts(tmp_path):
    config = config_with(tmp_path, [task_source(preset="sft")], steps=4, **{"optim.lr": 3e-3})
    rows = read_metrics(train(config))
    assert all(r["rollout_tokens"] == 0 and r["hint_p"] == 1.0 and "reward_mean" not in r for r in rows)
    assert rows[-1]["vowels/nll/hint"] < rows[0]["vowels/nll/hint"]
    # no completion token at all: the policy-gradient mean is 0 / 1, not 0 / 0 (the logged loss is
    # the weighted NLL alone)
    assert all(r["loss"] == pytest.approx(r["vowels/nll/hint"]) for r in rows)


def test_one_step_mixes_grpo_with_una_pairwise(tmp_path):
    config = config_with(tmp_path, [
        task_source(preset="rft", num_generations=2, max_new_tokens=4),
        {**source("preference", "una-pairwise", "preferences.jsonl", name="pref"), "batch_size": 2},
    ], steps=2)
    rows = read_metrics(train(config))
    assert rows[0]["pref/loss"] == pytest.approx(math.log(2), rel=1e-5)
    for r in rows:
        assert r["loss"] == pytest.approx(r["vowels/loss"] + r["pref/loss"], rel=1e-5)
    assert torch.isfinite(torch.tensor(rows[-1]["loss"]))


def test_ppo_epochs_reuse_rollouts_with_pi_old_from_their_first_use(tmp_path):
    config = config_with(tmp_path, [task_source(preset="rft", ppo_epochs=2, num_generations=4, max_new_tokens=6)],
                         steps=4, **{"optim.lr": 1e-2})
    rows = read_metrics(train(config))
    assert [r["vowels/ppo_epoch"] for r in rows] == [1, 2, 1, 2]
    assert [r["rollout_tokens"] > 0 for r in rows] == [True, False, True, False]
    # first use: on-policy, ratio exactly 1; second use: the policy moved, so ratios differ from 1
    assert rows[0]["vowels/ratio_mean"] == 1.0 and rows[0]["vowels/clip_fraction"] == 0.0
    assert rows[1]["vowels/ratio_mean"] != 1.0
    assert rows[1]["reward_mean"] == rows[0]["reward_mean"]  # the same rollouts


def test_task_source_reads_exported_rl_records(tmp_path):
    from unift.tasks.export import main as export

    path = tmp_path / "rl.jsonl"
    assert export(["countdown", "--variant", "easy", "--n", "8", "--kind", "rl", "--out", str(path)]) == 0
    config = config_with(tmp_path, [{**task_source(task="countdown", preset="uft", variant={"variant": "easy"},
                                                   num_generations=2, max_new_tokens=4), "path": str(path)}],
                         steps=1)
    rows = read_metrics(train(config))
    assert rows[0]["rollout_tokens"] == 4 * 2 * 4  # batch 4 prompts x 2 samples x 4 tokens (none stop early)


def test_verification_iterations_retry_failed_attempts_with_feedback(tmp_path):
    """A random model fails every GeneralPoints attempt, so with viter 2 every sample is retried
    once: twice the rows, first-attempt and any-attempt success both 0."""
    config = config_with(tmp_path, [task_source(task="general_points", preset="rft", num_generations=2,
                                                max_new_tokens=4, viter=2)], steps=1)
    row = read_metrics(train(config))[0]
    assert row["general_points/attempts_mean"] == 2.0
    assert row["correct_rate"] == 0.0 and row["success_rate"] == 0.0
    assert row["rollout_tokens"] == 2 * 4 * 2 * 4  # two attempts x 4 prompts x 2 samples x 4 tokens
    assert row["reward_mean"] < 0  # GeneralPoints penalises unparsable answers (-3)


def test_gradient_checkpointing_gives_the_same_losses(tmp_path):
    def losses(name, **kw):
        config = config_with(tmp_path / name, [task_source(preset="rft", num_generations=2, max_new_tokens=6)],
                             steps=2, precision="fp32", **kw)
        return [r["loss"] for r in read_metrics(train(config))]

    assert losses("plain") == pytest.approx(losses("checkpointed", gradient_checkpointing=True), rel=1e-5)
