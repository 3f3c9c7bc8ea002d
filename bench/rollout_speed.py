"""Rollout speed: unift's "hf" engine (lean bf16 decoder) vs transformers `generate` on a bf16
copy, side by side in the same run (this machine is shared and noisy: compare ratios).

    .venv/bin/python bench/rollout_speed.py                        # 16x4x64 and GRPO 4x4x64
    .venv/bin/python bench/rollout_speed.py --prompts 16 --samples 4 --new-tokens 256 --no-grpo

Every generation is forced to max_new_tokens (EOS ignored) so both do equal work; new tokens/s
counts the whole call (prefill + decode + sampling). Each setting runs `--repeats` times per
engine, interleaved; the median is reported, with the process CPU time (less sensitive to other
processes taking the cores than wall time).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from unift.models import load
from unift.rollout import make_engine


def countdown_prompts(tokenizer, n: int, seed: int = 0) -> list[list[int]]:
    """Countdown-style chat prompts (~100 tokens), as the RL tasks use."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        nums = [rng.randint(1, 30) for _ in range(3)]
        target = rng.randint(10, 100)
        messages = [
            {"role": "system", "content": "You are a helpful assistant. You first think about the "
             "reasoning process and then give the user the answer."},
            {"role": "user", "content": f"Using the numbers {nums}, create an equation that equals "
             f"{target}. You can use basic arithmetic operations (+, -, *, /) and each number can "
             "only be used once. Show your work in <think> </think> tags, then give the final "
             "equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."},
        ]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4, help="completions per prompt (G)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--grpo", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the GRPO-step setting: 4 prompts x 4 samples x 64 tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--hf", action=argparse.BooleanOptionalAction, default=True,
                        help="run the transformers.generate baseline too")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--grow-chunk", type=int, default=128, help="KV-cache growth step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load(args.model)  # fp32, as the trainer holds it
    model.eval()
    t0 = time.perf_counter()
    ours = make_engine("hf", model, tokenizer, grow_chunk=args.grow_chunk)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours.sync(model)
    t_sync = time.perf_counter() - t0
    engines = {"unift": ours}
    if args.hf:
        engines["hf-generate"] = make_engine("hf", model, tokenizer, impl="generate")
    print(f"model {args.model}  threads {torch.get_num_threads()}  engine build {t_build:.2f}s  "
          f"sync {t_sync:.3f}s")

    settings = [(args.prompts, args.samples, args.new_tokens)]
    if args.grpo:
        settings.append((4, 4, 64))
    for P, G, T in settings:
        prompts = countdown_prompts(tokenizer, P)
        plen = statistics.mean(len(p) for p in prompts)
        for engine in engines.values():  # warm-up (allocator, lazy tables)
            engine.generate(prompts[:1], 1, 4, temperature=args.temperature, seed=0)
        results = {name: [] for name in engines}
        cpu = {name: [] for name in engines}
        stats = []
        for rep in range(args.repeats):
            for name, engine in engines.items():
                c0 = time.process_time()
                r = engine.generate(prompts, G, T, temperature=args.temperature, top_p=args.top_p,
                                    seed=rep, ignore_eos=True)
                cpu[name].append(time.process_time() - c0)
                assert r.num_generated_tokens == P * G * T
                results[name].append(r.seconds)
                if name == "unift":
                    stats.append(dict(ours.stats))
        print(f"\n{P} prompts x {G} samples x {T} new tokens (batch {P * G}, prompt ~{plen:.0f} "
              f"tokens), {args.repeats} repeats, median:")
        for name, secs in results.items():
            s, c = statistics.median(secs), statistics.median(cpu[name])
            print(f"  {name:12s} {s:7.2f} s  {P * G * T / s:7.0f} new tokens/s   cpu {c:6.2f} s "
                  f"({P * G * T / c:5.0f} tokens/cpu-s)   runs: {', '.join(f'{x:.2f}' for x in secs)}")
        st = stats[sorted(range(len(stats)), key=lambda i: results["unift"][i])[len(stats) // 2]]
        print(f"  unift split: prefill {st['prefill_s']:.2f}s, decode {st['decode_s']:.2f}s "
              f"({st['decode_s'] / max(st['steps'], 1) * 1e3:.0f} ms/step)")
        if "hf-generate" in results:
            ratio = statistics.median(results["hf-generate"]) / statistics.median(results["unift"])
            ratio_cpu = statistics.median(cpu["hf-generate"]) / statistics.median(cpu["unift"])
            print(f"  speed-up vs transformers.generate: {ratio:.1f}x wall, {ratio_cpu:.1f}x cpu")


if __name__ == "__main__":
    main()
