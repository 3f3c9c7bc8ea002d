"""The comparison report, built from hand-written run files: every number in the table comes from
the files (including SFT-RFT's two runs joined end to end), and the HTML renders in a real
browser (headless Chromium) with its figures and table."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from unift.report import build_report, caveats, load_comparison, summary_markdown, table_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _evals(step: int, flops: float, id_p: float, ood_p: float, n: int = 64) -> list[dict]:
    common = {"n": n, "reward_mean": 0.5 * id_p, "format_rate": 0.9, "finished_rate": 1.0}
    return [{"step": step, "flops": flops, "label": "easy", **common, "pass@1": id_p},
            {"step": step, "flops": flops, "label": "ood_4numbers", **common, "pass@1": ood_p}]


def _metrics(steps: int, flops_per_step: float, rollouts: bool, hint=lambda t: 0.0) -> list[dict]:
    rows = []
    for t in range(1, steps + 1):
        row = {"step": t, "loss": 1.0 / t, "flops": t * flops_per_step}
        if rollouts:
            row.update(reward_mean=0.1 * t, correct_rate=0.05 * t, rollout_tokens=100, hint_p=hint(t),
                       hint_fraction=hint(t), hint_tokens_mean=10 * hint(t))
        else:
            row.update(reward_mean=0.0, correct_rate=1.0, rollout_tokens=0, hint_p=1.0, hint_fraction=1.0)
        rows.append(row)
    return rows


def make_compare_dir(root: Path) -> Path:
    """A finished comparison written by hand: base, sft, uft and the two runs of sft-rft."""
    manifest = {
        "title": "countdown: sft, uft, sft-rft at 1e+12 FLOPs",
        "task": "countdown", "model": "tiny", "n_params": 3_300_000, "budget": 1e12,
        "settings": {"batch_size": 8, "num_generations": 4, "eval_n": 64, "lr": 2e-5},
        "eval_variants": {"easy": {"variant": "easy"}, "ood_4numbers": {"variant": "easy", "min_numbers": 4}},
        "distributions": {"easy": "id", "ood_4numbers": "ood"},
        "base": "base",
        "arms": [
            {"name": "sft", "runs": [{"name": "sft", "dir": "runs/sft", "preset": "sft", "share": 1.0}]},
            {"name": "uft", "runs": [{"name": "uft", "dir": "runs/uft", "preset": "uft", "share": 1.0}]},
            {"name": "sft-rft", "runs": [
                {"name": "sft-rft_1_sft", "dir": "runs/sft-rft_1_sft", "preset": "sft", "share": 0.5},
                {"name": "sft-rft_2_rft", "dir": "runs/sft-rft_2_rft", "preset": "rft", "share": 0.5}]},
        ],
    }
    d = root / "cmp"
    d.mkdir()
    (d / "compare.json").write_text(json.dumps(manifest))
    _write_jsonl(d / "base" / "evals.jsonl", _evals(0, 0.0, 0.0625, 0.015625))
    _write_jsonl(d / "runs/sft/metrics.jsonl", _metrics(20, 5e10, rollouts=False))
    _write_jsonl(d / "runs/sft/evals.jsonl", _evals(0, 0.0, 0.0625, 0.015625) + _evals(10, 5e11, 0.25, 0.03125)
                 + _evals(20, 1e12, 0.34375, 0.046875))
    _write_jsonl(d / "runs/uft/metrics.jsonl", _metrics(10, 1e11, rollouts=True, hint=lambda t: max(0.0, 1 - t / 6)))
    _write_jsonl(d / "runs/uft/evals.jsonl", _evals(0, 0.0, 0.0625, 0.015625) + _evals(5, 5e11, 0.3, 0.1)
                 + _evals(10, 1e12, 0.4375, 0.125))
    _write_jsonl(d / "runs/sft-rft_1_sft/metrics.jsonl", _metrics(10, 5e10, rollouts=False))
    _write_jsonl(d / "runs/sft-rft_1_sft/evals.jsonl", _evals(0, 0.0, 0.0625, 0.015625)
                 + _evals(10, 5e11, 0.25, 0.03125))
    _write_jsonl(d / "runs/sft-rft_2_rft/metrics.jsonl", _metrics(5, 1e11, rollouts=True))
    _write_jsonl(d / "runs/sft-rft_2_rft/evals.jsonl", _evals(0, 0.0, 0.25, 0.03125) + _evals(5, 5e11, 0.375, 0.0625))
    return d


def test_numbers_come_from_the_files(tmp_path):
    d = make_compare_dir(tmp_path)
    c = load_comparison(d)
    sft_rft = c.arms[2]
    # the RFT run continues SFT's curve: its step 5 at 5e11 FLOPs is step 10 + 5 at 5e11 + 5e11
    last = [e for e in sft_rft.evals if e["label"] == "easy"][-1]
    assert (last["step"], last["flops"]) == (15, 1e12)
    # the base model is one point at 0 FLOPs shared by every arm; the runs' own step-0 rows are dropped
    assert [e["flops"] for e in sft_rft.evals if e["label"] == "easy"] == [0.0, 5e11, 1e12]
    header, cells, _ = table_rows(c)
    rows = {r[0]: r for r in cells}
    # uft's final ID pass@1 = 28/64 = 43.75%, SE = sqrt(.4375 * .5625 / 64) = 6.2%
    assert rows["uft"][header.index("ID 'easy' pass@1 (%)")] == "43.8 ± 6.2"
    # gap: ID minus OOD in points: 43.75 - 12.5 = +31.2
    assert rows["uft"][header.index("ID→OOD gap (points)")] == "+31.2"
    assert rows["sft-rft"][1:3] == ["15", "1e+12"]  # steps and FLOPs of both runs together
    assert rows["base model"][header.index("ID 'easy' pass@1 (%)")] == "6.2 ± 3.0"
    text = " ".join(caveats(c))
    assert "n = 64" in text and "6.2 points" in text  # the SE at p = 0.4375 for the best result
    assert "within two standard errors" in text  # uft 43.75 vs sft-rft 37.5: 6.25 < 2 * 8.6
    assert "| uft |" in summary_markdown(d)


def test_report_writes_html_with_embedded_figures(tmp_path):
    d = make_compare_dir(tmp_path)
    path = build_report(d)
    page = path.read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3
    for data in images:
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    for name in ("accuracy", "reward", "hints"):
        assert (d / f"fig_{name}.png").read_bytes().startswith(PNG_MAGIC)
    assert "43.8 ± 6.2" in page and "What this budget can and cannot show" in page


def _chromium(*args: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./setup.sh test installs it with apt)")
def test_report_renders_in_headless_chromium(tmp_path):
    path = build_report(make_compare_dir(tmp_path))
    dom = _chromium("--dump-dom", path.resolve().as_uri(), tmp_path=tmp_path).stdout
    # the browser parsed the page: figures with decodable PNG data and the results table
    images = re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert len(images) == 3, dom[:500]
    assert all(base64.b64decode(x).startswith(PNG_MAGIC) for x in images)
    table = re.search(r'<table id="results">(.*?)</table>', dom, re.S)
    assert table is not None
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    assert len(rows) == 1 + 4  # header + base model, sft, uft, sft-rft
    assert "43.8 ± 6.2" in table.group(1)
    shot = tmp_path / "report.png"
    _chromium("--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", path.resolve().as_uri(),
              tmp_path=tmp_path)
    assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 50_000
