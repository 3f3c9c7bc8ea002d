"""Matrix-product peak of this CPU: GFLOP/s of a 2048x2048 @ 2048x2048 product in bf16 and fp32.

Timed as `F.linear`, the call a model's layers make (oneDNN for bf16). On an imitated AVX2-only
CPU (ATEN_CPU_CAPABILITY=avx2 ...) a bf16 `a @ b` falls back to a single-threaded kernel that
took minutes per product (2026-12-01); `F.linear` ran at 35 GFLOP/s there."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F


def matmul_gflops(n: int = 2048, reps: int = 8) -> dict[str, float]:
    """Median GFLOP/s (2 n^3 per product) over `reps` products after two untimed ones."""
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(2):
            F.linear(a, b)
        rates = []
        for _ in range(reps):
            start = time.perf_counter()
            F.linear(a, b)
            rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
        out[name] = statistics.median(rates)
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(matmul_gflops())
