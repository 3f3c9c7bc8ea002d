"""Rollout speed: unift's "hf" engine (lean decoder, dtype auto) vs transformers `generate` on a
copy in the same dtype, side by side in the same run (this machine is shared and noisy: compare
ratios; the engines' order reverses every other repeat).

    .venv/bin/python bench/rollout_speed.py                     # 16x4x64 and the GRPO 4x4x64
    .venv/bin/python bench/rollout_speed.py --threads 1 --ablations --no-hf --no-grpo
    .venv/bin/python bench/rollout_speed.py --prompts 16 --samples 4 --new-tokens 256 --no-grpo

Every generation is forced to max_new_tokens (EOS ignored) so all do equal work; new tokens/s
counts the whole call (prefill + decode + sampling). Each setting runs `--repeats` times per
engine, interleaved; the median is reported, with the process CPU time (less sensitive than wall
time to other processes taking the cores).

--ablations adds variants of the engine, one lever changed each:
    fp32, bf16      weights and KV cache in that dtype (the default, auto, is whichever measured
                    faster on this CPU: `unift.precision`)
    no-sharing      each sample prefilled and attended as its own prompt (prompt repeated G times,
                    num_samples=1): no shared prefill, no shared prompt keys/values
    grow-16         KV cache grown 16 columns at a time instead of 128 (more copies, less waste)
    no-prepack      plain row-major weights instead of oneDNN-prepacked ones
    no-prefix       the prefix all prompts share (system prompt, instructions) encoded with each
                    prompt instead of once
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from unift import precision
from unift.models import load
from unift.rollout import make_engine


def countdown_prompts(tokenizer, n: int, seed: int = 0) -> list[list[int]]:
    """Countdown-style chat prompts (~120 tokens), as the RL tasks use."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        nums = [rng.randint(1, 30) for _ in range(3)]
        target = rng.randint(10, 100)
        messages = [
            {
                "role": "system",
                "content": "You are a helpful assistant. You first think about the "
                "reasoning process and then give the user the answer.",
            },
            {
                "role": "user",
                "content": f"Using the numbers {nums}, create an equation that equals "
                f"{target}. You can use basic arithmetic operations (+, -, *, /) and each number can "
                "only be used once. Show your work in <think> </think> tags, then give the final "
                "equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.",
            },
        ]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return prompts


def build_runners(model, tokenizer, args):
    """name -> (engine, run(prompts, G, T, seed) -> Rollouts)."""
    common = dict(temperature=args.temperature, top_p=args.top_p, ignore_eos=True)

    def plain(engine):
        return lambda prompts, G, T, seed: engine.generate(prompts, G, T, seed=seed, **common)

    def unshared(engine):  # every sample its own prompt: nothing shared between the G samples
        return lambda prompts, G, T, seed: engine.generate(
            [p for p in prompts for _ in range(G)], 1, T, seed=seed, **common
        )

    ours = make_engine("hf", model, tokenizer, grow_chunk=args.grow_chunk)
    runners = {"unift": (ours, plain(ours))}
    if args.ablations:
        fp32 = make_engine("hf", model, tokenizer, dtype="float32", grow_chunk=args.grow_chunk)
        bf16 = make_engine("hf", model, tokenizer, dtype="bfloat16", grow_chunk=args.grow_chunk)
        grow16 = make_engine("hf", model, tokenizer, grow_chunk=16)
        unpacked = make_engine("hf", model, tokenizer, grow_chunk=args.grow_chunk, prepack=False)
        unshared_prefix = make_engine("hf", model, tokenizer, grow_chunk=args.grow_chunk, share_prefix=False)
        runners.update(
            {
                "fp32": (fp32, plain(fp32)),
                "bf16": (bf16, plain(bf16)),
                "no-sharing": (ours, unshared(ours)),
                "grow-16": (grow16, plain(grow16)),
                "no-prepack": (unpacked, plain(unpacked)),
                "no-prefix": (unshared_prefix, plain(unshared_prefix)),
            }
        )
    if args.hf:
        hf = make_engine("hf", model, tokenizer, impl="generate")
        runners["hf-generate"] = (hf, plain(hf))
    return runners


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4, help="completions per prompt (G)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument(
        "--grpo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the GRPO-step setting: 4 prompts x 4 samples x 64 tokens",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument(
        "--hf",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the transformers.generate baseline too",
    )
    parser.add_argument(
        "--ablations", action="store_true", help="add one-lever variants (see above)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--grow-chunk", type=int, default=128, help="KV-cache growth step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load(args.model)  # fp32, as the trainer holds it
    model.eval()
    t0 = time.perf_counter()
    runners = build_runners(model, tokenizer, args)
    t_build = time.perf_counter() - t0
    ours = runners["unift"][0]
    t0 = time.perf_counter()
    ours.sync(model)
    t_sync = time.perf_counter() - t0
    print(f"cpu {precision.cpu_model()} [{' '.join(precision.cpu_flags())}], torch capability "
          f"{precision.capability()}")
    print(
        f"model {args.model}  threads {torch.get_num_threads()}  engines built in {t_build:.2f}s  "
        f"sync (fp32 -> {ours.dtype} copy) {t_sync:.3f}s"
    )

    settings = [(args.prompts, args.samples, args.new_tokens)]
    if args.grpo:
        settings.append((4, 4, 64))
    for P, G, T in settings:
        prompts = countdown_prompts(tokenizer, P)
        plen = statistics.mean(len(p) for p in prompts)
        for _, run in runners.values():  # warm-up (allocator, rope tables)
            run(prompts[:1], 1, 4, 0)
        wall = {name: [] for name in runners}
        cpu = {name: [] for name in runners}
        stats = {name: [] for name in runners}
        for rep in range(args.repeats):
            order = list(runners.items())
            for name, (engine, run) in order if rep % 2 == 0 else order[::-1]:  # alternate who goes first
                c0 = time.process_time()
                r = run(prompts, G, T, rep)
                cpu[name].append(time.process_time() - c0)
                wall[name].append(r.seconds)
                assert r.num_generated_tokens == P * G * T
                stats[name].append(dict(getattr(engine, "stats", {})))
        print(
            f"\n{P} prompts x {G} samples x {T} new tokens (batch {P * G}, prompt ~{plen:.0f} "
            f"tokens), {args.repeats} repeats, median:"
        )
        for name in runners:
            s, c = statistics.median(wall[name]), statistics.median(cpu[name])
            print(
                f"  {name:12s} {s:7.2f} s {P * G * T / s:6.0f} new tokens/s   cpu {c:6.2f} s "
                f"({P * G * T / c:5.0f} tokens/cpu-s)   runs: {', '.join(f'{x:.2f}' for x in wall[name])}"
            )
        for name in runners:
            median_run = sorted(range(args.repeats), key=lambda i: wall[name][i])[args.repeats // 2]
            st = stats[name][median_run]
            if "prefill_s" in st and name != "hf-generate":
                print(
                    f"  {name} split: prefill {st['prefill_s']:.2f}s, decode {st['decode_s']:.2f}s "
                    f"({st['decode_s'] / max(st['steps'], 1) * 1e3:.0f} ms/step)"
                )
        if "hf-generate" in wall:
            ratio = statistics.median(wall["hf-generate"]) / statistics.median(wall["unift"])
            ratio_cpu = statistics.median(cpu["hf-generate"]) / statistics.median(cpu["unift"])
            print(f"  speed-up vs transformers.generate: {ratio:.1f}x wall, {ratio_cpu:.1f}x cpu")


if __name__ == "__main__":
    main()
