"""reasoning-gym verifiers in a separate, resource-limited process.

Some reasoning-gym verifiers `eval` the model's answer (countdown, puzzle24, ...), and
bitwise_arithmetic evals a field of the problem, which may come from a user's file. The screens
in `guard` keep code out of the answers; this module contains whatever still gets through, so
that nothing a model or a data file writes is evaluated in the training process. Every
`score_answer` call of the `reasoning_gym` task runs in one worker process (`Sandbox`), which:
- has no network: its own network namespace when the kernel allows one (`unshare`), and in any
  case an audit hook that refuses sockets;
- cannot change anything outside itself: the audit hook refuses subprocesses, fork, exec,
  signals, ctypes and opening, creating, renaming or deleting files for writing; RLIMIT_FSIZE 0
  backs this up in the kernel (no byte reaches a file), and RLIMIT_NPROC 0 does for processes
  (for users other than root: root is exempt, even in a user namespace);
- is limited in time: SIGALRM in the worker after `timeout` seconds, RLIMIT_CPU soon after
  (its soft limit is raised per call), and the parent kills the worker when no reply has come
  `GRACE` seconds after the timeout (C code that never returns to Python);
- is limited in memory: RLIMIT_AS, `memory_mb` above what its imports use;
- runs in a scratch temporary directory, removed when the parent exits, with a minimal
  environment and `python -I` (no PYTHONPATH, no user site, no script directory on sys.path).
An audit hook is not a security boundary on its own (CPython documents as much); with the
screens, the limits and the namespace it leaves a small surface.

The worker starts on first use (about 1.5 s: it imports reasoning-gym) and serves every later call
over a pipe, one JSON line each way (about 0.4 ms per call on top of the verifier). A worker
that dies or overruns is killed and a new one starts on the next call.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

GRACE = 1.0  # seconds the parent waits beyond a call's timeout before killing the worker
START_TIMEOUT = 120.0  # seconds for a worker to import reasoning-gym and report ready
MEMORY_MB = 1024
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); import unift.tasks.sandbox as s; s.serve()"


class SandboxError(RuntimeError):
    """The worker could not be started: an environment problem, not a property of the answer."""


class VerifierError(Exception):
    """The verifier raised, died or produced no reply; the message names the exception."""


# --- the parent's side ------------------------------------------------------------------------


class Sandbox:
    """One worker process, started on demand and reused; safe to call from several threads (calls
    are serialised) and after a fork (the child starts its own worker)."""

    def __init__(self, memory_mb: int = MEMORY_MB):
        self.memory_mb = memory_mb
        self.isolation: dict = {}  # what the worker reported at start (network, nproc)
        self._proc: subprocess.Popen | None = None
        self._scratch: str | None = None
        self._buffer = b""
        self._owner = os.getpid()
        self._lock = threading.Lock()

    def score(self, dataset: str, config_json: str, answer: str, entry, timeout: float) -> float:
        """`score_answer(answer, entry)` of reasoning-gym's `dataset` (`entry` as made JSON-safe
        by the adapter). Raises TimeoutError past `timeout` and VerifierError if it fails."""
        request = {"dataset": dataset, "config": config_json, "answer": answer, "entry": entry,
                   "timeout": timeout}
        reply = self._call(request, timeout + GRACE)
        if "timeout" in reply:
            raise TimeoutError(f"the verifier took longer than {timeout} s")
        if "error" in reply:
            raise VerifierError(reply["error"])
        return float(reply["reward"])

    def _call(self, request: dict, wait: float) -> dict:
        """Send one request, return its reply. Replies carry the request's random id, so a line
        written by anything else in the worker (a forked child, a stray print to the saved
        descriptor) is skipped rather than taken for the next call's answer."""
        request["id"] = secrets.token_hex(8)
        try:
            line = (json.dumps(request) + "\n").encode()
        except (TypeError, ValueError) as e:
            raise VerifierError(f"the problem is not JSON ({type(e).__name__})") from None
        with self._lock:
            proc = self._worker()
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
                return self._receive(time.monotonic() + wait, request["id"])
            except TimeoutError:
                self._stop()
                raise TimeoutError("the verifier did not answer in time") from None
            except (OSError, EOFError, ValueError) as e:
                self._stop()
                raise VerifierError(f"the verifier process failed ({type(e).__name__})") from None

    def _receive(self, deadline: float, id: str | None) -> dict:
        """The next reply with this `id` (any reply if None); TimeoutError at `deadline`,
        EOFError if the worker died."""
        fd = self._proc.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                reply = json.loads(line)
                if id is None or reply.get("id") == id:
                    return reply
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk

    def _worker(self) -> subprocess.Popen:
        if self._owner != os.getpid():  # forked: the worker's pipes belong to the parent
            self._proc, self._scratch, self._owner = None, None, os.getpid()
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            self._start()
        return self._proc

    def _start(self) -> None:
        self._scratch = tempfile.mkdtemp(prefix="unift-sandbox-")
        root = str(Path(__file__).resolve().parents[2])
        threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        env = {"PATH": os.environ.get("PATH", ""), "HOME": self._scratch, "LANG": "C.UTF-8",
               **threads, "UNIFT_SANDBOX_MEMORY_MB": str(self.memory_mb)}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, root], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self._scratch, env=env,
                start_new_session=True,  # its own process group: no Ctrl-C, one kill for all
            )
            ready = self._receive(time.monotonic() + START_TIMEOUT, None)
        except (TimeoutError, EOFError, OSError, ValueError) as e:
            self._stop()
            raise SandboxError(f"the verifier sandbox did not start ({type(e).__name__})") from e
        if not ready.get("ready"):
            self._stop()
            raise SandboxError(f"the verifier sandbox did not start: {ready.get('error')}")
        self.isolation = ready

    def _stop(self) -> None:
        """Kill the worker's process group (it and anything it started) and drop its scratch
        directory."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()
            self._proc = None
        self._buffer = b""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def close(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                self._stop()


_SANDBOX: Sandbox | None = None


def shared() -> Sandbox:
    """The process's sandbox, closed at exit."""
    global _SANDBOX
    if _SANDBOX is None:
        _SANDBOX = Sandbox()
        atexit.register(_SANDBOX.close)
    return _SANDBOX


# --- the worker's side ------------------------------------------------------------------------


def serve() -> None:
    """The worker's main loop: isolate, import, limit, then answer one request per line."""
    network = _private_network()
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a verifier prints goes to stderr (null), not into the replies
    sys.stdout = sys.stderr
    try:
        import reasoning_gym  # noqa: F401  (imported before the limits: imports map memory)

        from unift.tasks import guard
        from unift.tasks.reasoning_gym_adapter import from_json

        _limit_resources(int(os.environ.get("UNIFT_SANDBOX_MEMORY_MB", MEMORY_MB)))
        nproc = _limit_processes()
        sys.addaudithook(_refuse)
    except Exception as e:  # report instead of dying silently
        _send(reply, {"ready": False, "error": f"{type(e).__name__}: {e}"[:300]})
        return
    _send(reply, {"ready": True, "network": network, "nproc": nproc})
    for line in sys.stdin:
        request = json.loads(line)
        _send(reply, {"id": request.get("id"), **_handle(request, guard, from_json)})


def _handle(request: dict, guard, from_json) -> dict:
    """Score one request. A verifier may catch the alarm's TimeoutError itself and return a
    reward anyway; a call that used up its time is a timeout whatever it returned."""
    timeout = float(request["timeout"])
    _cpu_budget(timeout + GRACE)
    start = time.monotonic()
    try:
        ds = _dataset(request["dataset"], request["config"])
        with guard.time_limit(timeout):
            reward = float(ds.score_answer(request["answer"], from_json(request["entry"])))
    except TimeoutError:
        return {"timeout": True}
    except (Exception, SystemExit) as e:  # a verifier (or what it evaluated) may fail any way
        return {"error": type(e).__name__}
    return {"timeout": True} if time.monotonic() - start >= timeout else {"reward": reward}


@lru_cache(maxsize=64)
def _dataset(name: str, config_json: str):
    import reasoning_gym

    return reasoning_gym.create_dataset(name, seed=0, size=1, **json.loads(config_json))


def _send(stream, obj: dict) -> None:
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


def _private_network() -> str:
    """Move into a new network namespace (only a loopback, down). A user namespace makes this
    possible without root; it needs a single thread, so it comes before the imports.
    Returns which namespaces it got, or 'audit hook only'."""
    import ctypes

    unshare = getattr(ctypes.CDLL(None, use_errno=True), "unshare", None)  # Linux only
    for flags, got in ((CLONE_NEWUSER | CLONE_NEWNET, "user+network"), (CLONE_NEWNET, "network")):
        if unshare is not None and unshare(flags) == 0:
            return f"{got} namespace"
    return "audit hook only"


def _limit_resources(memory_mb: int) -> None:
    """Memory: `memory_mb` above the address space in use now (Linux; elsewhere RLIMIT_AS is
    not enforced); no file writes; no core dumps."""
    with contextlib.suppress(OSError):
        with open("/proc/self/statm") as f:
            in_use = int(f.read().split()[0]) * resource.getpagesize()
        _set_limit(resource.RLIMIT_AS, in_use + memory_mb * 2**20)
    _set_limit(resource.RLIMIT_FSIZE, 0)
    _set_limit(resource.RLIMIT_CORE, 0)


def _limit_processes() -> bool:
    """No new processes or threads (RLIMIT_NPROC 0; root is exempt); False if it was refused."""
    try:
        _set_limit(resource.RLIMIT_NPROC, 0)
    except (OSError, ValueError):
        return False
    return True


def _set_limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def _cpu_budget(seconds: float) -> None:
    """Let the next call use `seconds` of CPU: the soft RLIMIT_CPU kills the worker (SIGXCPU)
    when a verifier loops where SIGALRM cannot interrupt it."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    limit = math.ceil(used.ru_utime + used.ru_stime + seconds) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (limit, hard))


_REFUSED = (
    "socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.kill", "os.killpg", "os.remove", "os.unlink", "os.rename", "os.rmdir",
    "os.mkdir", "os.symlink", "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime",
    "os.chdir", "os.putenv", "os.unsetenv", "shutil.", "ctypes.", "pty.", "webbrowser.",
    "urllib.", "http.", "ftplib.", "smtplib.", "sys.settrace", "sys.setprofile",
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _refuse(event: str, args: tuple) -> None:
    """Audit hook: refuse every event that reaches outside the worker (see the module
    docstring). `resource.setrlimit` stays allowed: the worker raises its CPU limit per call,
    and code that raised it too would still meet the parent's deadline."""
    if event.startswith(_REFUSED) or (event == "open" and _writes(args)):
        raise PermissionError(f"{event} is not allowed in the verifier sandbox")


def _writes(args: tuple) -> bool:
    """Whether the arguments of an 'open' event ask for writing, creating or truncating."""
    _, mode, flags = (tuple(args) + (None, None, None))[:3]
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
