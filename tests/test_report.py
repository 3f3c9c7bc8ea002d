"""The comparison report, built from hand-written run files: every number in the table comes from
the files (including SFT-RFT's two runs joined end to end), and the HTML renders in a real
browser (headless Chromium) with its figures and table."""

import base64
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from unift.report import (
    Chain,
    build_report,
    caveats,
    hint_length_rows,
    load_comparison,
    mean_curve,
    std_error_of,
    summary_markdown,
    table_rows,
)

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
    assert rows["sft-rft"][header.index("FLOPs vs budget")] == "+0.0%"
    assert rows["uft"][header.index("ID truncated (%)")] == "0.0"  # finished_rate 1.0
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
    assert "43.8 ± 6.2" in page and "What this run can and cannot show" in page
    # comparisons from before the protocol choice are FLOP-matched; no samples.jsonl, no section
    assert "<b>Protocol:</b> FLOP-matched: every arm 1e+12 training FLOPs" in page
    assert "<h2>Samples</h2>" not in page and "id='by-k'" not in page


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


# -- protocols, actual steps and FLOPs, seeds, samples, hint lengths ----------------------------


def _arm_dirs(d: Path, name: str, seed_rows: dict[int, tuple[list[dict], list[dict]]]) -> dict:
    """Write one run per seed (runs/NAME-sSEED) -> the manifest's arm entry."""
    seeds = []
    for seed, (metrics, evals) in seed_rows.items():
        run = f"{name}-s{seed}"
        _write_jsonl(d / "runs" / run / "metrics.jsonl", metrics)
        _write_jsonl(d / "runs" / run / "evals.jsonl", evals)
        seeds.append({"seed": seed, "runs": [{"name": run, "dir": f"runs/{run}", "preset": name, "share": 1.0}]})
    return {"name": name, "seeds": seeds}


def make_seeds_dir(root: Path, match: str = "steps") -> Path:
    """sft and uft with 3 seeds each, step-matched (10 steps) or FLOP-matched (1e12)."""
    d = root / f"seeds-{match}"
    d.mkdir()
    _write_jsonl(d / "base" / "evals.jsonl", _evals(0, 0.0, 0.0625, 0.0))
    # uft: final ID pass@1 0.25, 0.375, 0.5 over seeds 0, 1, 2: mean 0.375, sample sd 0.125,
    # SE 0.125 / sqrt(3) = 0.0722; FLOPs 1.00e12, 1.02e12, 1.06e12 (10 steps each)
    uft = _arm_dirs(d, "uft", {
        seed: (_metrics(10, f / 10, rollouts=True), _evals(5, f / 2, p / 2, 0.0) + _evals(10, f, p, 0.0))
        for seed, p, f in [(0, 0.25, 1.0e12), (1, 0.375, 1.02e12), (2, 0.5, 1.06e12)]})
    # sft: the same 0.3125 on every seed (sd 0), 20 steps of 2e10 = 4e11 FLOPs
    sft = _arm_dirs(d, "sft", {seed: (_metrics(20, 2e10, rollouts=False), _evals(20, 4e11, 0.3125, 0.0))
                               for seed in (0, 1, 2)})
    manifest = {
        "title": "seeds", "task": "countdown", "model": "tiny", "match": match, "seeds": [0, 1, 2],
        "steps": 10 if match == "steps" else None, "budget": 1e12 if match == "flops" else None,
        "settings": {"batch_size": 8, "num_generations": 4, "eval_n": 64},
        "eval_variants": {"easy": {}, "ood_4numbers": {}}, "distributions": {"easy": "id", "ood_4numbers": "ood"},
        "base": "base", "arms": [sft, uft],
    }
    (d / "compare.json").write_text(json.dumps(manifest))
    return d


def test_seed_aggregation_mean_spread_and_standard_error(tmp_path):
    c = load_comparison(make_seeds_dir(tmp_path))
    sft, uft = c.arms
    final = uft.final("easy")
    assert final["seeds"] == 3 and final["pass@1"] == pytest.approx(0.375)
    assert final["pass@1_sd"] == pytest.approx(0.125)  # sqrt((0.125^2 + 0 + 0.125^2) / 2)
    assert final["pass@1_se"] == pytest.approx(0.125 / math.sqrt(3))
    assert (final["pass@1_min"], final["pass@1_max"]) == (0.25, 0.5)
    assert std_error_of(final) == pytest.approx(0.0722, abs=1e-4)
    # one seed: the binomial SE over the n = 64 problems, sqrt(.25 * .75 / 64) = 0.0541
    assert std_error_of(uft.chains[0].final("easy")) == pytest.approx(0.0541, abs=1e-4)
    header, cells, _ = table_rows(c)
    rows = {r[0]: r for r in cells}
    assert rows["uft"][header.index("ID 'easy' pass@1 (%)")] == "37.5 ± 7.2 (25.0–50.0)"
    assert rows["sft"][header.index("ID 'easy' pass@1 (%)")] == "31.2 ± 0.0 (31.2–31.2)"
    # the curve is the mean over seeds point by point: base, then step 5 and step 10
    curve = [e for e in uft.evals if e["label"] == "easy"]
    assert [e["step"] for e in curve] == [0, 5, 10]
    assert curve[1]["pass@1"] == pytest.approx(0.1875) and curve[1]["flops"] == pytest.approx(3.08e12 / 3 / 2)
    assert curve[2]["flops"] == pytest.approx((1.0e12 + 1.02e12 + 1.06e12) / 3)
    text = " ".join(caveats(c))
    assert "3 seeds per algorithm" in text and "sqrt(seeds)" in text


def test_report_states_the_protocol_and_actual_steps_and_flops(tmp_path):
    d = make_seeds_dir(tmp_path, "steps")
    header, cells, _ = table_rows(load_comparison(d))
    rows = {r[0]: r for r in cells}
    assert "FLOPs vs budget" not in header  # no budget under match=steps
    assert rows["uft"][1:3] == ["10", "1.03e+12 (1e+12–1.06e+12)"]  # mean and range over seeds
    assert rows["sft"][1:3] == ["20", "4e+11"]
    page = build_report(d).read_text()
    assert "<b>Protocol:</b> step-matched: every arm 10 optimiser steps" in page
    assert "Step-matched: every arm ran 10 optimiser steps of 8 prompts, except sft" in page
    assert "Protocol: step-matched" in summary_markdown(d)
    # both x axes: pass@1 against steps (the protocol's, first) and against FLOPs
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 3

    d = make_seeds_dir(tmp_path, "flops")
    header, cells, _ = table_rows(load_comparison(d))
    rows = {r[0]: r for r in cells}
    assert rows["uft"][header.index("FLOPs vs budget")] == "+2.7%"  # 1.0267e12 / 1e12
    text = " ".join(caveats(load_comparison(d)))
    assert "within 60.0% of the budget" in text and "farthest: sft, -60.0%" in text
    assert "<b>Protocol:</b> FLOP-matched: every arm 1e+12 training FLOPs" in build_report(d).read_text()


def test_report_shows_the_last_steps_samples_escaped(tmp_path):
    d = make_compare_dir(tmp_path)
    rows = [{"step": t, "source": "countdown", "prompt": f"Make 24 <{t}>", "hint": "<think>", "completion": f"c{t}{i}",
             "reward": 1.0, "correct": True, "k": 1, "num_pieces": 5} for t in (9, 10) for i in range(4)]
    _write_jsonl(d / "runs/uft/samples.jsonl", rows)
    page = build_report(d).read_text()
    section = page[page.index("<h2>Samples</h2>"):page.index("<h2>Setup</h2>")]
    assert "<details><summary>uft: step 10, first 3 samples" in section
    assert ["c100", "c101", "c102"] == re.findall(r"c\d+", section.replace("c9", ""))[:3]
    assert "c103" not in section and "c90" not in section
    assert "Make 24 &lt;10&gt;" in section and "&lt;think&gt;" in section and "<think>" not in section
    assert "hint k = 1 of 5 pieces" in section


def test_samples_show_the_verifier_feedback_and_an_unscored_reward(tmp_path):
    d = make_compare_dir(tmp_path)
    rows = [{"step": 10, "source": "countdown", "prompt": "p", "completion": "c", "reward": None, "correct": False,
             "feedback": "used 7 twice <bad>"},
            {"step": 10, "source": "countdown", "prompt": "p", "completion": "c", "reward": float("nan"),
             "correct": False}]
    _write_jsonl(d / "runs/uft/samples.jsonl", rows)
    page = build_report(d).read_text()
    section = page[page.index("<h2>Samples</h2>"):page.index("<h2>Setup</h2>")]
    assert section.count("reward none") == 2  # neither a crash on None nor "nan"
    assert "verifier: used 7 twice &lt;bad&gt;" in section


def test_step_by_step_tasks_show_step_accuracy_and_route_success(tmp_path):
    """Navigation's step mode reports the study's per-step accuracy and the routes finished: both
    get columns; route_success is a binomial over the n routes (one seed), step_accuracy is not."""
    d = make_compare_dir(tmp_path)
    rows = _evals(0, 0.0, 0.0625, 0.015625) + _evals(5, 5e11, 0.3, 0.1) + _evals(10, 1e12, 0.4375, 0.125)
    for r in rows[-2:]:
        r.update(step_accuracy=0.5 if r["label"] == "easy" else 0.125, route_success=0.25)
    _write_jsonl(d / "runs/uft/evals.jsonl", rows)
    header, cells, _ = table_rows(load_comparison(d))
    uft = dict(zip(header, next(c for c in cells if c[0] == "uft"), strict=True))
    assert uft["ID 'easy' step accuracy (%)"] == "50.0" and uft["OOD 'ood_4numbers' step accuracy (%)"] == "12.5"
    assert uft["ID 'easy' route success (%)"] == "25.0 ± 5.4"  # sqrt(0.25 * 0.75 / 64) = 0.054
    sft = dict(zip(header, cells[1], strict=True))
    assert sft["ID 'easy' step accuracy (%)"] == "–" and sft["ID 'easy' pass@1 (%)"].startswith("34.4")
    page = build_report(d).read_text()  # the best pass@1 of each set still marked, in its own column
    assert "<td class=best>43.8 ± 6.2</td>" in page and "<td class=best>12.5 ± 4.1</td>" in page


def test_reward_by_hint_length_is_a_mean_over_steps(tmp_path):
    d = make_compare_dir(tmp_path)
    metrics = _metrics(4, 1e11, rollouts=True)
    for t, row in enumerate(metrics):  # k = 0 every step; k = 5 on the first two only
        row.update({"reward_by_k/0": 0.1 * t, "correct_by_k/0": 0.0, "full_hint_eos_p": 0.25 * t, "nll_tokens": 40})
        if t < 2:
            row.update({"reward_by_k/5": 1.0, "correct_by_k/5": 1.0})
    _write_jsonl(d / "runs/uft/metrics.jsonl", metrics)
    ks, rows = hint_length_rows(load_comparison(d))
    assert ks == [0, 5]
    ((name, reward, correct, eos, nll),) = rows
    assert name == "uft" and reward == pytest.approx({0: 0.15, 5: 1.0}) and correct == {0: 0.0, 5: 1.0}
    assert (eos, nll) == (0.375, 40)  # p(EOS) 0, .25, .5, .75 over the steps
    page = build_report(d).read_text()
    assert "<td>0.15 (0%)</td><td>1.00 (100%)</td><td>38</td><td>40</td>" in page


def test_mean_curve_pairs_the_seeds_final_evaluations(tmp_path):
    # seed 0 evaluated at steps 5 and 10, seed 1 (FLOP-matched, shorter steps) at 4, 8 and 12:
    # the curve pairs 5 with 4, and the finals 10 with 12; seed 1's step 8 has no partner
    base = _evals(0, 0.0, 0.0, 0.0)[:1]
    chains = [Chain(0, [], base + _evals(5, 5e11, 0.25, 0)[:1] + _evals(10, 1e12, 0.5, 0)[:1]),
              Chain(1, [], base + _evals(4, 4e11, 0.125, 0)[:1] + _evals(8, 8e11, 0.25, 0)[:1]
                    + _evals(12, 1.2e12, 0.375, 0)[:1])]
    curve = mean_curve(chains)
    assert [(e["step"], e["flops"], e["pass@1"]) for e in curve] == [(0, 0.0, 0.0), (4.5, 4.5e11, 0.1875),
                                                                    (11, 1.1e12, 0.4375)]
