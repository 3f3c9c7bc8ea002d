"""Verifiers never raise, never evaluate model output, and dispose of pathological completions
quickly with the task's minimum reward: 100k-character adversarial completions score in under
100 ms for every task (linear code), and a verifier that overruns its time limit scores the
lowest reward with feedback saying so, the alarm state restored."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tasks.helpers import shipped_task_names
from unift import tasks
from unift.tasks import Score, guard, instructions, navigation
from unift.tasks.countdown import Countdown
from unift.tasks.general_points import GeneralPoints
from unift.tasks.navigation import Navigation

from . import adversarial
from .helpers import all_tasks

CANARY = "/tmp/unift_safety_canary"
# exec(bytes((...))) of the line above in full-width letters: Python reads 'ｅｘｅｃ' as exec
_CODES = ",".join(str(b) for b in f'__import__("os").system("touch {CANARY}")'.encode())
FULL_WIDTH = f"ｅｘｅｃ(ｂｙｔｅｓ(({_CODES},)))"
NESTED = "(" * 10_000 + "1" + ")" * 10_000
PATHOLOGICAL = [
    "9**9**9**9",
    "10**100000",
    "99999999!",
    "1/0",
    "8/(3-3)",
    "٣ + ٤",
    "1e308*1e308",
    "[0]*10**9",
    f'__import__("os").system("touch {CANARY}")',
    FULL_WIDTH,
    NESTED,
    "",
    "\x00\x01\ud800",
    "x" * 1_000_000,
    "1+" * 500_000 + "1",
    "<answer>" * 100_000,
    "{" * 100_000,
    "\\boxed{" * 10_000,
    "\\boxed{9^{9^{9^9}}}",
    "$2^{2^{2^{40}}}$",
    "\\boxed{100000000!}",
    "forward()\n" * 100_000,
    "x^" * 900 + "x",
]

# The minimum reward, except: a navigation step scores -1 without an intersection claim, a
# general_points formula -3 when unreadable, -2 when empty (every card unused; the scale goes
# down to -10 for garbage formulas), a knights_knaves answer block 0.1 whatever it holds (the UFT verifier's format
# score); math-verify reads "1/0" as a (wrong) answer; reasoning-gym's own verifiers give
# 0.01-0.05 to a wrong answer; instruction constraints judge text, and "9**9**9**9" is
# lowercase text.
LOWEST = {
    "navigation": -1.0,
    "knights_knaves": 0.1,
    "general_points": -2.0,
    "jsonl": 0.1,
    "reasoning_gym": 0.05,
    "instructions": 1.0,
}


def wrapped(text: str) -> list[str]:
    """Each pathological text bare, as an answer block, as a JSON formula and boxed."""
    return [text, f"<answer>{text}</answer>", json.dumps({"formula": text}), f"\\boxed{{{text}}}"]


def test_pathological_completions_are_cheap_and_score_the_minimum(math_file):
    if os.path.exists(CANARY):
        os.remove(CANARY)
    everything = all_tasks(math_file)
    cases = [(task, task.problems(1)[0]) for task in everything]
    for task, problem in cases:  # warm up imports and caches before timing
        task.score(problem, task.reference_completion(problem))
    start = time.perf_counter()
    for task, problem in cases:
        for text in PATHOLOGICAL:
            for completion in wrapped(text):
                score = task.score(problem, completion)
                assert isinstance(score, Score) and not score.correct and score.feedback, (
                    task,
                    completion[:50],
                )
                assert score.reward <= LOWEST.get(task.name, task.min_reward), (
                    task,
                    completion[:50],
                    score,
                )
    elapsed = time.perf_counter() - start
    assert not os.path.exists(CANARY)
    n = len(cases) * len(PATHOLOGICAL) * 4
    # the aim is well under a second for the whole set; the bound leaves room for a busy machine
    assert elapsed < 3.0, f"{n} pathological scorings took {elapsed:.2f} s"


@pytest.mark.parametrize(
    "name", ["countdown", "knights_knaves", "general_points", "navigation", "instructions"]
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_verifiers_never_raise_on_fuzzed_completions(name, data):
    task = tasks.get(name)
    problem = data.draw(st.sampled_from(_problems(name)))
    reference = task.reference_completion(problem)
    alphabet = st.sampled_from(
        list("0123456789+-*/() =<>{}[]\"':,.\n")
        + ["<answer>", "</answer>", "forward()", "knight", "knave", '"formula": ', "**", "٣"]
    )
    noise = data.draw(st.text(max_size=60) | st.lists(alphabet, max_size=40).map("".join))
    cut = data.draw(st.integers(0, len(reference)))
    completion = data.draw(
        st.sampled_from(
            [
                noise,
                reference[:cut] + noise,
                noise + reference,
                reference[:cut] + noise + reference[cut:],
                f"<answer>{noise}</answer>",
                json.dumps({"formula": noise}),
            ]
        )
    )
    score = task.score(problem, completion)
    assert isinstance(score, Score) and isinstance(score.feedback, str)
    assert task.min_reward <= score.reward <= task.max_reward
    if name == "navigation":  # every point of the route, and the whole route in route mode
        t = data.draw(st.integers(0, len(task.expected(problem)) - 1))
        assert task.score({**problem, "t": t}, completion).reward in (-1.5, -1.0, 1.0)
        route = tasks.get(name, mode="route").score(problem, completion)
        assert 0.0 <= route.reward <= 1.0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(max_size=80)
    | st.lists(
        st.sampled_from(list("0123456789+-*/^()!_. ") + ["**", "\\boxed{", "}", "$", "\\frac"]),
        max_size=30,
    ).map("".join)
)
def test_adapters_never_raise_on_fuzzed_completions(math_file, text):
    for task in all_tasks(math_file)[-3:]:
        problem = _adapter_problem(task)
        for completion in (text, f"<answer>{text}</answer>", f"\\boxed{{{text}}}"):
            score = task.score(problem, completion)
            assert isinstance(score, Score) and 0.0 <= score.reward <= 1.0


_CACHE: dict = {}


def _problems(name: str) -> list[dict]:
    if name not in _CACHE:
        _CACHE[name] = tasks.get(name).problems(20, seed=9)
    return _CACHE[name]


def _adapter_problem(task) -> dict:
    key = (task.name, json.dumps(task.variant, sort_keys=True))
    if key not in _CACHE:
        _CACHE[key] = task.problems(1)[0]
    return _CACHE[key]


# --- long adversarial completions: linear verifiers ---------------------------------------
# 100k characters aimed at super-linear spots (tests/tasks/adversarial.py). Each must score in
# under 100 ms through linear code, not through the time limit (the backstop). A case over the
# bound is timed twice more and judged by its best time, so that a busy machine is not taken
# for a quadratic verifier (those take seconds: 27 s for navigation's old pattern at 20k).
MAX_SECONDS = 0.1
TASK_KWARGS = {"jsonl": lambda math_file: {"path": math_file}}


def every_registered_task(math_file) -> list[tasks.Task]:
    return [
        tasks.get(name, **TASK_KWARGS.get(name, lambda _: {})(math_file)) for name in shipped_task_names()
    ]


def test_long_adversarial_completions_score_fast_for_every_task(math_file):
    cases = adversarial.completions()
    assert len(cases) > 80 and all(len(c) == adversarial.N for c in cases.values())
    slow = []
    for task in every_registered_task(math_file):
        problem = adversarial.problem_for(task)
        adversarial.warm_up(task, problem)
        for name, completion in cases.items():
            seconds, score = adversarial.timed(task, problem, completion)
            if seconds >= MAX_SECONDS:
                seconds = min(
                    seconds, *(adversarial.timed(task, problem, completion)[0] for _ in "ab")
                )
            assert isinstance(score, Score) and not score.correct, (task.name, name, score)
            assert task.min_reward <= score.reward <= task.max_reward, (task.name, name, score)
            assert "time limit" not in score.feedback, (task.name, name)
            if seconds >= MAX_SECONDS:
                slow.append(f"{task.name} {name}: {seconds * 1e3:.0f} ms")
    assert not slow, slow


def test_adversarial_set_covers_every_registered_task(math_file):
    assert {t.name for t in every_registered_task(math_file)} == set(shipped_task_names())
    problem = adversarial.problem_for(tasks.get("instructions"))
    assert {c["type"] for c in problem["constraints"]} == set(instructions.TYPES)


def test_guard_screens_are_linear():
    # reasoning-gym answers reach the screens with at most max_answer_chars (2000) characters;
    # 20k is ten times that. The old call pattern took 40 ms on 2000 letters and 6 s on 20k.
    n = 20_000
    for text in ("a" * n, "a9" * (n // 2), "x^1+" * (n // 4), "(" * n, " " * n + "a"):
        with guard.TimeLimit(2.0):  # a regression fails here instead of hanging the suite
            seconds = min(adversarial.timed_call(guard.code_problem, text) for _ in range(2))
        assert seconds < MAX_SECONDS, (text[:8], seconds)


# The linear rewrites accept what the old patterns accepted (on short text, where the old ones
# are quick): navigation's actions, instruction bullets, and the calls guard.code_problem sees.
OLD_ACTION = re.compile(
    r"(forward|stop)\s*\(\s*\)|turn_direction\s*\(\s*['\"]?([a-z ]{1,20}?)['\"]?\s*\)", re.I
)
OLD_BULLET = re.compile(r"^\s*[*-]\s+\S", re.MULTILINE)
OLD_CALL = re.compile(r"([A-Za-z_]\w*|[)\]'\"])\s*\(")


def old_parse_actions(text: str) -> list[str]:
    out = []
    for m in OLD_ACTION.finditer(text):
        if len(out) >= navigation.MAX_ACTIONS:
            break
        out.append(
            f"{m.group(1).lower()}()"
            if m.group(1)
            else f"turn_direction({' '.join(m.group(2).lower().split())})"
        )
    return out


def tokens(*alphabet: str, max_size: int = 14):
    return st.lists(st.sampled_from(alphabet), max_size=max_size).map("".join)


@settings(max_examples=400, deadline=None)
@given(
    text=tokens(" ", "\t", "\n", "'", '"', "a", "N", "1", "K", "ſ", "(", ")", "forward()", "stop")
    | tokens("turn_direction(", " ", "\t", "'", '"', "a", "B", "1", "K", "İ", "\u2028", ")", "x")
)
def test_navigation_actions_read_as_before(text):
    assert navigation.parse_actions(text) == old_parse_actions(text)


@settings(max_examples=400, deadline=None)
@given(text=tokens("\n", " ", "\t", "\r", "\x0b", "\u2028", "*", "-", "a"))
def test_bullets_count_as_before(text):
    assert len(instructions._BULLET.findall(text)) == len(OLD_BULLET.findall(text))


@settings(max_examples=400, deadline=None)
@given(text=tokens("a", "9", "_", "(", ")", " ", "]", "'", "sqrt", "exp", "0x1f", "\t", ".", "e"))
def test_guard_screens_calls_as_before(text):
    new = guard.code_problem(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(guard, "_CALL", OLD_CALL)
        assert guard.code_problem(text) == new


# --- the hard time limit ------------------------------------------------------------------
LIMIT = 0.2  # seconds, for the deliberately slow verifiers below
DEADLINE = (
    3.0  # a slow verifier gives up (and claims success) after this: the test fails, not hangs
)


def spin(seconds: float = DEADLINE) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


class Spinning(Countdown):
    score_time_limit = LIMIT

    def score(self, problem, completion):
        spin()
        return Score(1.0, True, None, "finished")


class Sleeping(Countdown):
    score_time_limit = LIMIT

    def score(self, problem, completion):
        time.sleep(DEADLINE)
        return Score(1.0, True, None, "finished")


class Backtracking(Countdown):
    """navigation's old pattern on 20k spaces: 27 s, interrupted inside the regex engine."""

    score_time_limit = LIMIT

    def score(self, problem, completion):
        OLD_ACTION.search("turn_direction(" + " " * 20_000 + "x")
        return Score(1.0, True, None, "finished")


class SwallowsExceptions(Countdown):
    score_time_limit = LIMIT

    def score(self, problem, completion):
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            try:
                spin(0.05)
            except Exception:  # a verifier's broad handler must not eat the limit
                pass
        return Score(1.0, True, None, "finished")


class BareExcept(Countdown):
    score_time_limit = LIMIT

    def score(self, problem, completion):
        try:
            spin()
        except:  # noqa: E722  (it catches the alarm; the result still does not count)
            return Score(1.0, True, None, "caught the alarm")
        return Score(1.0, True, None, "finished")


class SlowGeneralPoints(GeneralPoints):
    score_time_limit = LIMIT

    def score(self, problem, completion):
        spin()
        return super().score(problem, completion)


class SlowNavigation(Navigation):
    score_time_limit = LIMIT

    def score(self, problem, completion):
        spin()
        return super().score(problem, completion)


class FastThenSlow(Countdown):
    """A `score` that calls a (wrapped) `super().score` and then spins: the inner limit must
    neither catch the outer alarm nor leave the rest unlimited."""

    score_time_limit = LIMIT

    def score(self, problem, completion):
        inner = super().score(problem, completion)
        spin()
        return inner


def alarm_state():
    return signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)


@pytest.mark.parametrize(
    "cls", [Spinning, Sleeping, Backtracking, SwallowsExceptions, BareExcept, FastThenSlow]
)
def test_slow_verifier_scores_zero_with_feedback_and_restores_the_alarm(cls):
    task = cls()
    problem = task.problems(1)[0]
    before = alarm_state()
    start = time.perf_counter()
    score = task.score(problem, task.reference_completion(problem))
    elapsed = time.perf_counter() - start
    assert (score.reward, score.correct, score.parsed) == (0.0, False, None), score
    assert f"exceeded its time limit of {LIMIT} s" in score.feedback
    assert elapsed < LIMIT + 0.5, elapsed
    assert alarm_state() == before == (signal.SIG_DFL, (0.0, 0.0))
    assert Countdown().score(problem, task.reference_completion(problem)).correct  # still works


def test_time_limit_scores_the_lowest_reward_of_the_scale():
    # general_points: 0 would beat "no formula" (-3), the score of an unreadable answer; a
    # navigation step scores -1.5 at worst, a whole sequence (route mode) 0
    cases = ((SlowGeneralPoints(), -3.0), (SlowNavigation(), -1.5), (SlowNavigation(mode="route"), 0.0))
    for task, lowest in cases:
        problem = task.problems(1)[0]
        score = task.score(problem, task.reference_completion(problem))
        assert score.reward == lowest and not score.correct and "time limit" in score.feedback


class OuterAlarm(Exception):
    pass


def raise_outer(signum, frame):
    raise OuterAlarm


def test_an_enclosing_timer_is_restored_with_the_time_it_has_left():
    problem = Spinning().problems(1)[0]
    previous = signal.signal(signal.SIGALRM, raise_outer)
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        score = Spinning().score(problem, "")
        assert "time limit" in score.feedback
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 4.0 < left < 5.0 - LIMIT + 0.01
        assert signal.getsignal(signal.SIGALRM) is raise_outer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_enclosing_timer_that_fires_first_stays_in_charge():
    problem = Spinning().problems(1)[0]
    previous = signal.signal(signal.SIGALRM, raise_outer)
    task = Spinning()
    task.score_time_limit = 5.0
    try:
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(OuterAlarm):
            task.score(problem, "")
        assert time.perf_counter() - start < 1.0  # on time, not after the verifier's end
        assert signal.getsignal(signal.SIGALRM) is raise_outer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Napping(Countdown):
    score_time_limit = 0.05

    def score(self, problem, completion):
        time.sleep(0.3)
        return Score(1.0, True, None, "finished")


def test_no_alarm_off_the_main_thread():
    # SIGALRM reaches the main thread only: elsewhere the verifier runs to its end (linear
    # verifiers are the guarantee there), and setting up the limit does not raise
    task = Napping()
    problem = task.problems(1)[0]
    results = []
    thread = threading.Thread(target=lambda: results.append(task.score(problem, "")))
    start = time.perf_counter()
    thread.start()
    thread.join()
    assert results[0].feedback == "finished" and time.perf_counter() - start >= 0.3
    assert "time limit" in task.score(problem, "").feedback  # the main thread has the limit
    assert alarm_state() == (signal.SIG_DFL, (0.0, 0.0))


def test_a_limit_of_none_is_no_limit():
    task = Napping()
    task.score_time_limit = None
    assert task.score(task.problems(1)[0], "").feedback == "finished"


def test_every_task_score_is_time_limited():
    for cls in tasks.TASKS.values():
        assert getattr(cls.score, "time_limited", False), cls
