"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

A training step allocates and frees hundreds of MB of activations, gradients and fp32 log-prob
chunks. glibc serves blocks above its mmap threshold with fresh mmap'd pages and returns them to
the kernel when freed, so every step first-touches its memory again: on this VM that costs
about 1 ms per MB. Turning off mmap for allocations and heap trimming lets the next step reuse
the same, already mapped pages (docs/LOG.md, 2026-11-29: a profiled SFT run's system time
20.4 -> 12.2 s, a GRPO step ~2% faster). The process keeps its peak heap size until it exits,
unless `release_freed_memory` hands the free pages back: `unift.train.train` calls it when a run
ends, so a process that trains several runs (`unift compare`, `unift study`, a notebook) does
not hold the largest run's peak (13 GB for a navigation run with retries, docs/LOG.md 2026-12-02
fourth session) through all the runs after it.
"""

from __future__ import annotations

import ctypes
import functools

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@functools.cache
def _glibc():
    """The C library, when it is glibc (its malloc tuning calls exist); else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def retain_freed_memory() -> bool:
    """Configure glibc's malloc once per process; False where it is not glibc (nothing done)."""
    if (libc := _glibc()) is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the kernel (glibc's malloc_trim(0), which trims every
    arena and releases the free pages inside it, whatever the trim threshold); between runs, when
    the next step's first-touch cost does not matter. False where it is not glibc."""
    if (libc := _glibc()) is None:
        return False
    libc.malloc_trim(0)
    return True
