"""The `unift` command: one subcommand per pipeline stage, each implemented where it lives.

Subcommands are imported lazily so `unift --help` and light commands start fast.

An expected failure (a bad config value, data row, file, directory or checkpoint, a non-finite
run) ends as one line, `unift COMMAND: error: WHERE: WHAT` (the file and line, or the config
key), with exit code 2; `--debug` anywhere on the command line (or UNIFT_DEBUG=1) shows the
traceback instead. Warnings about accepted input are one line too.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings
from dataclasses import dataclass

from unift.memory import retain_freed_memory

# subcommand -> (module, one-line description); each module has `main(argv: list[str]) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("unift.train.run", "train on a mixture of sources from a YAML config"),
    "eval": ("unift.evaluate", "evaluate a model or run on a task's ID and OOD test sets"),
    "compare": ("unift.compare", "compare sft, rft, sft-rft, r3, uft at equal steps or compute, with a report"),
    "study": ("unift.study", "the SFT-vs-RL generalization study (GeneralPoints, Navigation)"),
    "quickstart": ("unift.compare:quickstart", "the quickstart comparison on the embedded model"),
    "data": ("unift.tasks.export", "export a task's problems as SFT or RL records (JSONL)"),
    "theory": ("unift.theory", "simulate RFT vs UFT sample complexity on search trees"),
    "models": ("unift.models", "prepare or inspect models (e.g. de-quantize the embedded one)"),
    "info": ("unift.info", "this CPU, its measured fp32/bf16 rates, the chosen precision, versions"),
    "list": ("unift.catalog", "list objectives, presets, tasks, an objective's params, or config keys"),
}


# what a user's input or environment can cause; anything else is a bug and keeps its traceback
EXPECTED = (ValueError, KeyError, OSError, FloatingPointError, OverflowError)
_debug = False  # set by `main` for the subcommand it runs


def debugging(argv: list[str]) -> tuple[bool, list[str]]:
    """(whether to show tracebacks, argv without `--debug`)."""
    debug = _debug or "--debug" in argv or os.environ.get("UNIFT_DEBUG") == "1"
    return debug, [a for a in argv if a != "--debug"]


def error_line(err: BaseException) -> str:
    """An exception's message as one line (KeyError without its quotes, OSError with its file)."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    elif isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err) or type(err).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


@dataclass
class Outcome:
    code: int = 0


@contextlib.contextmanager
def errors_as_lines(command: str, debug: bool = False):
    """Run a command's body: an EXPECTED exception becomes `unift COMMAND: error: ...` on stderr
    and `outcome.code` 2 (with `debug`, it propagates); a `UniftWarning` is printed as one line."""
    from unift.config import UniftWarning

    outcome = Outcome()
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, UniftWarning):
                print(f"unift {command}: warning: {message}", file=sys.stderr)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        try:
            yield outcome
        except BrokenPipeError:  # `unift list config | head`: the reader left; no error line
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout at exit
            outcome.code = 1
        except EXPECTED as err:
            if debug:
                raise
            print(f"unift {command}: error: {error_line(err)}", file=sys.stderr)
            outcome.code = 2


def _usage() -> str:
    lines = ["usage: unift [--version] [--debug] COMMAND [args...]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "--debug: show the traceback of an error (otherwise one line, exit code 2)",
              "`unift COMMAND --help` shows a command's options and their defaults"]
    return "\n".join(lines)


def version() -> str:
    """The installed package's version (its metadata), else the source tree's `unift.__version__`."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("unift")
    except PackageNotFoundError:
        from unift import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    global _debug
    argv = sys.argv[1:] if argv is None else argv
    debug, argv = debugging(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv and argv[0] in ("-V", "--version"):
        print(f"unift {version()}")
        return 0
    if not argv:
        print(_usage(), file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unift: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    retain_freed_memory()
    module_name, _, function = COMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    _debug = debug
    try:
        with errors_as_lines(name, debug) as outcome:
            outcome.code = int(getattr(module, function or "main")(rest) or 0)
    finally:
        _debug = False
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
