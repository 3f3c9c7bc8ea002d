"""`unift info`: what this machine is and what unift chose for it; paste it into bug reports.

    unift info                      # the embedded model's shapes (576 x 1536)
    unift info --shapes 896x4864    # another model's hidden x intermediate size
    unift info --refresh            # measure again instead of reading the cache
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform

import torch

from unift import precision
from unift.models import cache_dir

EMBEDDED_SHAPES = (576, 1536)  # SmolLM2-135M-Instruct: hidden, MLP intermediate


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _shapes(text: str) -> tuple[int, int]:
    try:
        hidden, intermediate = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HIDDENxINTERMEDIATE, e.g. 576x1536, not {text!r}") from None
    return hidden, intermediate


def report(hidden: int, intermediate: int, refresh: bool = False) -> list[tuple[str, str]]:
    """(label, value) lines: the CPU, the measured rates, the choice, versions, paths."""
    r = precision.rates(hidden, intermediate, refresh=refresh)
    choice = precision.choose("auto", hidden, intermediate)  # from the entry just cached
    overrides = [f"{k}={v}" for k, v in precision.isa_limits().items()]
    return [
        ("cpu", f"{precision.cpu_model()} (flags: {' '.join(precision.cpu_flags()) or 'unknown'})"),
        ("capability", precision.capability() + (f" (limited by {' '.join(overrides)})" if overrides else "")),
        ("threads", f"{torch.get_num_threads()} of {os.cpu_count()} cores"),
        ("shapes", f"hidden {hidden} x intermediate {intermediate}"),
        ("training", f"fp32 {r.train_fp32:.1f} GFLOP/s, bf16 autocast {r.train_bf16:.1f} GFLOP/s"),
        ("decoding", f"fp32 {r.decode_fp32:.1f} GFLOP/s, bf16 {r.decode_bf16:.1f} GFLOP/s"),
        ("precision auto", f"training {choice.train}, rollouts and evaluation {choice.rollout}"),
        ("versions", f"unift {_version('unift')}, torch {torch.__version__}, transformers "
                     f"{_version('transformers')}, accelerate {_version('accelerate')}, peft {_version('peft')}, "
                     f"python {platform.python_version()}"),
        ("cache", f"{cache_dir()} (measurements: {precision.cache_file().name})"),
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="unift info", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=_shapes, default=EMBEDDED_SHAPES, metavar="HxI",
                        help="model hidden x MLP intermediate size to measure at (default 576x1536)")
    parser.add_argument("--refresh", action="store_true", help="measure again instead of using the cache")
    args = parser.parse_args(argv)
    for label, value in report(*args.shapes, refresh=args.refresh):
        print(f"{label + ':':<16}{value}")
    return 0
