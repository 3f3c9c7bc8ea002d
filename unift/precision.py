"""`precision: auto`: use bf16 only where it measured faster on this machine.

Whether bf16 pays depends on the CPU, not on the code. With native bf16 products (Intel AMX,
AMD Zen 4's AVX512-BF16) a bf16 product runs 2-4x faster than fp32; on an AVX2-only CPU (many
EPYCs and Ryzens, older Intel, most laptops) torch emulates it and bf16 runs 5-17x *slower*
(docs/LOG.md, 2026-12-01). So unift measures instead of assuming:

- `measure(hidden, intermediate)` times, at the model's shapes and in about a second,
  1. training: an MLP block's forward + backward on 256 rows, fp32 against bf16 autocast
     (what `precision: bf16` runs), and
  2. decoding: the same weights' product with 16 rows, fp32 against bf16 weights, both in the
     rollout decoder's layout (`unift.rollout.decoder.linear`, oneDNN-prepacked where it can);
- `rates()` caches the result per CPU model, ISA, torch version, thread count and shape in
  `<unift cache>/precision.json` (a new torch version measures again);
- `choose("auto", ...)` picks "bf16" (fp32 weights, bf16 autocast) for training and bfloat16
  for the rollout engine only where each measured faster, "fp32"/float32 otherwise. An explicit
  precision is honoured, with a one-line warning when it measured over 2x slower than the other.

`bf16-master` (bf16 weights, fp32 masters) is never chosen automatically: it learns less at
fine-tuning learning rates (docs/LOG.md, 2026-11-29).

Off the CPU nothing is measured (`choose(..., device=...)`): on a CUDA GPU `auto` is bf16
(autocast, bf16 rollouts) where `torch.cuda.is_bf16_supported()` (Ampere and later: bf16 runs
on the tensor cores at fp16's rate and needs no loss scaling), fp32 elsewhere; on Apple's MPS it
is fp32 (bf16 there depends on the macOS and torch versions). fp16 is never used: it would need
a loss scaler, which unift does not have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

PRECISIONS = {  # `RunConfig.precision` -> what it means
    "auto": "bf16 autocast where it measured faster on this CPU (a CUDA GPU: where supported), else fp32",
    "bf16": "fp32 weights, bf16 autocast",
    "bf16-master": "bf16 weights, fp32 master weights",
    "fp32": "fp32",
}
SLOWER_WARNING = 2.0  # warn when an explicit precision measured this many times slower
TRAIN_ROWS, DECODE_ROWS = 256, 16
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


@dataclass(frozen=True)
class Rates:
    """Measured GFLOP/s of this machine at one model's shapes (see the module docstring)."""

    train_fp32: float
    """MLP forward + backward, fp32."""
    train_bf16: float
    """The same under bf16 autocast (fp32 weights), as `precision: bf16` trains."""
    decode_fp32: float
    """16-row products on fp32 weights, as the rollout decoder runs them."""
    decode_bf16: float
    """The same on bf16 weights."""
    seconds: float = 0.0
    """How long the measurement took."""

    @property
    def train_bf16_faster(self) -> bool:
        return self.train_bf16 > self.train_fp32

    @property
    def decode_bf16_faster(self) -> bool:
        return self.decode_bf16 > self.decode_fp32


@dataclass(frozen=True)
class Choice:
    """What a run uses: its training precision and its rollout/evaluation engine's dtype."""

    train: str
    """bf16 | bf16-master | fp32 (never auto)."""
    rollout: str
    """bfloat16 | float32."""
    reason: str
    """One line saying why."""


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers, which tell apart CPUs that a VM
    names alike ("AMD EPYC" is Zen 2 to Zen 5); platform.processor() where /proc is missing."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']} model {info['model']})"
    return name


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2")


def cpu_flags() -> list[str]:
    """The CPU's flags that decide bf16 speed (native bf16: avx512_bf16, amx_bf16), from
    /proc/cpuinfo; [] where unreadable."""
    present = set(_cpuinfo().get("flags", "").split())
    return [f for f in BF16_FLAGS if f in present]


def capability() -> str:
    """torch's CPU kernel level (AVX2, AVX512, ...), after any ATEN_CPU_CAPABILITY override."""
    return torch.backends.cpu.get_cpu_capability()


def isa_limits() -> dict[str, str]:
    """The environment variables limiting torch/oneDNN/MKL to a lower ISA that are set here."""
    return {k: os.environ[k] for k in ISA_ENV if os.environ.get(k)}


def machine_key(hidden: int, intermediate: int) -> str:
    """What a measurement depends on: CPU, ISA limits, torch version, threads, shapes."""
    isa = ",".join(f"{k}={v}" for k, v in isa_limits().items())
    return (f"{cpu_model()} [{' '.join(cpu_flags())}] | {capability()}{' | ' + isa if isa else ''}"
            f" | torch {torch.__version__}"
            f" | threads {torch.get_num_threads()} | {hidden}x{intermediate}")


def _time(fn, seconds: float) -> float:
    """Seconds per call of fn, after one warm-up call, over about `seconds`."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls


def measure(hidden: int, intermediate: int, seconds: float = 0.15) -> Rates:
    """Time the training and decoding products at these shapes (about 8 x `seconds`)."""
    from unift.rollout.decoder import can_prepack, linear, prepack

    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    w1 = (torch.randn(intermediate, hidden, generator=gen) * 0.02).requires_grad_()
    w2 = (torch.randn(hidden, intermediate, generator=gen) * 0.02).requires_grad_()
    x = torch.randn(TRAIN_ROWS, hidden, generator=gen).requires_grad_()  # as a layer's input

    def train_step(autocast: bool):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                y = F.linear(F.silu(F.linear(x, w1)), w2)
            y.float().square().mean().backward()
            x.grad = w1.grad = w2.grad = None
        return run

    train_flops = 3 * 2 * 2 * TRAIN_ROWS * hidden * intermediate  # forward + 2x backward
    rates = {}
    for name, autocast in (("train_fp32", False), ("train_bf16", True)):
        rates[name] = train_flops / _time(train_step(autocast), seconds) / 1e9
    xd = torch.randn(DECODE_ROWS, hidden, generator=gen)
    with torch.no_grad():
        for name, dtype in (("decode_fp32", torch.float32), ("decode_bf16", torch.bfloat16)):
            a, b, xs = w1.detach().to(dtype), w2.detach().to(dtype), xd.to(dtype)
            pa, pb = (prepack(a), prepack(b)) if can_prepack(dtype) else (None, None)
            seconds_per = _time(lambda a=a, b=b, pa=pa, pb=pb, xs=xs:
                                linear(F.silu(linear(xs, a, pa)), b, pb), seconds)
            rates[name] = 2 * 2 * DECODE_ROWS * hidden * intermediate / seconds_per / 1e9
    return Rates(**rates, seconds=time.perf_counter() - start)


def cache_file() -> Path:
    from unift.models import cache_dir

    return cache_dir() / "precision.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or unreadable: measure again


def rates(hidden: int, intermediate: int, *, refresh: bool = False) -> Rates:
    """This machine's rates at these shapes: from the cache, or measured once and cached.
    Entries of other torch versions are dropped when the cache is written."""
    key, path = machine_key(hidden, intermediate), cache_file()
    cached = _read_cache(path)
    if not refresh and isinstance(cached.get(key), dict):
        try:
            return Rates(**cached[key])
        except TypeError:
            pass  # written by another unift version: measure again
    measured = measure(hidden, intermediate)
    version = f"| torch {torch.__version__} |"
    kept = {k: v for k, v in cached.items() if version in k}
    kept[key] = dataclasses.asdict(measured)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(kept, indent=1))
        os.replace(tmp, path)
    except OSError as err:  # a read-only cache costs a second per process, nothing else
        print(f"unift: could not cache the precision measurement in {path}: {err}", file=sys.stderr)
    return measured


def model_shapes(model_config) -> tuple[int, int]:
    """(hidden, intermediate) of a transformers config (the MLP's shapes)."""
    hidden = int(model_config.hidden_size)
    return hidden, int(getattr(model_config, "intermediate_size", None) or 4 * hidden)


def _warn(message: str) -> None:
    print(f"unift: warning: {message}", file=sys.stderr)


def choose(precision: str, hidden: int, intermediate: int, *, warn=_warn, device="cpu") -> Choice:
    """Resolve a `precision` setting at these model shapes for training on `device` (see the
    module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if kind != "cpu":
        return _choose_unmeasured(precision, kind)
    r = rates(hidden, intermediate)
    measured = (f"training fp32 {r.train_fp32:.0f} vs bf16 {r.train_bf16:.0f} GFLOP/s, decoding "
                f"fp32 {r.decode_fp32:.0f} vs bf16 {r.decode_bf16:.0f}")
    if precision == "auto":
        train = "bf16" if r.train_bf16_faster else "fp32"
        rollout = "bfloat16" if r.decode_bf16_faster else "float32"
        return Choice(train, rollout, f"precision auto -> {train}, rollouts {rollout} ({measured})")
    bf16 = precision.startswith("bf16")
    slow, fast = (r.train_bf16, r.train_fp32) if bf16 else (r.train_fp32, r.train_bf16)
    if fast > SLOWER_WARNING * slow:
        warn(f"precision {precision} measured {fast / slow:.1f}x slower than "
             f"{'fp32' if bf16 else 'bf16'} on this CPU ({measured}); `precision: auto` picks the faster")
    return Choice(precision, "bfloat16" if bf16 else "float32", f"precision {precision} ({measured})")


def _choose_unmeasured(precision: str, kind: str) -> Choice:
    """A GPU's choice, from what the device supports (see the module docstring)."""
    bf16_ok = kind == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        train = "bf16" if bf16_ok else "fp32"
        why = "bf16 supported" if bf16_ok else "no bf16 support" if kind == "cuda" else "fp32 on MPS"
        return Choice(train, "bfloat16" if bf16_ok else "float32", f"precision auto -> {train} on {kind} ({why})")
    bf16 = precision.startswith("bf16")
    if bf16 and kind == "cuda" and not bf16_ok:
        raise ValueError(f"precision: {precision} needs bf16, which this GPU does not support "
                         "(torch.cuda.is_bf16_supported() is False); use fp32 or auto")
    return Choice(precision, "bfloat16" if bf16 else "float32", f"precision {precision} on {kind}")


def rollout_dtype(hidden: int, intermediate: int, device="cpu") -> str:
    """The rollout engine's dtype for `dtype="auto"`: bfloat16 where it decodes faster (a GPU:
    where it supports bf16)."""
    return choose("auto", hidden, intermediate, device=device).rollout
