"""The `unift` command: one subcommand per pipeline stage, each implemented where it lives.

Subcommands are imported lazily so `unift --help` and light commands start fast.
"""

from __future__ import annotations

import importlib
import sys

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
}


def _usage() -> str:
    lines = ["usage: unift COMMAND [args...]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unift: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    retain_freed_memory()
    module_name, _, function = COMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    return int(getattr(module, function or "main")(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
