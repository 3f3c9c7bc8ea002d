"""PPO with a learned critic (docs/methods.md section 9) as the `ppo` preset of the one trainer:
the objective's wiring by hand, two steps on the tiny model with the "vowels" toy task (loss
finite, value metrics present, the value head saved beside a model that loads as it is), V_old
of later mini-batches scored before any update, resume restoring the value head, and bad params
refused before the model loads."""

import functools
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.rl import toy_task  # noqa: F401  (registers the "vowels" task)
from tests.rl.test_demo_presets import problems
from tests.rl.test_rl_trainer import config_with, task_source
from unift import models, tasks
from unift.config import ConfigError, SourceConfig, load_config
from unift.rollout.engine import make_engine
from unift.rollout.task_source import RolloutBatch, TaskRollout
from unift.train import checkpoint, losses
from unift.train.metrics import read_metrics
from unift.train.run import _score, rollout_args, train

VALUE_METRICS = ("loss/value", "value/explained_variance", "value/mean", "value/clip_fraction")


def test_gae_objective_by_hand():
    # one row: a prompt position, then 2 completion tokens, reward 1; on-policy (pi_old = pi,
    # V_old = V = [0.5, 0.2]); gamma 1, lambda 0.5, no KL / entropy / NLL.
    #   GAE: t=2: A = 1 - 0.2 = 0.8;  t=1: delta = 0.2 - 0.5 = -0.3, A = -0.3 + 0.5 * 0.8 = 0.1
    #   whitened: mean 0.45, sample std 0.7 / sqrt(2) -> A_w = [-1/sqrt(2), 1/sqrt(2)]
    #   policy loss at ratio 1: -mean(A_w) = 0, its gradient -A_w / 2 = [0.35355, -0.35355]
    #   returns A + V_old = [0.6, 1.0]; value loss 0.5 * ((0.5 - 0.6)^2 + (0.2 - 1.0)^2) / 2 = 0.1625
    #   total = 0 + c_vf 0.5 x 0.1625 = 0.08125; dL/dV = 0.5 x [(0.5 - 0.6), (0.2 - 1.0)] / 2
    mask = torch.tensor([[False, True, True]])
    logps = torch.tensor([[0.0, -1.0, -2.0]], requires_grad=True)
    values = torch.tensor([[0.0, 0.5, 0.2]], requires_grad=True)
    rollout = RolloutBatch(None, torch.tensor([7.0]), torch.tensor([1.0]), mask, torch.zeros(1, 3, dtype=torch.bool),
                           torch.zeros(1), torch.zeros(1, dtype=torch.bool), 4)
    rollout.on_policy(logps, values)
    x = losses.SourceTensors(logps, mask, None, None, 0.1, rollout=rollout, values=values)
    params = {"adv_estimator": "gae", "gamma": 1.0, "gae_lambda": 0.5, "c_vf": 0.5, "vf_clip": 0.2,
              "c_kl": 0.0, "c_ent": 0.0, "c_nll": 0.0}
    objective = losses.OBJECTIVES["grpo"]
    assert objective.wants_values(params) and not objective.wants_values({})
    loss, stats = objective.compute(x, params)
    assert loss.item() == pytest.approx(0.08125)
    loss.backward()
    h = 0.5 ** 0.5 / 2
    assert logps.grad[0].tolist() == pytest.approx([0.0, h, -h], abs=1e-5)  # the rollout's advantage 7 unused
    assert values.grad[0].tolist() == pytest.approx([0.0, 0.5 * -0.1 / 2, 0.5 * -0.8 / 2], abs=1e-6)
    assert stats["loss/value"].item() == pytest.approx(0.1625)
    # EV: returns [0.6, 1.0] (Var 0.04), residual R - V = [0.1, 0.8] (Var 0.1225): 1 - 0.1225 / 0.04
    assert stats["value/explained_variance"].item() == pytest.approx(-2.0625)


def test_ppo_preset_trains_two_steps_with_value_metrics(tmp_path):
    config = config_with(tmp_path, [task_source(preset="ppo", num_generations=4, max_new_tokens=6)], steps=2,
                         **{"optim.lr": 1e-3})
    assert config.sources[0].params["adv_estimator"] == "gae"
    run_dir = train(config)
    rows = read_metrics(run_dir)
    assert len(rows) == 2
    for r in rows:
        assert math.isfinite(r["loss"]) and math.isfinite(r["vowels/loss/value"]), r
        assert all(f"vowels/{key}" in r for key in VALUE_METRICS), sorted(r)
    assert rows[0]["vowels/value/mean"] == 0.0  # the zero-initialised head, before its first update
    assert rows[1]["vowels/value/mean"] != 0.0  # trained by the run's optimiser
    # model/ is a plain causal LM; the critic is beside it and in the checkpoint
    AutoModelForCausalLM.from_pretrained(run_dir / "model")
    head = load_file(run_dir / "model" / models.VALUE_HEAD)
    assert head["weight"].shape == (1, 64) and head["weight"].abs().sum() > 0
    saved = checkpoint.load(run_dir)["value_head"]
    assert torch.equal(saved["weight"], head["weight"]) and torch.equal(saved["bias"], head["bias"])


def test_later_mini_batches_get_v_old_before_any_update():
    policy, tokenizer = models.load("tiny")
    head = models.ValueHead.for_policy(policy)
    with torch.no_grad():
        head.bias.fill_(0.25)
    sc = SourceConfig(kind="task", task="vowels", objective="grpo", preset="ppo",
                      rollout={"num_generations": 2, "max_new_tokens": 4, "mini_batches": 2})
    ro = TaskRollout(tasks.get("vowels"), tokenizer, make_engine("hf", policy, tokenizer, dtype="float32"),
                     seed=0, score=functools.partial(_score, policy, "fp32", value_head=head),
                     **rollout_args(sc.rollout))
    first = ro.next(problems(2), 0, 10, policy)
    assert first.old_values is None  # on-policy: V_old is the value at its first use
    later = ro.queue[0][0]
    assert later.old_values.shape == later.old_logps.shape
    h_values = later.old_values[later.completion_mask]
    assert torch.allclose(h_values, torch.full_like(h_values, 0.25))  # w = 0: V = b wherever it is scored


def test_resume_restores_the_value_head(tmp_path):
    def config(name, **kw):
        return config_with(tmp_path / name, [task_source(preset="ppo", num_generations=2, max_new_tokens=6)],
                           steps=3, **{"optim.lr": 1e-3, "optim.schedule": "constant", "precision": "fp32", **kw})

    straight = read_metrics(train(config("straight")))
    # the same run stopped after step 2 by a FLOP budget (a setting resume may change), then resumed
    f1 = straight[0]["flops"]
    stopped = config("stopped", max_flops=1.5 * f1 * (1 + 1e-9))  # runs step 2 (1.5 F1 <= max), not 3
    run_dir = train(stopped)
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]
    assert checkpoint.load(run_dir)["value_head"]["weight"].abs().sum() > 0
    stopped.max_flops, stopped.resume = 0.0, True
    resumed = read_metrics(train(stopped))
    assert [r["step"] for r in resumed] == [1, 2, 3]
    for key in ("loss", "vowels/loss/value", "vowels/value/mean", "vowels/loss/policy"):
        assert resumed[2][key] == pytest.approx(straight[2][key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("params,needle", [
    ({"gae_lambda": 1.5}, "gae_lambda: 1.5 is not in [0.0, 1.0]"),
    ({"adv_estimator": "td"}, "'td' is not one of group, gae"),
    ({"gae_lamda": 0.9}, "did you mean 'gae_lambda'?"),
    ({"norm_adv": 1.0}, "norm_adv: expected bool"),
])
def test_bad_ppo_params_fail_before_the_model_loads(tmp_path, params, needle):
    config = load_config(None, ["steps=1", f"output_dir={tmp_path / 'run'}", "model.name=/no/such/model"])
    config.sources = [SourceConfig(kind="task", task="vowels", objective="grpo", preset="ppo", params=params)]
    with pytest.raises(ConfigError, match=f"sources.0.params.{next(iter(params))}") as err:
        train(config)
    assert needle in str(err.value)


def test_ppo_is_a_compare_arm():
    from unift.compare.settings import arms_for

    assert [a.name for a in arms_for(["ppo"])] == ["ppo"]
