"""Evaluation against a scripted policy whose right answers are known: a fake engine answers each
test problem of a real task with the task's reference completion or with garbage, following a
hand-written script, so pass@1, pass@k and success@j must equal hand-counted shares exactly
(all-zero results, or any other wrong count, fail). Checked on `evaluate_policy` for every
built-in task, and inside a training run (`eval:`, written to evals.jsonl)."""

import json

import pytest

from tests.train.helpers import scripted_rollouts, source, tiny_run
from unift import models, tasks
from unift.evaluate import eval_problems, evaluate_policy
from unift.rollout.engine import Rollouts
from unift.train.run import train

GARBAGE = "I do not know."
TASKS = ["countdown", "general_points", "knights_knaves", "navigation"]
# navigation's default step mode also plays whole routes, which this script cannot answer: its
# own test below
VARIANTS = {"navigation": {"mode": "route"}}

# the script, for problem i of 10:
SOLVED_AT = [1, 2, 3, None, 1, 2, None, 1, None, 3]  # greedy attempt that gives the reference (None: never)
RIGHT_SAMPLE = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]  # the one sample (of k, at temperature 1) that is right
# hand-counted: pass@1 3/10 (problems 0, 4, 7); success@2 adds 1 and 5: 5/10; success@3 adds 2
# and 9: 7/10; pass@3: sample index < 3 for every problem but 3 and 7: 8/10


class ScriptedEngine:
    """Answers `problems` of `task` by the script above; a problem is recognised by its question
    in the decoded prompt, its attempt by the garbage answers already in the conversation."""

    def __init__(self, task, problems, tokenizer):
        self.task, self.problems, self.tokenizer = task, problems, tokenizer
        self.questions = [task.question(p) for p in problems]
        assert len(set(self.questions)) == len(problems), "the script needs distinct questions"
        self.synced = []

    def sync(self, model):
        self.synced.append(model)

    def _problem(self, text: str) -> int:
        hits = [i for i, q in enumerate(self.questions) if q in text]
        assert len(hits) == 1, (hits, text[-300:])
        return hits[0]

    def generate(self, prompts, num_samples, max_new_tokens, temperature=1.0, top_p=1.0, stop_strings=(),
                 seed=None):
        texts = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            i = self._problem(text)
            attempt = 1 + text.count(GARBAGE)
            for j in range(num_samples):
                right = (j == RIGHT_SAMPLE[i]) if temperature > 0 else SOLVED_AT[i] == attempt
                texts.append(self.task.reference_completion(self.problems[i]) if right else GARBAGE)
        completion_ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        prompt_ids = [list(p) for p in prompts for _ in range(num_samples)]
        return Rollouts(prompt_ids, completion_ids, [[0.0] * len(c) for c in completion_ids], texts,
                        [True] * len(texts), sum(map(len, completion_ids)), 0.0)


@pytest.fixture(scope="module")
def tokenizer():
    return models.load_tokenizer()


def _distinct(task, n: int) -> list[dict]:
    """The first n test problems with distinct questions."""
    out, seen = [], set()
    for p in eval_problems(task, 4 * n):
        if task.question(p) not in seen and not any(task.question(p) in q or q in task.question(p) for q in seen):
            out.append(p)
            seen.add(task.question(p))
    assert len(out) >= n
    return out[:n]


@pytest.mark.parametrize("name", TASKS)
def test_scripted_answers_give_the_hand_counted_rates(name, tokenizer):
    task = tasks.get(name, **VARIANTS.get(name, {}))
    problems = _distinct(task, 10)
    for p in problems:  # the script relies on the verifier
        assert task.score(p, task.reference_completion(p)).correct and not task.score(p, GARBAGE).correct
    engine = ScriptedEngine(task, problems, tokenizer)
    result = evaluate_policy("the policy", tokenizer, task, problems, k=3, viter=3, engine=engine)
    assert engine.synced == ["the policy"]
    assert result["n"] == 10
    assert result["pass@1"] == 3 / 10
    assert result["success@2"] == 5 / 10
    assert result["success@3"] == 7 / 10
    assert result["pass@3"] == 8 / 10
    right, wrong = task.score(problems[0], task.reference_completion(problems[0])), task.score(problems[3], GARBAGE)
    assert result["reward_mean"] == pytest.approx((3 * right.reward + 7 * wrong.reward) / 10)
    assert result["finished_rate"] == 1.0 and result["truncated_rate"] == 0.0


def test_a_run_logs_the_scripted_rates_at_every_evaluation(tmp_path, tokenizer, monkeypatch):
    """In a run, the evaluator's engine (when no task source has one) is built by make_engine:
    the scripted one here. Rows at step 0 (before training), 1 and 2, each with the script's
    rates, and the engine synced with the policy before each evaluation."""
    import unift.train.evals as evals

    task = tasks.get("countdown")
    problems = eval_problems(task, 10)
    engine = ScriptedEngine(task, problems, tokenizer)
    monkeypatch.setattr(evals, "make_engine", lambda *a, **kw: engine)
    config = tiny_run(tmp_path, [source("demonstration", "sft", "demonstrations.jsonl")], steps=2,
                      **{"eval.task": "countdown", "eval.n": 10, "eval.k": 3, "eval.viter": 3, "eval.every_steps": 1,
                         "precision": "fp32"})
    run_dir = train(config)
    rows = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert (r["pass@1"], r["success@2"], r["success@3"], r["pass@3"]) == (3 / 10, 5 / 10, 7 / 10, 8 / 10)
    assert len(engine.synced) == 3 and all(m is not None for m in engine.synced)


class RouteEngine:
    """Answers navigation's step prompts: a route is recognised by its instruction, the point by
    the history's A_ lines, the attempt by the feedback so far. `right(i, t, attempt)` says
    whether route i gets the reference reply at point t, else garbage."""

    def __init__(self, task, routes, tokenizer, right):
        self.task, self.routes, self.tokenizer, self.right = task, routes, tokenizer, right
        self.instructions = [task.instruction(r) for r in routes]
        assert len(set(self.instructions)) == len(routes)

    def sync(self, model):
        pass

    def generate(self, prompts, num_samples, max_new_tokens, temperature=1.0, top_p=1.0, stop_strings=(),
                 seed=None):
        texts = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            (i,) = [i for i, ins in enumerate(self.instructions) if f"[Instruction]\n{ins}\n\n" in text]
            t, attempt = text.count("\nA_") - 1, 1 + text.count("You failed this trial")
            step = {**self.routes[i], "t": t}
            texts.append(self.task.reference_completion(step) if self.right(i, t, attempt) else GARBAGE)
        return scripted_rollouts(self.tokenizer, [list(p) for p in prompts], texts)


def test_navigation_routes_are_played_step_by_step(tokenizer):
    """Route 0 is always answered right, route 1 right on the retry only, route 2 never: pass@1
    (each problem's own point, first try) 1/3, success@2 2/3; whole routes: L0 + L1 right
    replies of L0 + 2 L1 + 3 (route 2: two wrong tries at point 0 and the ungraded third call),
    2 of 3 routes finished."""
    task = tasks.get("navigation")
    routes = eval_problems(task, 3)
    engine = RouteEngine(task, routes, tokenizer, lambda i, t, attempt: i == 0 or (i == 1 and attempt == 2))
    result = evaluate_policy("the policy", tokenizer, task, routes, viter=2, engine=engine)
    lengths = [len(r["points"]) for r in routes]
    assert result["pass@1"] == 1 / 3 and result["success@2"] == 2 / 3
    assert result["step_accuracy"] == pytest.approx((lengths[0] + lengths[1]) / (lengths[0] + 2 * lengths[1] + 3))
    assert result["route_success"] == 2 / 3
    quick = evaluate_policy("the policy", tokenizer, task, routes, engine=engine, episodes=False)
    assert quick["pass@1"] == 1 / 3 and "step_accuracy" not in quick
