"""Plugins and DAPO's dynamic sampling on the rollout stage, with hand-worked numbers.

A scripted policy answers the user's Reverse task (examples/plugins/reverse_task.py) by sample
index, so every reward term is known: for a 4-letter word of distinct letters without an x,
e.g. abcd (reversed dcba), the samples of a group are

    j  completion                 task  answer_tag  letter_overlap   total (1 x task + 0.5 x tag + 2 x overlap)
    0  <answer>dcba</answer>        1       1        4/4 = 1        1 + 0.5 + 2   = 3.5
    1  <answer>abcd</answer>        0       1        0/4 = 0        0 + 0.5 + 0   = 0.5
    2  I do not know.               0       0        None           0 + 0   (+ nothing) = 0
    3  <answer>dcxx</answer>        0       1        2/4 = 0.5      0 + 0.5 + 1   = 1.5

so the group's mean reward is 5.5 / 4 = 1.375, while the terms' means are task 1/4, answer_tag
3/4 and letter_overlap 1.5 / 3 = 0.5 over the rows it scored (None ignored, as TRL's nanmean).
A word in SOLVED is answered right by every sample: a zero-variance group.
"""

import json
import math
import re
import sys

import pytest
import torch

from tests.train.helpers import ROOT, scripted_rollouts
from unift import models, tasks
from unift.config import ConfigError, HintSpec, RolloutSpec, build_config, load_config, validate
from unift.data.tokenize import render_prompt
from unift.rollout.rewards import RewardFuncs, combine_rewards
from unift.rollout.task_source import TaskRollout
from unift.train.flops import ModelFlops
from unift.train.metrics import read_metrics
from unift.train.run import check_sources, rollout_args, train

PLUGINS = ROOT / "examples" / "plugins"
TASK = "reverse_task:Reverse"
FUNCS = ["reverse_rewards:answer_tag", "reverse_rewards:letter_overlap"]
SOLVED = {"wxyz", "lamp", "fish", "mint"}


def answer(word: str, j: int, prompt: str) -> str:
    """The script: sample j of a group (module docstring); every sample right for SOLVED words;
    after a hint (the prompt ends with the reversed word) only the closing tag."""
    rev = word[::-1]
    if prompt.endswith(rev):
        return "</answer>"
    if word in SOLVED:
        return f"<answer>{rev}</answer>"
    return [f"<answer>{rev}</answer>", f"<answer>{word}</answer>", "I do not know.",
            f"<answer>{rev[:2]}xx</answer>"][j % 4]


class ScriptedEngine:
    """The rollout engine's interface, answering by `answer`; the word is read from the prompt."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def sync(self, model):
        pass

    def generate(self, prompts, num_samples, max_new_tokens, temperature=1.0, top_p=1.0, stop_strings=(),
                 seed=None):
        texts = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            word = re.findall(r"Write the word '([a-z]+)' backwards", text)[-1]
            texts += [answer(word, j, text) for j in range(num_samples)]
        return scripted_rollouts(self.tokenizer, [list(p) for p in prompts for _ in range(num_samples)], texts, 0.01)


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny")


@pytest.fixture(scope="module")
def reverse():
    return tasks.get(tasks.task_class(TASK, search=[PLUGINS]).name)


def words(*ws):
    return [{"word": w} for w in ws]


def rollout(tiny, reverse, rewards=None, refill=None, **spec) -> TaskRollout:
    policy, tokenizer = tiny
    spec = RolloutSpec(**{"num_generations": 4, "max_new_tokens": 8, **spec})
    return TaskRollout(reverse, tokenizer, ScriptedEngine(tokenizer), seed=0, flops=ModelFlops.from_model(policy),
                       rewards=rewards, refill=refill, **rollout_args(spec))


def test_combine_rewards_is_trls_nansum_with_unscored_rows_nan():
    terms = torch.tensor([[1.0, 0.5, math.nan],     # 1 x 1 + 2 x 0.5            = 2.0
                          [0.0, math.nan, 4.0],     # 1 x 0 + 0.5 x 4 (None out) = 2.0
                          [math.nan, math.nan, math.nan]])  # no term scored it: NaN
    total = combine_rewards(terms, torch.tensor([1.0, 2.0, 0.5]))
    assert total[:2].tolist() == [2.0, 2.0] and math.isnan(total[2])


def test_reward_functions_add_to_the_verifier_with_their_weights(tiny, reverse):
    rewards = RewardFuncs(FUNCS, [0.5, 2.0], task_weight=1.0, search=[PLUGINS])
    rb = rollout(tiny, reverse, rewards).next(words("abcd", "stop"), 0, 2, None)
    # stop (reversed pots): not reversed matches 0 of 4, poxx 2 of 4: the same totals as abcd
    assert rb.rewards.tolist() == pytest.approx([3.5, 0.5, 0.0, 1.5] * 2)
    s = rb.stats
    assert s["reward/task"] == pytest.approx(0.25) and s["correct_rate"] == pytest.approx(0.25)
    assert s["reward/answer_tag"] == pytest.approx(0.75)
    assert s["reward/letter_overlap"] == pytest.approx(0.5)  # (1 + 0 + 0.5) / 3 scored rows
    assert s["reward_mean"] == pytest.approx(1.375)  # not 1 x 0.25 + 0.5 x 0.75 + 2 x 0.5 = 1.625
    assert rb.samples[0]["rewards"] == {"task": 1.0, "answer_tag": 1.0, "letter_overlap": 1.0}


def test_reward_functions_replace_the_verifier_and_unscored_rows_get_no_advantage(tiny, reverse):
    rewards = RewardFuncs(FUNCS[1:], task_weight=0.0, search=[PLUGINS])
    rb = rollout(tiny, reverse, rewards).next(words("abcd"), 0, 2, None)
    # letter_overlap alone: 1, 0, None, 0.5; the None row stays out of the group's mean 0.5 and
    # std sqrt((0.25 + 0.25 + 0) / 2) = 0.5: A = (1 - 0.5) / 0.5 = 1, -1, (0), 0
    assert rb.rewards.tolist() == [1.0, 0.0, 0.0, 0.5]
    assert rb.advantages.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0], abs=1e-5)
    assert rb.stats["reward_mean"] == pytest.approx(0.5) and rb.stats["reward/task"] == pytest.approx(0.25)


def test_dynamic_sampling_replaces_a_zero_variance_group_and_counts_its_compute(tiny, reverse):
    draws = iter([words("lamp", "fish"), words("stop", "fish")])  # the source's next draws of 2 problems
    ro = rollout(tiny, reverse, dynamic_sampling=True, max_resample_batches=2, refill=lambda: next(draws))
    rb = ro.next(words("mint", "stop"), 0, 2, None)
    s = rb.stats
    # mint is solved by every sample: dropped; stop is kept. Each round generates the first
    # missing (1) problem of its draw: lamp, solved, dropped; then stop, kept
    assert (s["dynamic/dropped_groups"], s["dynamic/rounds"], s["dynamic/missing_groups"]) == (2, 2, 0)
    assert rb.batch.input_ids.shape[0] == 8  # two groups of 4: stop, stop
    assert rb.rewards.tolist() == [1.0, 0.0, 0.0, 0.0] * 2  # right, not reversed, none, half right
    # FLOPs: the prefill of every prompt generated from (mint, stop, lamp, stop) and the decode
    # of every completion (4 groups of 4), the dropped ones included
    tokenizer = tiny[1]
    prompt_len = [len(tokenizer(render_prompt(tokenizer, reverse.prompt({"word": w})), add_special_tokens=False)
                      ["input_ids"]) for w in ("mint", "stop", "lamp", "stop")]
    completion_len = [len(tokenizer(answer(w, j, ""), add_special_tokens=False)["input_ids"])
                      for w in ("mint", "stop", "lamp", "stop") for j in range(4)]
    flops = ModelFlops.from_model(tiny[0])
    assert s["rollout_tokens"] == sum(completion_len)
    assert s["flops/rollout"] == pytest.approx(flops.prefill(sum(prompt_len), 4) + flops.decode(sum(completion_len)))


def test_dynamic_sampling_at_its_limit_trains_with_the_groups_it_has(tiny, reverse):
    calls = []

    def refill():
        calls.append(1)
        return words("lamp", "fish")  # both solved: every refilled group is dropped

    ro = rollout(tiny, reverse, dynamic_sampling=True, max_resample_batches=2, refill=refill)
    rb = ro.next(words("mint", "stop"), 0, 2, None)
    # mint dropped, then one group per round (lamp twice) dropped: 3; stop alone trains
    assert (rb.stats["dynamic/dropped_groups"], rb.stats["dynamic/rounds"], rb.stats["dynamic/missing_groups"]) \
        == (3, 2, 1)
    assert len(calls) == 2 and rb.batch.input_ids.shape[0] == 4
    # nothing with a signal and no refill: one zero-variance group still trains (advantages 0)
    ro = rollout(tiny, reverse, dynamic_sampling=True, max_resample_batches=0, refill=refill)
    rb = ro.next(words("mint", "wxyz"), 0, 2, None)
    assert (rb.stats["dynamic/dropped_groups"], rb.stats["dynamic/rounds"], rb.stats["dynamic/missing_groups"]) \
        == (2, 0, 2)
    assert rb.batch.input_ids.shape[0] == 4 and not rb.advantages.any()


def test_dynamic_sampling_keeps_hinted_groups_for_their_nll(tiny, reverse):
    """UFT-hint: a hinted group that always succeeds has zero advantage but trains its hint by
    NLL, so it stays; the same solved problem without a hint is dropped."""
    calls = []

    def refill():
        calls.append(1)
        return words("stop", "dogs")

    # stage schedule over T_hint = 9 of 10 steps, 3 stages: at step 3 p = 1 - 1/3, k = 2 of the
    # 3 cut points: the hint is "<answer>" + the reversed word; the script closes the tag
    stage = HintSpec(schedule="stage", T_hint=9, stages=3)
    ro = rollout(tiny, reverse, dynamic_sampling=True, refill=refill, hint=stage)
    rb = ro.next(words("mint", "wxyz"), 3, 10, None)
    assert rb.hint_k.tolist() == [2] * 8 and rb.rewards.tolist() == [1.0] * 8
    assert rb.stats["dynamic/dropped_groups"] == 0 and not calls
    # from T_hint on there is no hint: both groups are dropped, one round brings stop and dogs
    rb = ro.next(words("mint", "wxyz"), 9, 10, None)
    assert (rb.stats["dynamic/dropped_groups"], rb.stats["dynamic/rounds"]) == (2, 1) and len(calls) == 1
    assert rb.hint_k.tolist() == [0] * 8 and rb.rewards.tolist() == [1.0, 0.0, 0.0, 0.0] * 2


def test_plugin_errors_name_the_key(tmp_path):
    task = {"name": "r", "kind": "task", "task": TASK, "objective": "grpo"}
    cases = [
        ({**task, "reward_funcs": FUNCS, "reward_weights": [1.0]}, "sources.0.reward_weights: 1 weight(s) for 2"),
        ({**task, "task_reward_weight": 0.0}, "sources.0.task_reward_weight: 0 leaves no reward"),
        ({"kind": "demonstration", "path": "x.jsonl", "reward_funcs": FUNCS}, "apply to task sources"),
        ({**task, "preset": "ppo", "rollout": {"dynamic_sampling": True}}, "adv_estimator gae"),
    ]
    for source, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate(build_config({"sources": [source]}))
    cases = [
        ({**task, "reward_funcs": ["reverse_rewards:nothing"]}, "sources.0.reward_funcs.0: 'reverse_rewards:nothing'"),
        ({**task, "reward_funcs": ["no_such_module:f"]}, "no module 'no_such_module'"),
        ({**task, "reward_funcs": ["reverse_rewards:answer_tag", "reverse_rewards:answer_tag"]}, "not unique"),
        ({**task, "task": "reverse_rewards:answer_tag"}, "sources.0.task: task 'reverse_rewards:answer_tag' is "),
    ]
    for source, message in cases:
        config = build_config({"sources": [source]})
        with pytest.raises(ConfigError, match=re.escape(message)):
            check_sources(config, PLUGINS)


def test_the_example_config_trains_with_its_plugins(tmp_path, tiny, monkeypatch):
    """examples/plugins/config.yaml on the tiny model with the scripted policy: 2 steps of 2
    problems, abcd (the table above) and wxyz (solved, zero variance, dropped). Each step drops
    wxyz and refills one group from the next draw of {abcd, wxyz}: abcd (kept) or wxyz (dropped,
    the batch then trains with abcd alone), so dropped = 1 + missing; the trained groups are all
    abcd's, with the table's rewards."""
    import unift.rollout.engine as engine_module

    monkeypatch.setattr(engine_module, "make_engine", lambda *a, **kw: ScriptedEngine(tiny[1]))
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": p}) + "\n" for p in words("abcd", "wxyz")))
    config = load_config(PLUGINS / "config.yaml", ["model.name=tiny", "steps=2", "precision=fp32", "progress=false",
                                                   f"output_dir={tmp_path / 'run'}", f"sources.0.path={data}",
                                                   "sources.0.batch_size=2", "optim.lr=1e-3"])
    run_dir = train(config, PLUGINS)
    rows = read_metrics(run_dir)
    assert len(rows) == 2
    for r in rows:
        assert r["reverse/reward/task"] == pytest.approx(0.25) and r["reward/task"] == pytest.approx(0.25)
        assert r["reverse/reward/answer_tag"] == pytest.approx(0.75)
        assert r["reverse/reward/letter_overlap"] == pytest.approx(0.5)
        assert r["reward_mean"] == pytest.approx(1.375)
        assert r["dynamic/rounds"] == 1 and r["dynamic/dropped_groups"] == 1 + r["dynamic/missing_groups"]
        assert math.isfinite(r["loss"])
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert samples and all(set(s["rewards"]) == {"task", "answer_tag", "letter_overlap"} for s in samples)


def test_the_cli_loads_a_task_class(tmp_path, monkeypatch, capsys):
    """`unift data` and `unift eval --task module:Class`, importing from the working directory."""
    from unift import evaluate
    from unift.tasks import export

    tasks.TASKS.pop(TASK, None)
    sys.modules.pop("reverse_task", None)
    monkeypatch.chdir(PLUGINS)
    out = tmp_path / "r.jsonl"
    assert export.main([TASK, "--n", "3", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and all(r["task"] == TASK and "word" in r["problem"] for r in records)
    assert evaluate.main(["tiny", "--task", TASK, "--n", "2", "--k", "1", "--max-new-tokens", "4",
                          "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["results"]["default"]["n"] == 2
    assert evaluate.main(["tiny", "--task", "reverse_task:Nothing"]) == 2
    assert "has no 'Nothing'" in capsys.readouterr().err


def test_plugin_loading_and_reward_output_errors(tmp_path):
    from unift import plugins

    (tmp_path / "broken_rewards.py").write_text("def f(:\n")
    with pytest.raises(ValueError, match=r"'broken_rewards:f': importing broken_rewards failed: SyntaxError"):
        plugins.load("broken_rewards:f", [tmp_path])
    assert plugins.load("reverse_rewards.answer_tag", [PLUGINS]).__name__ == "answer_tag"  # TRL's dotted form

    def short(completions, **kwargs):
        return [1.0]

    def text(completions, **kwargs):
        return ["1"] * len(completions)

    args = ([[]] * 2, ["a", "b"], [[1], [2]], words("ab", "cd"), [0.0, 0.0], None)
    with pytest.raises(ValueError, match=r"reward function short \(m:short\) returned 1 rewards for 2"):
        RewardFuncs(["m:short"], funcs=[short])(*args)
    with pytest.raises(ValueError, match=r"reward function text \(m:text\): row 0 is '1'"):
        RewardFuncs(["m:text"], funcs=[text])(*args)
