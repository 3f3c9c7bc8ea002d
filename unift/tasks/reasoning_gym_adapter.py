"""Any reasoning-gym dataset as a task: get("reasoning_gym", dataset="countdown", **config).

Parameters other than `dataset`, `timeout` and `max_answer_chars` go to
`reasoning_gym.create_dataset` (e.g. min_numbers=3). A problem is the dataset's entry
({"question", "answer", "metadata"}, made JSON-safe); the split hashes the question. The prompt
is the question plus a request for the answer in <answer></answer> tags; the reference solution
is the entry's answer as one piece (datasets without one, such as rubiks_cube, raise). Tuples in
an entry are stored as {"__tuple__": [...]} so that verifiers comparing tuples (arc_agi) still
match after a JSON round trip. The verifier is the dataset's own `score_answer` on the last
<answer> block: its value is the reward (0..1), correct when it is 1.

Some reasoning-gym verifiers evaluate the answer (`eval`, sympy's `parse_expr`). For those the
answer is NFKC-normalised and screened first (`guard.code_problem`: ASCII only, no names but a
few math functions); the verifier gets the normalised text. Every verifier call, screened or
not, runs in a separate, resource-limited process with a timeout (`sandbox`): the screens judge
only the answer, and a verifier may also evaluate a field of the problem (bitwise_arithmetic),
which may come from a user's file. A call past `timeout` seconds scores 0 and says so.

That timeout is the hard limit of this verifier, so `score_time_limit` is off here: the first
call imports reasoning-gym and starts the worker (seconds), and an alarm could cut the pipe
protocol with the worker mid-reply. What runs in this process is linear and reads at most
`max_answer_chars` of the answer. Completions stop after "</answer>" (`stop_strings`).
"""

from __future__ import annotations

import inspect
import json
import random
from functools import lru_cache

from . import guard, sandbox
from .base import ID, VAL_FRACTION, Score, Task, split_of, variant
from .registry import register

_RISKY = ("eval(", "exec(", "parse_expr", "sympify", "simplify", "sympy")


def to_json(x):
    """A JSON-safe copy of a reasoning-gym entry; tuples survive as {"__tuple__": [...]}."""
    if isinstance(x, tuple):
        return {"__tuple__": [to_json(v) for v in x]}
    if isinstance(x, list):
        return [to_json(v) for v in x]
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    return x if x is None or isinstance(x, bool | int | float | str) else str(x)


def from_json(x):
    if isinstance(x, dict):
        if set(x) == {"__tuple__"}:
            return tuple(from_json(v) for v in x["__tuple__"])
        return {k: from_json(v) for k, v in x.items()}
    return [from_json(v) for v in x] if isinstance(x, list) else x


@lru_cache(maxsize=64)
def _risky(dataset: str, config_json: str) -> bool:
    """Whether the dataset's verifier evaluates answers (its source mentions eval or sympy)."""
    import reasoning_gym

    ds = reasoning_gym.create_dataset(dataset, seed=0, size=1, **json.loads(config_json))
    try:
        return any(s in inspect.getsource(type(ds).score_answer) for s in _RISKY)
    except (OSError, TypeError):
        return True


@register("reasoning_gym")
class ReasoningGym(Task):
    defaults = {"dataset": "countdown", "timeout": 2.0, "max_answer_chars": 2000}
    named_variants = {"default": variant(ID, "the dataset's default configuration")}
    extra_params = True
    stop_strings = ("</answer>",)
    score_time_limit = None  # the sandbox's `timeout` bounds the verifier (module docstring)

    @property
    def config(self) -> dict:
        return {k: v for k, v in self.variant.items() if k not in self.defaults}

    def generate(self, rng: random.Random) -> dict | None:
        raise NotImplementedError("reasoning_gym problems come from the dataset (see problems)")

    def problems(self, n: int, seed: int = 0, split: str = "train") -> list[dict]:
        import reasoning_gym

        out: list[dict] = []
        seen: set[str] = set()
        share = {"test": self.test_fraction, "val": VAL_FRACTION}.get(split, 1.0)
        wanted = n / share  # entries to draw, roughly
        for chunk in range(100):
            ds = reasoning_gym.create_dataset(
                self.variant["dataset"],
                seed=seed * 100_003 + chunk,
                size=int(min(max(1.2 * wanted, 16), 1024)),
                **self.config,
            )
            for i in range(len(ds)):
                entry = to_json(ds[i])
                key = entry["question"]
                if split_of(key, self.test_fraction) == split and key not in seen:
                    seen.add(key)
                    out.append(entry)
                    if len(out) == n:
                        return out
        raise RuntimeError(
            f"reasoning_gym/{self.variant['dataset']}: only {len(out)} of {n} {split} problems"
        )

    def question(self, problem: dict) -> str:
        return f"{problem['question']}\n\nGive your final answer inside <answer> </answer> tags."

    def solution_steps(self, problem: dict) -> list[str]:
        if problem.get("answer") is None:
            raise ValueError(f"reasoning_gym/{self.variant['dataset']} gives no reference answer")
        return [f"<answer>{problem['answer']}</answer>"]

    def score(self, problem: dict, completion: str) -> Score:
        answer = self.answer_block(completion)
        if isinstance(answer, Score):
            return answer
        if len(answer) > self.variant["max_answer_chars"]:
            return Score(
                0.0,
                False,
                None,
                f"The answer is longer than {self.variant['max_answer_chars']} characters.",
            )
        config_json = json.dumps(self.config, sort_keys=True)
        try:
            risky = _risky(self.variant["dataset"], config_json)
        except Exception as e:  # reasoning-gym refuses the configuration
            why = type(e).__name__
            return Score(0.0, False, answer, f"The answer could not be verified ({why}).")
        if risky:
            answer = guard.normalise(answer)
            if why := guard.code_problem(answer):
                return Score(0.0, False, answer, f"The answer was rejected: {why}.")
        return self._verify(problem, answer, config_json)

    def _verify(self, problem: dict, answer: str, config_json: str) -> Score:
        """The dataset's `score_answer` in the sandbox; a timeout or failure scores 0."""
        timeout = self.variant["timeout"]
        try:
            reward = sandbox.shared().score(
                self.variant["dataset"], config_json, answer, problem, timeout
            )
        except TimeoutError:
            return Score(0.0, False, answer, f"The verifier took longer than {timeout} s.")
        except sandbox.VerifierError as e:
            return Score(0.0, False, answer, f"The answer could not be verified ({e}).")
        correct = reward >= 1.0
        return Score(
            reward, correct, answer, "Correct." if correct else "The answer is not correct."
        )
