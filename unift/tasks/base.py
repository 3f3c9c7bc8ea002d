"""The task interface: a seeded problem generator, a prompt, a verifier and a reference solution.

A task turns a plain JSON-serialisable problem dict into chat messages (or raw text for base
models), scores a completion with a `Score`, and cuts a correct answer into `solution_steps`
(the hints of UFT-hint: docs/methods.md section 1.1). Named variants split in-distribution (ID) from
out-of-distribution (OOD) settings; `get(name, variant="ood", key=value)` resolves them.

Splits: a problem belongs to the test split when a hash of its `split_key` falls below
`test_fraction`, to the validation split ("val", for choosing settings) when it falls in the top
`VAL_FRACTION`, and to train otherwise. The rule depends on the problem alone, so no seed can put
a test or validation problem into the training set.

Verifiers run on the training process's main thread, so every subclass's `score` is wrapped
in a hard time limit (`score_time_limit`, default `SCORE_TIME_LIMIT` seconds; SIGALRM, main
thread only): a scoring that overruns gets the task's lowest reward and feedback saying so. The
limit is the backstop; the guarantee is that verifiers are linear in the completion (no regex
that can backtrack over a long run) and read at most `MAX_COMPLETION_CHARS`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import types
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from . import guard

ID, OOD = "id", "ood"
MAX_COMPLETION_CHARS = 100_000  # longer completions get the task's minimum reward, unread
SCORE_TIME_LIMIT = 1.0  # seconds one `score` call may take (the default of `score_time_limit`)

DEFAULT_PREAMBLE = (
    "A conversation between User and Assistant. The user asks a question, and the assistant "
    "solves it. The assistant first thinks about the reasoning process and then provides the "
    "user with the answer."
)


@dataclass
class Score:
    """A verifier's verdict on one completion."""

    reward: float
    """Scalar reward on the task's scale (`Task.min_reward` .. `Task.max_reward`)."""
    correct: bool
    """Whether the completion solves the problem."""
    parsed: Any | None = None
    """What the verifier read from the completion (None when nothing could be parsed)."""
    feedback: str = ""
    """A message for the model, used for verification iterations (`retry_messages`)."""


def variant(distribution: str, description: str, **params: Any) -> dict:
    """A named-variant entry: `distribution` is "id" or "ood"; `params` override the defaults."""
    assert distribution in (ID, OOD), distribution
    return {"distribution": distribution, "description": description, "params": params}


SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.05
"""Share of problems in the validation split ("val"), taken from the top of the hash range, so
the test split is the same as before it existed; settings are chosen on it, never on "test"."""


def split_of(key: str, test_fraction: float, val_fraction: float = VAL_FRACTION) -> str:
    """ "test" when sha256(key), read as a number in [0, 1), is below `test_fraction`; "val" when
    it is at or above 1 - `val_fraction`; "train" in between."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    if h < test_fraction:
        return "test"
    return "val" if h >= 1 - val_fraction else "train"


def last_block(text: str, tag: str = "answer") -> str | None:
    """Content of the last <tag>...</tag> block, found in linear time (no regex backtracking)."""
    end = text.rfind(f"</{tag}>")
    if end < 0:
        return None
    start = text.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return None
    return text[start + len(tag) + 2 : end].strip()


def time_limited(score: Callable[[Task, dict, str], Score]) -> Callable[[Task, dict, str], Score]:
    """`score` under the task's `score_time_limit`: past it, `timeout_score`. Applied to every
    subclass's `score` by `Task.__init_subclass__`; an inner limit (a `score` calling
    `super().score`) never outlives an outer one, and each catches only its own alarm."""

    @functools.wraps(score)
    def limited(self: Task, problem: dict, completion: str) -> Score:
        limit = guard.TimeLimit(self.score_time_limit)
        try:
            with limit:
                result = score(self, problem, completion)
        except guard.TimeLimitExceeded as e:
            if e.limit is not limit:
                raise
            limit.close()  # the alarm may have cut `__exit__` short
            return self.timeout_score()
        return self.timeout_score() if limit.expired else result  # a bare `except:` caught it

    limited.time_limited = True  # type: ignore[attr-defined]
    return limited


class Task(ABC):
    """Base class of every task. Subclasses set the class attributes and implement the four
    abstract methods; `register(name)` makes them available to `get`. Every subclass's `score`
    runs under `score_time_limit` (`time_limited`).
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    """Every variant parameter with its default value (the default variant)."""
    named_variants: ClassVar[dict[str, dict]] = {}
    """Variant name -> `variant(...)` entry; the first one is the default."""
    extra_params: ClassVar[bool] = False
    """Whether `get` accepts parameters not listed in `defaults` (adapters pass them on)."""
    test_fraction: ClassVar[float] = 0.1
    min_reward: ClassVar[float] = 0.0
    max_reward: ClassVar[float] = 1.0
    system_prompt: ClassVar[str | None] = None
    retry_instruction: ClassVar[str] = "Please try again, using the same answer format."
    max_tries_per_problem: ClassVar[int] = 1000
    stop_strings: ClassVar[tuple[str, ...]] = ()
    """Strings after which a completion is complete (rollouts and evaluation stop there; EOS
    always stops). Set only when the answer format ends with a fixed string, such as
    "</answer>"; cutting the reference completion after the first one must not change its
    score."""
    score_time_limit: float | None = SCORE_TIME_LIMIT
    """Seconds one `score` call may take before it scores `floor_reward` with feedback saying
    so; None: no limit. Enforced with SIGALRM in the main thread of the main interpreter only
    (elsewhere linear verifiers are the guarantee). Set it on `Task` for every task, on a class
    or on an instance."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        score = cls.__dict__.get("score")
        if isinstance(score, types.FunctionType) and not getattr(score, "time_limited", False):
            cls.score = time_limited(score)

    def __init__(self, variant: str | None = None, **params: Any):
        names = self.named_variants
        self.variant_name = variant or (next(iter(names)) if names else "default")
        if names and self.variant_name not in names:
            raise ValueError(
                f"{self.name}: unknown variant {self.variant_name!r}; known: {list(names)}"
            )
        resolved = dict(self.defaults)
        resolved.update(names[self.variant_name]["params"] if names else {})
        unknown = set(params) - set(resolved)
        if unknown and not self.extra_params:
            raise ValueError(
                f"{self.name}: unknown parameters {sorted(unknown)}; known: {sorted(resolved)}"
            )
        resolved.update(params)
        try:  # RL records store the variant; `get(name, **variant)` must rebuild the task
            json.dumps(resolved)
        except TypeError as e:
            raise ValueError(f"{self.name}: variant parameters must be JSON values ({e})") from None
        self.variant: dict[str, Any] = resolved
        self.check_variant()

    @classmethod
    def variants(cls) -> dict[str, dict]:
        """Named variants: {name: {"distribution": "id"|"ood", "description", "params"}},
        with `params` fully resolved against the defaults."""
        return {
            k: {**v, "params": {**cls.defaults, **v["params"]}}
            for k, v in cls.named_variants.items()
        }

    def check_variant(self) -> None:  # noqa: B027  (optional hook, empty by default)
        """Validate `self.variant`; raise ValueError on a bad parameter."""

    # --- problems -------------------------------------------------------------------------
    @abstractmethod
    def generate(self, rng: random.Random) -> dict | None:
        """One candidate problem (None to reject and draw again)."""

    def split_key(self, problem: dict) -> str:
        """The canonical form of a problem that decides its split (override to merge problems
        that differ only in irrelevant details, e.g. the order of the numbers)."""
        return json.dumps(problem, sort_keys=True)

    def problems(self, n: int, seed: int = 0, split: str = "train") -> list[dict]:
        """`n` distinct problems of `split`, the same list for the same seed and variant."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        params = json.dumps(self.variant, sort_keys=True, default=str)
        rng = random.Random(f"{self.name}|{params}|{seed}|{split}")
        out: list[dict] = []
        seen: set[str] = set()
        for _ in range(max(n, 1) * self.max_tries_per_problem):
            if len(out) >= n:
                break
            problem = self.generate(rng)
            if problem is None or split_of(self.split_key(problem), self.test_fraction) != split:
                continue
            key = json.dumps(problem, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(problem)
        if len(out) < n:
            raise RuntimeError(f"{self.name}: generated only {len(out)} of {n} {split} problems")
        return out

    # --- prompt ---------------------------------------------------------------------------
    @abstractmethod
    def question(self, problem: dict) -> str:
        """The user's message: the problem and the answer format."""

    def prompt(self, problem: dict) -> list[dict]:
        """Chat messages: an optional system message and the user turn."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return messages + [{"role": "user", "content": self.question(problem)}]

    def prompt_text(self, problem: dict) -> str:
        """Raw-text prompt for base models (no chat template). The study's countdown prompt
        also opened "<think>"; here the completion opens it, so chat and text prompts expect
        the same completion (`reference_completion`)."""
        return f"{DEFAULT_PREAMBLE}\nUser: {self.question(problem)}\nAssistant: Let me solve this step by step.\n"

    # --- verifier and reference -----------------------------------------------------------
    @abstractmethod
    def score(self, problem: dict, completion: str) -> Score:
        """Score one completion. Never raises; pathological input gets `min_reward`."""

    @abstractmethod
    def solution_steps(self, problem: dict) -> list[str]:
        """A correct answer cut into pieces; their concatenation is a complete completion."""

    def reference_completion(self, problem: dict) -> str:
        return "".join(self.solution_steps(problem))

    def reward_fn(self, prompts: list, completions: list, **columns: list) -> list[float | None]:
        """TRL-style reward function. The problem comes from column "problem" (a dict or a
        JSON string); rows without one get None. Chat completions (lists of messages) are read
        from their last message."""
        problems = columns.get("problem") or [None] * len(completions)
        rewards: list[float | None] = []
        for problem, completion in zip(problems, completions, strict=True):
            if problem is None:
                rewards.append(None)
                continue
            if isinstance(problem, str):
                problem = json.loads(problem)
            if isinstance(completion, list):
                completion = completion[-1]["content"] if completion else ""
            rewards.append(self.score(problem, completion).reward)
        return rewards

    def answer_block(self, completion: str) -> str | Score:
        """The content of the last <answer> block, or the failing Score of a completion that is
        unreadable (`too_long`) or has no such block (reward 0, as in the study)."""
        if (bad := self.too_long(completion)) is not None:
            return bad
        answer = last_block(completion)
        if answer is None:
            return Score(0.0, False, None, "No <answer> </answer> block was found.")
        return answer

    def too_long(self, completion: str) -> Score | None:
        """The `floor_reward` Score for a completion that is not a string or too long to read."""
        if not isinstance(completion, str):
            return Score(self.floor_reward, False, None, "The completion is not text.")
        if len(completion) > MAX_COMPLETION_CHARS:
            return Score(
                self.floor_reward,
                False,
                None,
                f"The completion is longer than {MAX_COMPLETION_CHARS} characters.",
            )
        return None

    def timeout_score(self) -> Score:
        """The Score of a completion whose scoring overran `score_time_limit`."""
        return Score(
            self.floor_reward,
            False,
            None,
            f"The verifier exceeded its time limit of {self.score_time_limit} s on this "
            "completion, which scores the lowest reward.",
        )

    @property
    def floor_reward(self) -> float:
        """Reward of a completion the verifier cannot read (not text, too long, or scoring past
        the time limit): `min_reward`, unless a task whose `score` scale starts higher sets a
        class attribute of this name."""
        return self.min_reward

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variant={self.variant_name!r}, {self.variant})"


def retry_messages(
    task: Task, problem: dict, messages: list[dict], completion: str, score: Score
) -> list[dict]:
    """Continue a conversation after a graded attempt (verification iterations, "VIter"): the
    assistant turn is the completion, the user turn the verifier's feedback and a retry request.
    `problem` is unused by the default tasks but lets custom tasks tailor the retry message."""
    del problem
    feedback = f"{score.feedback}\n{task.retry_instruction}".strip()
    return [
        *messages,
        {"role": "assistant", "content": completion},
        {"role": "user", "content": feedback},
    ]
