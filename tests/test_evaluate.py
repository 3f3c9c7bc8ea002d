"""evaluate_policy: pass@1 equals a direct greedy check on the tiny model; pass@k and success@j
follow hand-counted scripts of a fake engine; the test sets are fixed; `unift eval` writes its
table."""

import dataclasses
import json
import random
import re

import pytest
import torch

from tests.train.helpers import scripted_rollouts
from unift import models, tasks
from unift.evaluate import eval_problems, evaluate_policy, evaluate_variants, main, std_error
from unift.rollout.engine import make_engine
from unift.tasks import Score, Task

WORDS = ["apple", "river", "stone", "cloud", "green", "tiger", "piano", "house"]


class Echo(Task):
    """Raw-text prompts ending in a word; correct when the completion's first word is the
    problem's target. (The random tiny model tends to repeat the prompt's last token, so some
    problems are solved and some are not.)"""

    named_variants = {}

    def generate(self, rng: random.Random) -> dict:
        word = rng.choice(WORDS)
        return {"word": word, "target": word if rng.random() < 0.5 else "banana"}

    def prompt(self, problem: dict):
        return f"Say one word: {problem['word']}"  # raw text: no chat template

    def question(self, problem: dict) -> str:
        return self.prompt(problem)

    def score(self, problem: dict, completion: str) -> Score:
        words = completion.split()
        if not words:
            return Score(0.0, False, None, "Say a word.")
        return Score(1.0 if words[0] == problem["target"] else 0.1, words[0] == problem["target"], words[0])

    def solution_steps(self, problem: dict) -> list[str]:
        return [problem["target"]]


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny")


def test_pass_at_1_equals_a_direct_greedy_check(tiny):
    model, tokenizer = tiny
    task = Echo()
    problems = [task.generate(random.Random(i)) for i in range(12)]
    # direct check: transformers' own greedy decoding in fp32, one problem at a time
    direct = []
    for p in problems:
        ids = tokenizer(task.prompt(p), add_special_tokens=False)["input_ids"]
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
        direct.append(task.score(p, text))
    engine = make_engine("hf", model, tokenizer, dtype="float32")
    result = evaluate_policy(model, tokenizer, task, problems, max_new_tokens=6, engine=engine)
    expected = sum(s.correct for s in direct) / len(problems)
    assert 0 < expected < 1  # a mixed test set, or the check proves little
    assert result["pass@1"] == expected
    assert result["reward_mean"] == pytest.approx(sum(s.reward for s in direct) / len(problems))
    assert result["format_rate"] == sum(s.parsed is not None for s in direct) / len(problems)
    assert result["n"] == 12 and 0 < result["completion_tokens_mean"] <= 6
    assert "pass@2" not in result and not any(k.startswith("success@") for k in result)


def test_default_engine_gives_sane_numbers_on_countdown(tiny):
    model, tokenizer = tiny
    task = tasks.get("countdown", variant="easy")
    result = evaluate_policy(model, tokenizer, task, eval_problems(task, 4), k=2, viter=2, max_new_tokens=4)
    assert set(result) >= {"n", "pass@1", "reward_mean", "format_rate", "finished_rate", "completion_tokens_mean",
                           "pass@2", "success@2"}
    for key in ("pass@1", "pass@2", "success@2", "format_rate", "finished_rate"):
        assert 0.0 <= result[key] <= 1.0
    assert result["pass@1"] <= result["pass@2"] and result["pass@1"] <= result["success@2"]


class ScriptedEngine:
    """A fake engine: problem i (named in its prompt as "#i") is solved greedily at attempt
    SOLVED_AT[i] (None: never); sampled completion j of problem i is right only when j == i."""

    SOLVED_AT = [1, 2, 3, None]

    def __init__(self, tokenizer):
        self.tokenizer, self.synced, self.calls = tokenizer, 0, []

    def sync(self, model):
        self.synced += 1

    def generate(self, prompts, num_samples, max_new_tokens, temperature=1.0, top_p=1.0, stop_strings=(),
                 seed=None):
        self.calls.append((len(prompts), num_samples, temperature))
        texts = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            i = int(re.search(r"#(\d+)", text).group(1))
            attempt = 1 + text.count("try again")
            for j in range(num_samples):
                right = (j == i) if temperature > 0 else self.SOLVED_AT[i] == attempt
                texts.append(f"<answer>{'yes' if right else 'no'}</answer>")
        return scripted_rollouts(self.tokenizer, [], texts)


class YesTask(Task):
    named_variants = {}

    def generate(self, rng):
        return {}

    def question(self, problem):
        return f"Problem #{problem['i']}: say yes."

    def score(self, problem, completion):
        said = completion.removeprefix("<answer>").removesuffix("</answer>")
        return Score(float(said == "yes"), said == "yes", said, "Wrong: say yes.")

    def solution_steps(self, problem):
        return ["<answer>yes</answer>"]


def test_pass_at_k_and_success_at_j_follow_the_script(tiny):
    _, tokenizer = tiny
    engine = ScriptedEngine(tokenizer)
    problems = [{"i": i} for i in range(4)]
    result = evaluate_policy(None, tokenizer, YesTask(), problems, k=2, viter=3, engine=engine)
    assert engine.synced == 1
    # greedy: only problem 0 at the first attempt; then 1 at the second, 2 at the third, 3 never
    assert result["pass@1"] == 1 / 4
    assert result["success@2"] == 2 / 4
    assert result["success@3"] == 3 / 4
    # sampled: problem i has a right sample only at index i < k = 2, so problems 0 and 1
    assert result["pass@2"] == 2 / 4
    # calls: greedy on 4, sampled 4 x 2, retries of the 3 failures, then of the 2 left
    assert engine.calls == [(4, 1, 0.0), (4, 2, 1.0), (3, 1, 0.0), (2, 1, 0.0)]


def test_test_sets_are_fixed_and_held_out(tiny):
    model, tokenizer = tiny
    task = tasks.get("countdown", variant="easy")
    a, b = eval_problems(task, 16), eval_problems(task, 16)
    assert a == b
    train_keys = {task.split_key(p) for p in task.problems(256, seed=0, split="train")}
    assert not train_keys & {task.split_key(p) for p in a}
    results = evaluate_variants(model, tokenizer, "countdown", {"easy": {"variant": "easy"},
                                                                "ood": {"variant": "ood_numbers"}},
                                n=2, max_new_tokens=2)
    assert list(results) == ["easy", "ood"] and all(r["n"] == 2 for r in results.values())


def test_std_error():
    assert std_error(0.5, 64) == pytest.approx(0.0625)
    assert std_error(0.0, 10) == 0.0


def test_eval_cli_writes_every_named_variant(tmp_path, capsys):
    assert main(["tiny", "--task", "countdown", "--n", "2", "--k", "1", "--max-new-tokens", "2",
                 "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "eval.json").read_text())
    named = tasks.TASKS["countdown"].variants()
    assert list(record["results"]) == list(named)
    assert record["distributions"] == {k: v["distribution"] for k, v in named.items()}
    table = (tmp_path / "eval.md").read_text()
    assert sum(line.startswith("| ") for line in table.splitlines()) == 1 + len(named)  # header + rows
    assert "| ood_numbers | ood | 2 |" in capsys.readouterr().out


class CutEngine(ScriptedEngine):
    """ScriptedEngine whose greedy completions of odd-numbered problems run into the token limit."""

    def generate(self, prompts, num_samples, max_new_tokens, **kw):
        out = super().generate(prompts, num_samples, max_new_tokens, **kw)
        numbers = [int(re.search(r"#(\d+)", self.tokenizer.decode(ids)).group(1)) for ids in prompts]
        finished = [i % 2 == 0 for i in numbers for _ in range(num_samples)]
        return dataclasses.replace(out, finished=finished)


def test_truncated_rate_counts_completions_cut_by_the_token_limit(tiny):
    _, tokenizer = tiny
    result = evaluate_policy(None, tokenizer, YesTask(), [{"i": i} for i in range(4)], engine=CutEngine(tokenizer))
    assert result["truncated_rate"] == 2 / 4 and result["finished_rate"] == 2 / 4  # problems 1 and 3 were cut


def test_eval_cli_stops_at_the_tasks_stop_strings_by_default(tmp_path, monkeypatch):
    import unift.evaluate as ev

    seen = []
    monkeypatch.setattr(ev, "evaluate_variants", lambda *a, **kw: seen.append(kw["stop_strings"]) or {
        "easy": {"n": 1, "pass@1": 0.0, "reward_mean": 0.0, "format_rate": 0.0, "truncated_rate": 1.0}})
    own = list(tasks.TASKS["countdown"].stop_strings)
    for flags, expected in [([], own), (["--stop", "\n\n"], ["\n\n"]), (["--no-stop"], [])]:
        assert main(["tiny", "--task", "countdown", "--variant", "easy", "--out", str(tmp_path), *flags]) == 0
        assert seen[-1] == expected
        assert json.loads((tmp_path / "eval.json").read_text())["settings"]["stop_strings"] == expected
    assert own == ["</answer>"]
