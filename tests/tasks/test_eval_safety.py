"""No model output or problem field is evaluated in the training process: full-width code does
not pass the screen of eval-based reasoning-gym verifiers, and every reasoning-gym verifier runs
in a limited worker process (`unift.tasks.sandbox`) that refuses files, network and processes
and is killed when it overruns."""

from __future__ import annotations

import ast
import os
import time
import unicodedata

import pytest

from unift import tasks
from unift.tasks import guard, sandbox


def full_width(text: str) -> str:
    """ASCII letters as their full-width forms, which Python's parser reads as the letters."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in text)


def payloads(marker) -> list[str]:
    """Answers that create `marker` when evaluated: no ASCII letter names what they call."""
    code = f"__import__('os').system('touch {marker}')"
    as_bytes = ",".join(str(b) for b in code.encode())
    return [
        full_width(f"exec(bytes(({as_bytes},)))"),  # nothing ASCII but digits and punctuation
        "__" + full_width("import") + "__('os').system('touch " + str(marker) + "')",
        "_＿" + full_width("import") + "＿＿('os')",  # full-width underscores too
    ]


def test_full_width_payloads_are_code_to_python(tmp_path):
    # what the screen faces: Python reads these as calls of exec and __import__
    for payload in payloads(tmp_path / "marker"):
        call = ast.parse(payload, mode="eval").body
        while not isinstance(call.func, ast.Name):
            call = call.func.value
        assert call.func.id in ("exec", "__import__")
        assert not payload.isascii() and unicodedata.normalize("NFKC", payload) != payload


@pytest.mark.parametrize("dataset", ["spiral_matrix", "countdown"])  # eval / parse_expr
def test_full_width_payload_does_not_execute(tmp_path, dataset):
    task = tasks.get("reasoning_gym", dataset=dataset)
    problem = task.problems(1)[0]
    marker = tmp_path / "pwned"
    for payload in payloads(marker):
        score = task.score(problem, f"<answer>{payload}</answer>")
        assert score.reward == 0.0 and not score.correct, (payload, score)
        assert "rejected" in score.feedback, score.feedback
    assert not marker.exists()
    greek = task.score(problem, "<answer>[λ for λ in (1,)]</answer>")  # non-ASCII after NFKC
    assert greek.reward == 0.0 and "non-ASCII character 'λ'" in greek.feedback


def test_ascii_payloads_are_still_rejected(tmp_path):
    task = tasks.get("reasoning_gym", dataset="spiral_matrix")
    problem = task.problems(1)[0]
    marker = tmp_path / "pwned"
    for payload in [
        f"__import__('os').system('touch {marker}')",
        "exec(bytes((95,95)))",
        f"open('{marker}', 'w')",
        "[x for x in ().__class__.__base__.__subclasses__()]",
    ]:
        score = task.score(problem, f"<answer>{payload}</answer>")
        assert score.reward == 0.0 and "rejected" in score.feedback, (payload, score)
    assert not marker.exists()


def test_legitimate_answers_still_score():
    spiral = tasks.get("reasoning_gym", dataset="spiral_matrix")
    problem = spiral.problems(1)[0]
    assert spiral.score(problem, spiral.reference_completion(problem)).correct
    as_list = "[" + ", ".join(problem["answer"].split()) + "]"  # scored through eval: 0.1
    assert spiral.score(problem, f"<answer>{as_list}</answer>").reward == 0.1
    countdown = tasks.get("reasoning_gym", dataset="countdown")
    problem = countdown.problems(1)[0]
    assert countdown.score(problem, countdown.reference_completion(problem)).correct
    wide_digits = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in problem["answer"])
    assert countdown.score(problem, f"<answer>{wide_digits}</answer>").correct  # NFKC: digits
    assert guard.code_problem(guard.normalise(wide_digits)) is None


# bitwise_arithmetic evaluates the problem's metadata.problem and compares the value with the
# answer (read with int(answer, 0)): a crafted problem runs code in the verifier and reports one
# integer back, which lets these tests look inside the worker.


def bitwise(expression: str) -> dict:
    return {"question": "?", "answer": "1", "metadata": {"problem": expression}}


def verify(expression: str, answer: str = "1", timeout: float = 2.0) -> tasks.Score:
    task = tasks.get("reasoning_gym", dataset="bitwise_arithmetic", timeout=timeout)
    return task.score(bitwise(expression), f"<answer>{answer}</answer>")


def test_problem_fields_are_evaluated_only_in_the_sandbox(tmp_path):
    assert verify("0x1 + 0x2", "3").correct  # the probe works
    assert verify(f"int(__import__('os').getpid() != {os.getpid()})").correct
    scratch = sandbox.shared()._scratch
    assert verify(f"int(__import__('os').getcwd() == {scratch!r})").correct
    assert verify("int(__import__('os').environ.get('HOME') == __import__('os').getcwd())").correct
    marker = tmp_path / "pwned"
    refused = [
        f"__import__('os').system('touch {marker}') + 1",
        f"len(open({str(marker)!r}, 'w').name) and 1",
        f"__import__('pathlib').Path({str(marker)!r}).touch() or 1",
        f"__import__('subprocess').run(['touch', {str(marker)!r}]).returncode + 1",
        "__import__('os').fork() + 1",
        "len(__import__('os').listdir('/tmp')) and (__import__('os').kill(1, 0) or 1)",
        "__import__('socket').create_connection(('127.0.0.1', 9)) and 1",
        "__import__('ctypes').CDLL(None).getpid() and 1",
        "len(bytearray(4 * 1024**3)) and 1",  # over the memory limit
    ]
    for expression in refused:
        assert verify(expression).reward == 0.0, expression
    assert not marker.exists()
    assert verify("0x1 + 0x2", "3").correct  # the same worker still serves


def test_a_verifier_past_its_timeout_scores_zero_and_the_next_call_works():
    before = sandbox.shared().score("bitwise_arithmetic", "{}", "3", bitwise("1 + 2"), 2.0)
    assert before == 1.0
    start = time.perf_counter()
    score = verify("sum(range(10**12))", timeout=0.5)  # C code: SIGALRM cannot stop it
    elapsed = time.perf_counter() - start
    assert score.reward == 0.0 and "took longer than 0.5 s" in score.feedback
    assert elapsed < 0.5 + sandbox.GRACE + 1.0
    score = verify("9**9**9**9", timeout=0.5)  # the verifier catches the alarm itself
    assert score.reward == 0.0 and "took longer" in score.feedback
    assert verify("0x1 + 0x2", "3").correct  # a new worker
