"""unift.memory: freed memory is kept between steps (glibc) and handed back between runs."""

import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, gc
from unift.memory import retain_freed_memory, release_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

assert retain_freed_memory()
blocks = [bytearray(b"x" * 2**20) for _ in range(300)]  # 300 MB in 1 MB blocks, touched
peak = rss_mb()
del blocks
gc.collect()
kept = rss_mb()
assert release_freed_memory()
released = rss_mb()
print(peak, kept, released)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_kept_then_released():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    peak, kept, released = map(float, out.split())
    assert kept > peak - 30  # no mmap, no trim: the 300 MB stay mapped after they are freed
    assert released < kept - 250  # malloc_trim(0) hands them back


def test_train_hands_freed_memory_back_when_a_run_ends(monkeypatch):
    """Plumbing: train() releases after its run, whether the run returns or raises."""
    from pathlib import Path

    from unift.train import run

    calls = []
    monkeypatch.setattr(run, "release_freed_memory", lambda: calls.append("released"))
    monkeypatch.setattr(run, "_train", lambda config, config_dir, dist: calls.append("ran") or Path("out"))
    config = run.RunConfig(progress=False)
    assert run.train(config) == Path("out") and calls == ["ran", "released"]

    def fails(config, config_dir, dist):
        calls.append("failed")
        raise RuntimeError("out of disk")

    monkeypatch.setattr(run, "_train", fails)
    with pytest.raises(RuntimeError, match="out of disk"):
        run.train(config)
    assert calls == ["ran", "released", "failed", "released"]
