"""What the weight matrices alone cost: the floor under rollout and training speed on this CPU.

    .venv/bin/python bench/linear_floor.py            # SmolLM2-135M shapes, 2 threads, bf16
    .venv/bin/python bench/linear_floor.py --dtype fp32 --rows 16,64

Times the products one token position goes through in SmolLM2-135M-Instruct (30 layers of
q/k/v (960 x 576), o (576 x 576), gate/up (3072 x 576), down (576 x 1536), then the LM head
(49152 x 576)) on random weights (`--dtype` bf16 or fp32), for M rows at once, with the
decoder's kernels (`unift.rollout.decoder.linear`: oneDNN-prepacked and plain `F.linear`), next
to the 2048^2 matmul peak of that dtype (`bench/peak.py`). Nothing else: no attention, norms or
sampling.

M = 16 and 64 are decode steps of GRPO's 4 x 4 and the rollout target's batch of 64: the
printed tokens/s is the most a decoder could reach at that batch if everything but these
products were free. Large M is training and prefill.
"""

from __future__ import annotations

import argparse
import statistics
import time

import peak
import torch

from unift import precision
from unift.rollout.decoder import linear, prepack

D, INTER, VOCAB, LAYERS = 576, 1536, 49152, 30
SHAPES = [(960, D), (D, D), (2 * INTER, D), (D, INTER)] * LAYERS + [(VOCAB, D)]


def time_chain(weights, packed, m: int, repeats: int) -> float:
    """Median seconds for one pass of M rows through every product."""
    inputs = {k: torch.randn(m, k, dtype=weights[0].dtype) for k in (D, INTER)}

    def chain():
        for w, p in zip(weights, packed, strict=True):
            linear(inputs[w.shape[1]], w, p)

    chain()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        chain()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="16,64,256,2048")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    weights = [torch.randn(o, i, dtype=dtype) * 0.02 for o, i in SHAPES]
    flops_per_row = sum(2 * o * i for o, i in SHAPES)
    before = peak.matmul_gflops()[args.dtype]
    print(f"cpu {precision.cpu_model()}, capability {precision.capability()}; {args.dtype} 2048^2 matmul "
          f"peak: {before:.0f} GFLOP/s; {flops_per_row / 1e9:.3f} GFLOP per row")
    for m in (int(r) for r in args.rows.split(",")):
        repeats = args.repeats if m <= 256 else 2
        cells = []
        for name, packed in (("prepacked", [prepack(w) for w in weights]), ("plain", [None] * len(weights))):
            seconds = time_chain(weights, packed, m, repeats)
            cells.append(f"{name} {seconds * 1e3:7.1f} ms {flops_per_row * m / seconds / 1e9:4.0f} GFLOP/s "
                         f"-> {m / seconds:6.0f} rows/s")
        print(f"M={m:<5} " + "   ".join(cells))
    print(f"{args.dtype} peak after: {peak.matmul_gflops()[args.dtype]:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
