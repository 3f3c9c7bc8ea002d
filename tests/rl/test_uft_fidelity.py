"""UFT-hint as the reference code runs it: a full hint is SFT's target (EOS included), the LR
schedules at chosen steps, mini-batched updates with pi_old from the rollout policy."""

import math

import pytest

import tests.rl.toy_task  # noqa: F401  (registers "vowels")
from tests.rl.test_rl_trainer import config_with, task_source
from unift import models, tasks
from unift.config import HintSpec, RolloutSpec
from unift.rollout.presets import PRESETS
from unift.rollout.task_source import TaskRollout
from unift.train.metrics import read_metrics
from unift.train.run import hold_steps, lr_lambda, rollout_args, train

TASKS = ["countdown", "knights_knaves", "general_points", "vowels"]


@pytest.fixture(scope="module")
def tokenizer():
    return models.load_tokenizer()


@pytest.mark.parametrize("name", TASKS)
def test_full_hint_is_the_sft_target_token_for_token(tokenizer, name):
    task = tasks.get(name)
    problems = task.problems(4, seed=0, split="train")
    sft = TaskRollout(task, tokenizer, None, 0,
                      **rollout_args(RolloutSpec(policy_gradient=False, hint=HintSpec(schedule="full"))))
    # p = 1 on every hinted step: k = num for every prompt, so nothing is generated (no engine)
    always = HintSpec(schedule="cosine", p_low=1.0, p_high=1.0, T_hint=10)
    uft = TaskRollout(task, tokenizer, None, 0, **rollout_args(RolloutSpec(num_generations=2, hint=always)))
    a, b = sft.next(problems, 0, 10, None), uft.next(problems, 0, 10, None)
    for row in range(4):
        hint = b.batch.input_ids[2 * row][1:][b.hint_mask[2 * row]].tolist()
        target = a.batch.input_ids[row][1:][a.hint_mask[row]].tolist()
        assert hint == target
        assert hint[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(hint[:-1]) == task.reference_completion(problems[row])
    assert not b.completion_mask.any()
    assert b.full_hint.all() and (b.hint_k > 0).all()  # k = num, which varies by problem


def test_stage_preset_keeps_the_hint_nll():
    assert PRESETS["stage"]["params"]["c_nll"] == PRESETS["uft"]["params"]["c_nll"] > 0


def test_lr_schedules_at_chosen_steps():
    # cosine over 10 steps, floor 0.1: step 0 -> 1, step 9 (the last) -> 0.1, midpoint 4.5
    assert lr_lambda(0, warmup=0, total=10, schedule="cosine", min_ratio=0.1) == pytest.approx(1.0)
    assert lr_lambda(9, warmup=0, total=10, schedule="cosine", min_ratio=0.1) == pytest.approx(0.1)
    # step 3: progress 3/9, 0.1 + 0.9 * (1 + cos(pi / 3)) / 2 = 0.1 + 0.9 * 0.75 = 0.775
    assert lr_lambda(3, warmup=0, total=10, schedule="cosine", min_ratio=0.1) == pytest.approx(0.775)
    # linear warm-up over 3 steps: (step + 1) / 4
    assert lr_lambda(1, warmup=3, total=10, schedule="cosine") == pytest.approx(0.5)
    assert lr_lambda(7, warmup=0, total=10, schedule="constant") == 1.0
    # linear: step 6 of 0..9 -> 1 - 6/9
    assert lr_lambda(6, warmup=0, total=10, schedule="linear") == pytest.approx(1 / 3)
    # hold-cosine with the hint phase 0..5: constant, then cosine over steps 6..9
    hold = [lr_lambda(t, warmup=0, total=10, schedule="hold-cosine", hold=6) for t in range(10)]
    assert hold[:7] == [1.0] * 7
    assert hold[8] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 3)))  # 0.25
    assert hold[9] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="hold-cosine"):
        lr_lambda(5, warmup=0, total=10, schedule="step")


def test_hold_steps_follow_the_hint_phase(tmp_path):
    config = config_with(tmp_path, [task_source(preset="uft", hint={"T_hint": 0.5})], steps=12)
    assert hold_steps(config) == 6
    assert hold_steps(config_with(tmp_path, [task_source(preset="rft")], steps=12)) == 0


def test_lr_of_a_run_follows_the_schedule(tmp_path):
    config = config_with(tmp_path, [task_source(preset="uft", num_generations=2, max_new_tokens=4,
                                                hint={"T_hint": 0.5})],
                         steps=6, **{"optim.lr": 1e-3, "optim.schedule": "hold-cosine", "optim.min_lr_ratio": 0.1})
    config.sources[0].batch_size = 2
    rows = read_metrics(train(config))
    # hold 3 steps at 1e-3, then cosine over steps 3..5 to 1e-4
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-3, 1e-3, 1e-3, 5.5e-4, 1e-4])


def test_mini_batches_serve_one_rollout_batch_with_pi_old_from_the_rollout_policy(tmp_path):
    config = config_with(tmp_path, [task_source(preset="rft", num_generations=4, max_new_tokens=8,
                                                mini_batches=2)],
                         steps=4, precision="fp32", **{"optim.lr": 5e-3, "optim.schedule": "constant"})
    config.sources[0].batch_size = 2
    rows = read_metrics(train(config))
    generated = [r["vowels/rollout_tokens"] for r in rows]
    assert generated[0] > 0 and generated[2] > 0 and generated[1] == generated[3] == 0
    # step 1 is on-policy (ratio 1); step 2 trains the second mini-batch with pi_old = the policy
    # that generated it, from before step 1's update: the ratio has moved
    assert rows[0]["vowels/ratio_mean"] == pytest.approx(1.0)
    assert rows[1]["vowels/ratio_mean"] != pytest.approx(1.0, abs=1e-6)
    assert all(r["flops"] > 0 for r in rows)
    assert rows[0]["flops"] - 0 > rows[1]["flops"] - rows[0]["flops"]  # the generating step costs more
