"""The methods that mix demonstrations into RL (docs/methods.md section 8), each as a preset of
the one trainer: two steps on the tiny model with the "vowels" toy task (loss finite, the
method's own metric present), and the rollout stage's rows checked by hand where it decides
something (expert rows, gates, prefixes, question hints)."""

import math

import pytest
import torch

from tests.rl import toy_task  # noqa: F401  (registers the "vowels" task)
from tests.rl.test_rl_trainer import config_with, task_source
from unift import models, tasks
from unift.config import SourceConfig
from unift.rollout.engine import make_engine
from unift.rollout.presets import PRESETS
from unift.rollout.task_source import TaskRollout
from unift.train.metrics import read_metrics
from unift.train.run import rollout_args, train

DEMO_PRESETS = {
    # preset: the metric that explains it
    "luffy": "expert/token_share",
    "chord": "mu",
    "chord-phi": "expert/phi",
    "hpt": "gate/sft_share",
    "superrl": "gate/sft_share",
    "relift": "gate/buffer_size",
    "prefix-rft": "prefix/tokens_mean",
    "questa": "question_hint/share",
}


@pytest.mark.parametrize("preset", list(DEMO_PRESETS))
def test_preset_trains_two_steps_with_its_metric(tmp_path, preset):
    rollout = {"num_generations": 4, "max_new_tokens": 6}
    if preset == "relift":
        rollout["gate"] = {"buffer_size": 4}
    config = config_with(tmp_path, [task_source(preset=preset, **rollout)], steps=2, **{"optim.lr": 1e-3})
    rows = read_metrics(train(config))
    assert len(rows) == 2
    for r in rows:
        assert math.isfinite(r["loss"]), r
    assert any(f"vowels/{DEMO_PRESETS[preset]}" in r for r in rows), sorted(rows[0])


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny")


def rollout_for(tiny, preset: str, **rollout) -> TaskRollout:
    policy, tokenizer = tiny
    sc = SourceConfig(kind="task", task="vowels", objective="grpo", preset=preset,
                      rollout={"num_generations": 4, "max_new_tokens": 4, **rollout})
    engine = make_engine("hf", policy, tokenizer, dtype="float32")
    return TaskRollout(tasks.get("vowels"), tokenizer, engine, seed=0, **rollout_args(sc.rollout))


def problems(n=2):
    return tasks.get("vowels").problems(n, seed=0, split="train")


def test_luffy_rows_one_expert_trace_per_group_in_the_group_statistics(tiny):
    ro = rollout_for(tiny, "luffy")
    rb = ro.next(problems(), 0, 10, tiny[0])
    tokenizer = tiny[1]
    expert_rows = rb.expert_mask.any(1)
    assert expert_rows.tolist().count(True) == 2 and rb.batch.input_ids.shape[0] == 8  # 3 own + 1 per group
    assert not (rb.expert_mask & rb.completion_mask).any()
    ref = tasks.get("vowels").reference_completion(problems()[0])
    row = int(expert_rows.nonzero()[0])
    tokens = rb.batch.input_ids[row][1:][rb.expert_mask[row]].tolist()
    assert tokenizer.decode(tokens[:-1]) == ref and tokens[-1] == tokenizer.eos_token_id
    # no std division: A = r - mean over the 4 rows of the group, the expert's reward included
    # (rows: the 3 own rollouts of prompt 0, those of prompt 1, then the expert rows 0 and 1)
    for sel in ([0, 1, 2, 6], [3, 4, 5, 7]):
        r = rb.rewards[sel]
        assert torch.allclose(rb.advantages[sel], r - r.mean(), atol=1e-6)
    assert rb.rewards[expert_rows].min() > 0.8  # the reference solution scores as correct


def test_chord_adds_a_share_of_expert_rows_outside_the_groups(tiny):
    ro = rollout_for(tiny, "chord", num_generations=4)
    rb = ro.next(problems(), 0, 10, tiny[0])
    # 8 own rows, share 0.2: round(0.25 x 8) = 2 expert rows, one per prompt
    assert rb.batch.input_ids.shape[0] == 10
    assert rb.expert_mask.any(1).sum() == 2
    assert rb.stats["expert/row_share"] == pytest.approx(0.2)


def test_hpt_gate_replaces_a_failed_group_by_one_sft_row(tiny):
    ro = rollout_for(tiny, "hpt")
    rb = ro.next(problems(), 0, 10, tiny[0])
    # the random tiny model never writes > 50% vowels in 4 tokens: both groups fail, both go to SFT
    assert rb.stats["gate/sft_share"] == 1.0
    assert rb.batch.input_ids.shape[0] == 2 and rb.full_hint.all() and not rb.completion_mask.any()
    assert rb.stats["correct_rate"] == 0.0  # reward metrics read the rollouts the gate dropped


def test_relift_buffers_failed_prompts_and_serves_one_sft_step(tiny):
    ro = rollout_for(tiny, "relift", gate={"buffer_size": 3})
    first = ro.next(problems(), 0, 10, tiny[0])
    assert first.completion_mask.any() and first.stats["gate/buffer_size"] == 2
    assert ro.problems_needed(2) == 2  # not full yet: no SFT step queued
    second = ro.next(problems(), 1, 10, tiny[0])  # 4 buffered: 3 make an SFT step, 1 stays
    assert second.completion_mask.any()
    assert ro.problems_needed(2) == 0
    sft = ro.next([], 2, 10, tiny[0])
    assert sft.stats["gate/sft_step"] == 1 and sft.stats["gate/buffer_size"] == 1
    assert sft.batch.input_ids.shape[0] == 3 and sft.full_hint.all() and not sft.completion_mask.any()
    assert ro.state_dict()["buffer"] == ro.buffer and len(ro.buffer) == 1


def test_prefix_rft_prefix_tokens_are_expert_tokens_of_decaying_length(tiny):
    ro = rollout_for(tiny, "prefix-rft")
    rb = ro.next(problems(), 0, 10, tiny[0])
    prefixed = rb.expert_mask.any(1)
    assert prefixed.sum() == 2  # one of G per group
    n = len(tiny[1]("aeiou aei ou", add_special_tokens=False)["input_ids"])
    assert rb.expert_mask[prefixed].sum(1).tolist() == [min(round(0.8 * n), n - 1)] * 2
    assert rb.stats["prefix/ratio"] == pytest.approx(0.8)
    assert not rb.hint_mask.any()  # the prefix gets no NLL
    # at the end of the decay the prefix is empty: every row is a plain rollout
    late = ro.next(problems(), 10, 10, tiny[0])
    assert not late.expert_mask.any() and late.stats["prefix/tokens_mean"] == 0.0


def test_questa_hint_goes_into_the_question_of_hard_problems(tiny):
    # the toy solution "aeiou aei ou" has 12 characters: QuestA's 50% (6) is under its 10-character
    # minimum and adds nothing, so show 100% then 90% (int(10.8) = 10 characters)
    ro = rollout_for(tiny, "questa", question_hint={"p": [1.0, 0.9]})
    tokenizer = tiny[1]
    rb = ro.next(problems(), 0, 10, tiny[0])
    assert rb.stats["question_hint/p"] == 1.0 and rb.stats["question_hint/share"] == 1.0
    assert ").\n\n## Hint. aeiou aei ou<|im_end|>" in tokenizer.decode(rb.batch.input_ids[0])
    assert not rb.hint_mask.any()  # in the prompt: no token of it is trained
    late = ro.next(problems(), 6, 10, tiny[0])
    assert late.stats["question_hint/p"] == 0.9
    assert "## Hint. aeiou aei <|im_end|>" in tokenizer.decode(late.batch.input_ids[0])
    # QuestA's own 50% of 12 characters is too short to show: the questions stay as they were
    plain = rollout_for(tiny, "questa").next(problems(), 0, 10, tiny[0])
    assert plain.stats["question_hint/share"] == 0.0


def test_every_demo_preset_is_a_compare_arm():
    from unift.compare.settings import arms_for

    assert [a.name for a in arms_for(list(DEMO_PRESETS))] == list(DEMO_PRESETS)
    assert set(DEMO_PRESETS) <= set(PRESETS)


def test_rollout_settings_no_run_could_use_fail_at_config_load():
    from unift.config import ConfigError

    with pytest.raises(ConfigError, match="leaves no own rollout"):
        SourceConfig(kind="task", task="vowels", objective="grpo", preset="luffy",
                     rollout={"num_generations": 1})
    with pytest.raises(ConfigError, match="gate.mode"):
        SourceConfig(kind="task", task="vowels", objective="grpo", rollout={"gate": {"mode": "sometimes"}})
