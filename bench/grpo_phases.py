"""Where a GRPO step's training time goes, and what packing with shared prompts buys.

    .venv/bin/python bench/grpo_phases.py               # the GRPO benchmark's batch, 5 repeats

Builds one batch exactly as the GRPO benchmark does (`bench/_grpo_worker.py`: 4 Countdown
prompts x 4 rollouts x 64 new tokens from SmolLM2-135M-Instruct), then times, on that same
batch, the reference pass (no grad), the policy forward and its backward, for

    packed   `token_logps` as the trainer runs it: real tokens only, each prompt once per group
    padded   `token_logps(pack=False)`: the padded batch with its attention mask

interleaved (packed, padded, padded, packed, ...), at `--precision` (default auto, as `unift
train`), torch's default threads. The first repeat of each warms the allocator and is dropped;
prints min and median seconds.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import _grpo_worker as worker  # noqa: E402

from unift.memory import retain_freed_memory  # noqa: E402
from unift.models import ReferencePolicy  # noqa: E402
from unift.precision import PRECISIONS  # noqa: E402
from unift.train.logprobs import token_logps  # noqa: E402
from unift.train.step import autocast, encode  # noqa: E402


def grpo_batch(precision: str):
    policy, tokenizer, source, config = worker.unift_setup(precision, worker.PROMPTS)
    _, problems = worker.problems(worker.PROMPTS)
    return policy, encode(source, problems, tokenizer, config.max_length, policy=policy).batch, config.precision


def time_phases(policy, reference, batch, pack: bool, precision: str) -> dict[str, float]:
    start = time.perf_counter()
    with torch.no_grad(), reference.model() as ref_model, autocast(precision):
        token_logps(ref_model, batch, pack=pack)
    ref = time.perf_counter()
    with autocast(precision):
        out = token_logps(policy, batch, pack=pack)
    fwd = time.perf_counter()
    (out.logps * out.mask).sum().backward()
    policy.zero_grad(set_to_none=True)
    return {"ref": ref - start, "forward": fwd - ref, "backward": time.perf_counter() - fwd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    args = parser.parse_args()
    retain_freed_memory()
    policy, batch, args.precision = grpo_batch(args.precision)  # auto resolved
    reference = ReferencePolicy(policy)
    print(f"batch {tuple(batch.input_ids.shape)}: {batch.num_tokens} real tokens, "
          f"{int(batch.loss_mask.sum())} completion tokens; threads {torch.get_num_threads()}")
    times: dict[bool, list[dict]] = {True: [], False: []}
    for repeat in range(args.repeats + 1):
        for pack in ((True, False) if repeat % 2 == 0 else (False, True)):
            times[pack].append(time_phases(policy, reference, batch, pack, args.precision))
    for pack, name in ((True, "packed"), (False, "padded")):
        rows = times[pack][1:]
        cells = [f"{k} min {min(r[k] for r in rows):.2f} med {statistics.median(r[k] for r in rows):.2f}"
                 for k in rows[0]]
        total = statistics.median(sum(r.values()) for r in rows)
        print(f"{name:<7} " + "  ".join(cells) + f"  total med {total:.2f} s")


if __name__ == "__main__":
    main()
