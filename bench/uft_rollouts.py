"""Rollouts as a UFT training step makes them: easy Countdown prompts, each opened by a hint of a
different length, G samples each, stopping at EOS (not forced to a length), per engine dtype.

    .venv/bin/python bench/uft_rollouts.py --threads 1                 # float32 and bfloat16
    .venv/bin/python bench/uft_rollouts.py --dtypes float32 --profile  # where the time goes

Prints tokens/s, the prefill / decode split and, with --profile, the top operators of one
generate call. Samples are seeded, so every dtype decodes the same prompts (their lengths differ as
the sampled tokens do).
"""

from __future__ import annotations

import argparse
import random

import torch

from unift import precision, tasks
from unift.data.tokenize import render_prompt
from unift.models import load
from unift.rollout import make_engine
from unift.rollout.decoder import prompt_layout


def hinted_prompts(tokenizer, n: int, seed: int = 0) -> list[list[int]]:
    """n easy-Countdown chat prompts, each followed by a prefix of its reference solution of a
    uniformly drawn number of pieces (0 to all), as UFT's hint schedule produces them."""
    task = tasks.get("countdown", variant="easy")
    rng = random.Random(seed)
    out = []
    for problem in task.problems(n, seed=seed, split="train"):
        pieces = task.solution_steps(problem)
        hint = "".join(pieces[: rng.randint(0, len(pieces))])
        ids = tokenizer(render_prompt(tokenizer, task.prompt(problem)), add_special_tokens=False)["input_ids"]
        out.append(ids + (tokenizer(hint, add_special_tokens=False)["input_ids"] if hint else []))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--profile", action="store_true", help="profile one generate call per dtype")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"cpu {precision.cpu_model()} [{' '.join(precision.cpu_flags())}], capability "
          f"{precision.capability()}, threads {torch.get_num_threads()}")
    model, tokenizer = load("smollm2-135m-instruct")
    prompts = hinted_prompts(tokenizer, args.prompts)
    ids, valid, shared = prompt_layout(prompts)
    print(f"{len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"{shared} shared; prefill computes {shared + len(prompts) * (ids.shape[1] - shared)} positions")
    for dtype in args.dtypes.split(","):
        engine = make_engine("hf", model, tokenizer, dtype=dtype)
        engine.generate(prompts[:1], 1, 4, seed=0)  # warm-up
        for rep in range(args.repeats):
            out = engine.generate(prompts, args.samples, args.max_new_tokens, 1.0, 1.0, [], seed=rep)
            st = engine.stats
            print(f"{dtype:9s} repeat {rep + 1}: {out.num_generated_tokens} tokens in {out.seconds:.2f} s = "
                  f"{out.tokens_per_second:.1f} tokens/s (prefill {st['prefill_s']:.2f} s, decode "
                  f"{st['decode_s']:.2f} s over {st['steps']} steps)", flush=True)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                engine.generate(prompts, args.samples, args.max_new_tokens, 1.0, 1.0, [], seed=0)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
