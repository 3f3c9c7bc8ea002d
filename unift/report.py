"""The report of a comparison directory (`unift compare`, `unift study`): one self-contained
HTML file with the figures embedded as base64 PNGs (also saved beside it as PNG files).

    build_report(Path("runs/compare-countdown"))   # -> runs/compare-countdown/report.html

Every number is read from the files the runs wrote (compare.json, base/evals.jsonl and each
run's metrics.jsonl, evals.jsonl and samples.jsonl); nothing is recomputed except means over
seeds, standard errors and differences of those numbers. An algorithm of several runs (SFT-RFT)
is drawn as one curve: each later run's steps and FLOPs continue from the last row of the run
before it. With several seeds an arm is one such chain per seed, averaged (`mean_row`).

The page states the protocol (step- or FLOP-matched). Figures: held-out pass@1 against training
FLOPs and against optimiser steps per test set (and success@V with verification iterations);
training reward (rollouts) and held-out reward against FLOPs; the hint schedule (hint_p and
hint_fraction against step). Then the final table with each arm's actual steps and FLOPs, the
ID -> OOD gap and the truncation rate, a paragraph on what the test-set size, the seeds and the
budget can and cannot show, the rollouts' reward by hint length and a few training samples when
the runs logged them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from unift.evaluate import std_error

COLORS = {
    "base": "#555555",
    "sft": "#1f77b4",
    "rft": "#ff7f0e",
    "sft-rft": "#9467bd",
    "r3": "#2ca02c",
    "uft": "#d62728",
    "stage": "#8c564b",
    "rft-cosine": "#e377c2",
}
PALETTE = ["#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


# -- reading ------------------------------------------------------------------------------------


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Run:
    """One training run of an arm, with its steps and FLOPs offset by the runs before it."""

    name: str
    preset: str
    dir: Path
    metrics: list[dict]
    evals: list[dict]
    step_offset: int = 0
    flops_offset: float = 0.0

    @property
    def has_rollouts(self) -> bool:
        return any(r.get("rollout_tokens") for r in self.metrics)

    @property
    def last_step(self) -> int:
        return self.metrics[-1]["step"] if self.metrics else 0

    @property
    def last_flops(self) -> float:
        return float(self.metrics[-1].get("flops") or 0.0) if self.metrics else 0.0


@dataclass
class Chain:
    """One seed of an arm: its runs joined end to end (SFT-RFT: the RFT run continues the SFT
    run's steps and FLOPs)."""

    seed: int
    runs: list[Run]
    evals: list[dict]
    """Evaluation rows along the whole chain (global step and FLOPs), base point first."""

    @property
    def steps(self) -> int:
        return sum(r.last_step for r in self.runs)

    @property
    def flops(self) -> float:
        return sum(r.last_flops for r in self.runs)

    @property
    def trained(self) -> bool:
        return any(r.metrics for r in self.runs)

    def final(self, label: str) -> dict | None:
        rows = [e for e in self.evals if e["label"] == label and e["step"] > 0]
        return rows[-1] if rows else None


EPISODE_KEYS = ("step_accuracy", "route_success")
"""Rates of tasks played step by step (navigation's step mode: the study's per-step accuracy and
the share of routes finished), shown beside pass@1 when the evaluations have them."""


def _is_rate(key: str) -> bool:
    return key.startswith(("pass@", "success@")) or key in EPISODE_KEYS


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def mean_row(rows: list[dict]) -> dict:
    """Evaluation rows of one test set, one per seed -> one row: the mean of every number, and
    for each rate (pass@1, pass@k, success@j) its spread over seeds (`KEY_min`, `KEY_max`, `KEY_sd`:
    the sample standard deviation) and the standard error of the mean over seeds, `KEY_se` =
    KEY_sd / sqrt(S). `seeds` = S. One row comes back as it is (with `seeds` = 1): its standard
    error is the binomial one over its n problems (`std_error_of`)."""
    if len(rows) == 1:
        return {**rows[0], "seeds": 1}
    S = len(rows)
    out = {k: v for k, v in rows[0].items() if not _number(v)}
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        if not all(_number(v) for v in values):
            continue
        mean = sum(values) / S
        out[key] = mean
        if _is_rate(key):
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (S - 1))
            out.update({f"{key}_sd": sd, f"{key}_se": sd / math.sqrt(S), f"{key}_min": min(values),
                        f"{key}_max": max(values)})
    out["seeds"] = S
    return out


def std_error_of(row: dict, key: str = "pass@1") -> float:
    """Standard error of a rate: over seeds when the row is a mean of several (`mean_row`), else
    the binomial sqrt(p (1 - p) / n) over its n test problems."""
    if row.get("seeds", 1) > 1:
        return row[f"{key}_se"]
    return std_error(row[key], row["n"])


def mean_curve(chains: list[Chain]) -> list[dict]:
    """The chains' evaluation rows averaged over seeds point by point, per test set: the i-th
    evaluation of every seed together (steps and FLOPs averaged too), the last point of each the
    seeds' final evaluations even when a seed evaluated more often."""
    if len(chains) == 1:
        return [{**e, "seeds": 1} for e in chains[0].evals]
    out = []
    labels = list(dict.fromkeys(e["label"] for c in chains for e in c.evals))
    for label in labels:
        seqs = [[e for e in c.evals if e["label"] == label] for c in chains]
        seqs = [s for s in seqs if s]
        k = min(len(s) for s in seqs)
        for i in range(k):
            out.append(mean_row([s[i] if i < k - 1 else s[-1] for s in seqs]))
    return out


@dataclass
class Arm:
    """One curve of the comparison: an algorithm, run once per seed."""

    name: str
    chains: list[Chain]
    set: list[str] = field(default_factory=list)
    """The arm's own `--set ARM.key=value` items."""
    evals: list[dict] = field(default_factory=list)
    """Evaluation rows averaged over seeds (`mean_curve`), base point first."""

    @property
    def runs(self) -> list[Run]:
        """The first seed's runs."""
        return self.chains[0].runs

    @property
    def seeds(self) -> list[int]:
        return [c.seed for c in self.chains]

    @property
    def steps_each(self) -> list[int]:
        return [c.steps for c in self.chains if c.trained]

    @property
    def flops_each(self) -> list[float]:
        return [c.flops for c in self.chains if c.trained]

    @property
    def steps(self) -> float:
        """Optimiser steps of the arm (the mean over trained seeds)."""
        each = self.steps_each
        return sum(each) / len(each) if each else 0

    @property
    def flops(self) -> float:
        """Training FLOPs of the arm (the mean over trained seeds; the last metrics row of each run)."""
        each = self.flops_each
        return sum(each) / len(each) if each else 0.0

    @property
    def trained(self) -> bool:
        return any(c.trained for c in self.chains)

    def final(self, label: str) -> dict | None:
        """The final evaluation on a test set, averaged over the seeds that have one (`mean_row`)."""
        rows = [r for r in (c.final(label) for c in self.chains) if r]
        return mean_row(rows) if rows else None


def manifest_settings(manifest: dict) -> dict:
    """The settings of a compare.json by their --set names: the comparison's fields, and its run
    values (`settings.run`, by dotted RunConfig key) under their short names (`batch_size` for
    sources.0.batch_size) or their keys. Manifests written before `settings.run` hold them flat
    already."""
    settings = dict(manifest.get("settings") or {})
    run = settings.pop("run", None)
    if not isinstance(run, dict):
        return settings
    from unift.compare.settings import ALIASES

    names = {keys[0]: name for name, keys in ALIASES.items()}
    return {**settings, **{names.get(key, key): value for key, value in run.items()}}


@dataclass
class Comparison:
    dir: Path
    manifest: dict
    base: list[dict]
    arms: list[Arm]

    @property
    def settings(self) -> dict:
        """The comparison's settings by their --set names (`manifest_settings`)."""
        return manifest_settings(self.manifest)

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("eval_variants") or {r["label"]: 0 for r in self.base})

    def distribution(self, label: str) -> str:
        return self.manifest.get("distributions", {}).get(label, "id" if label == "id" else "ood")

    @property
    def id_labels(self) -> list[str]:
        return [x for x in self.labels if self.distribution(x) == "id"]

    @property
    def ood_labels(self) -> list[str]:
        return [x for x in self.labels if self.distribution(x) == "ood"]

    def base_row(self, label: str) -> dict | None:
        return next((r for r in self.base if r["label"] == label), None)

    @property
    def match(self) -> str:
        """The protocol: steps | flops (comparisons from before the choice: flops)."""
        return self.manifest.get("match", "flops")

    @property
    def budget(self) -> float:
        """Training FLOPs per arm under match=flops (0 otherwise)."""
        return float(self.manifest.get("budget") or 0) if self.match == "flops" else 0.0

    @property
    def seeds(self) -> int:
        """Most seeds of any arm."""
        return max((len(a.chains) for a in self.arms), default=1)

    @property
    def protocol(self) -> str:
        split = self.settings.get("eval_split", "test")
        where = "" if split == "test" else \
            f"; evaluated on the {split} split (for choosing settings), not the test split"
        if self.manifest.get("protocol"):
            return self.manifest["protocol"] + where
        if self.match == "steps":
            return f"step-matched: every arm {self.manifest.get('steps')} optimiser steps" + where
        return (f"FLOP-matched: every arm {self.budget:.3g} training FLOPs" if self.budget else "FLOP-matched") + where

    @property
    def episode_keys(self) -> list[str]:
        """`EPISODE_KEYS` that some evaluation row carries."""
        rows = [r for rows in [self.base, *[a.evals for a in self.arms]] for r in rows]
        return [k for k in EPISODE_KEYS if any(k in r for r in rows)]

    @property
    def success_key(self) -> str | None:
        keys = {k for rows in [self.base, *[a.evals for a in self.arms]] for r in rows for k in r
                if k.startswith("success@") and not k.endswith(("_se", "_sd", "_min", "_max"))}
        return max(keys, key=lambda k: int(k.split("@")[1])) if keys else None


def _chain(compare_dir: Path, seed: int, specs: list[dict], base: list[dict]) -> Chain:
    runs, step0, flops0 = [], 0, 0.0
    evals = [dict(r) for r in base]
    for i, spec in enumerate(specs):
        d = compare_dir / spec["dir"]
        run = Run(spec["name"], spec["preset"], d, _jsonl(d / "metrics.jsonl"), _jsonl(d / "evals.jsonl"),
                  step0, flops0)
        for e in run.evals:
            if e["step"] == 0 and (i > 0 or base):
                continue  # the model of the previous run (or the base model, evaluated once)
            evals.append({**e, "step": e["step"] + step0, "flops": float(e["flops"]) + flops0})
        runs.append(run)
        step0, flops0 = step0 + run.last_step, flops0 + run.last_flops
    return Chain(seed, runs, evals)


def load_comparison(compare_dir: Path) -> Comparison:
    compare_dir = Path(compare_dir)
    manifest = json.loads((compare_dir / "compare.json").read_text())
    base = _jsonl(compare_dir / manifest.get("base", "base") / "evals.jsonl")
    arms = []
    for entry in manifest["arms"]:
        seeds = entry.get("seeds") or [{"seed": manifest.get("settings", {}).get("seed", 0), "runs": entry["runs"]}]
        chains = [_chain(compare_dir, x["seed"], x["runs"], base) for x in seeds]
        arms.append(Arm(entry["name"], chains, entry.get("set", []), mean_curve(chains)))
    return Comparison(compare_dir, manifest, base, arms)


# -- figures ------------------------------------------------------------------------------------


def _color(name: str, i: int) -> str:
    return COLORS.get(name) or PALETTE[i % len(PALETTE)]


def _figure(ncols: int, nrows: int = 1, width: float = 5.2, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows + 0.6), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def _flops_axis(ax) -> None:
    ax.set_xlabel("training compute (FLOPs)")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))


def _legend(fig, axes) -> None:
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 7), frameon=False)


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _x_axis(ax, x: str) -> None:
    if x == "flops":
        _flops_axis(ax)
    else:
        ax.set_xlabel("optimiser step")


def accuracy_figure(c: Comparison):
    """Held-out pass@1 against training FLOPs and against optimiser steps (the protocol's axis on
    top), and success@V against the protocol's axis, one panel per test set: the mean over seeds
    with a band of ±1 standard error, thin lines per seed when there are several."""
    xs = ["steps", "flops"] if c.match == "steps" else ["flops", "steps"]
    panels = [("pass@1", x) for x in xs]
    if c.success_key:
        panels.append((c.success_key, xs[0]))
    labels = c.id_labels + c.ood_labels
    fig, axes = _figure(len(labels), len(panels))
    for row, (key, x) in enumerate(panels):
        field_ = "flops" if x == "flops" else "step"
        ylabel = "greedy pass@1 (%)" if key == "pass@1" else \
            f"{key}: solved within {key.split('@')[1]} attempts (%)"
        for col, label in enumerate(labels):
            ax = axes[row, col]
            base = c.base_row(label)
            n = int(base["n"]) if base else next((int(e["n"]) for a in c.arms for e in a.evals
                                                  if e["label"] == label), 0)
            kind = "ID" if c.distribution(label) == "id" else "OOD"
            ax.set_title(f"{kind} test set '{label}' (n = {n}): {key} vs {'FLOPs' if x == 'flops' else 'steps'}",
                         fontsize=10)
            if base and key in base:
                ax.axhline(100 * base[key], color=COLORS["base"], ls=":", lw=1.2,
                           label=c.manifest.get("base_label", "base model"))
            for i, arm in enumerate(c.arms):
                color = _color(arm.name, i)
                if len(arm.chains) > 1:
                    for chain in arm.chains:
                        rows = [e for e in chain.evals if e["label"] == label and key in e]
                        ax.plot([float(e[field_]) for e in rows], [100 * e[key] for e in rows], color=color,
                                alpha=0.3, lw=0.8)
                rows = [e for e in arm.evals if e["label"] == label and key in e]
                if not rows:
                    continue
                px = [float(e[field_]) for e in rows]
                y = [100 * e[key] for e in rows]
                se = [100 * std_error_of(e, key) for e in rows]
                ax.plot(px, y, marker="o", ms=4, color=color, label=arm.name)
                ax.fill_between(px, [a - b for a, b in zip(y, se, strict=True)],
                                [a + b for a, b in zip(y, se, strict=True)], color=color, alpha=0.12, lw=0)
            _x_axis(ax, x)
            ax.set_ylabel(ylabel)
            ax.set_ylim(0, max(5.0, ax.get_ylim()[1]))
    _legend(fig, axes)
    band = "binomial SE" if c.seeds == 1 else f"SE over {c.seeds} seeds; thin lines: single seeds"
    fig.suptitle(f"Held-out accuracy, {c.match}-matched (bands: ±1 {band})")
    return fig


def reward_figure(c: Comparison):
    """Training reward of the rollouts and held-out greedy reward (ID) against FLOPs."""
    fig, axes = _figure(2)
    left, right = axes[0]
    for i, arm in enumerate(c.arms):
        color = _color(arm.name, i)
        for j, chain in enumerate(arm.chains):
            for run in chain.runs:
                rows = [r for r in run.metrics if r.get("rollout_tokens") and r.get("reward_mean") is not None]
                if not rows:
                    continue
                x = [run.flops_offset + float(r["flops"]) for r in rows]
                y = [r["reward_mean"] for r in rows]
                window = max(1, len(y) // 15)
                left.plot(x, y, color=color, alpha=0.25, lw=0.8)
                left.plot(x, _smooth(y, window), color=color, lw=1.8 if j == 0 else 1.0,
                          label=arm.name if j == 0 else None)
        rows = [e for e in arm.evals if e["label"] in c.id_labels[:1]]
        if rows:
            right.plot([float(e["flops"]) for e in rows], [e["reward_mean"] for e in rows], marker="o", ms=4,
                       color=color, label=arm.name)
    left.set_title("Training reward of the rollouts (hinted prompts included)", fontsize=10)
    left.set_ylabel("mean reward per rollout (task scale)")
    _flops_axis(left)
    if not left.lines:
        left.text(0.5, 0.5, "no run with rollouts", ha="center", va="center", transform=left.transAxes)
    label = c.id_labels[0] if c.id_labels else "?"
    right.set_title(f"Held-out greedy reward on the ID test set '{label}'"
                    + (" (mean over seeds)" if c.seeds > 1 else ""), fontsize=10)
    right.set_ylabel("mean reward (task scale)")
    base = c.base_row(label)
    if base:
        right.axhline(base["reward_mean"], color=COLORS["base"], ls=":", lw=1.2,
                      label=c.manifest.get("base_label", "base model"))
    _flops_axis(right)
    _legend(fig, axes)
    fig.suptitle("Reward against training compute (thin lines: per step; thick: moving average"
                 + ("; one per seed)" if c.seeds > 1 else ")"))
    return fig


def hint_figure(c: Comparison):
    """hint_p (the schedule) and hint_fraction (prompts that got a hint) against step, first seed."""
    fig, axes = _figure(2)
    left, right = axes[0]
    for i, arm in enumerate(c.arms):
        color = _color(arm.name, i)
        for run in arm.runs:
            if not run.has_rollouts:
                continue
            rows = [r for r in run.metrics if "hint_p" in r]
            name = arm.name if len(arm.runs) == 1 else f"{arm.name} ({run.preset} run)"
            x = [r["step"] for r in rows]
            left.plot(x, [r["hint_p"] for r in rows], color=color, lw=1.8, label=name)
            frac = [r.get("hint_fraction", 0.0) for r in rows]
            right.plot(x, frac, color=color, alpha=0.25, lw=0.8)
            right.plot(x, _smooth(frac, max(1, len(frac) // 15)), color=color, lw=1.8, label=name)
    left.set_title("Hint schedule: expected hint length k/num (hint_p)", fontsize=10)
    left.set_ylabel("hint_p (share of the solution)")
    right.set_title("Prompts whose rollouts started with a hint (hint_fraction)", fontsize=10)
    right.set_ylabel("hint_fraction (share of prompts)")
    for ax in (left, right):
        ax.set_xlabel("optimiser step")
        ax.set_ylim(-0.03, 1.03)
        if not ax.lines:
            ax.text(0.5, 0.5, "no run with rollouts", ha="center", va="center", transform=ax.transAxes)
    _legend(fig, axes)
    fig.suptitle("UFT-hint schedules (SFT always sees the whole solution and is not drawn"
                 + ("; first seed" if c.seeds > 1 else "") + ")")
    return fig


# -- table and text -----------------------------------------------------------------------------


def _pct(row: dict | None, key: str = "pass@1", se: bool = True) -> str:
    """A rate in percent: "p ± SE" (binomial for one seed), "mean ± SE (min–max)" over seeds."""
    if not row or key not in row:
        return "–"
    p = row[key]
    if not se:
        return f"{100 * p:.1f}"
    text = f"{100 * p:.1f} ± {100 * std_error_of(row, key):.1f}"
    if row.get("seeds", 1) > 1:
        text += f" ({100 * row[f'{key}_min']:.1f}–{100 * row[f'{key}_max']:.1f})"
    return text


def _truncated(row: dict | None) -> str:
    if not row:
        return "–"
    if "truncated_rate" in row:
        return f"{100 * row['truncated_rate']:.1f}"
    return f"{100 * (1 - row['finished_rate']):.1f}" if "finished_rate" in row else "–"


def _gap(c: Comparison, rows: dict[str, dict | None]) -> float | None:
    ids = [rows[x]["pass@1"] for x in c.id_labels if rows.get(x)]
    oods = [rows[x]["pass@1"] for x in c.ood_labels if rows.get(x)]
    if not ids or not oods:
        return None
    return 100 * (sum(ids) / len(ids) - sum(oods) / len(oods))


def _spread(values: list[float], fmt: str) -> str:
    """One value, or the mean and (lowest–highest) over seeds when they differ."""
    if not values:
        return format(0, fmt)
    lo, hi, mean = min(values), max(values), sum(values) / len(values)
    if format(lo, fmt) == format(hi, fmt):
        return format(mean, fmt)
    return f"{format(mean, fmt)} ({format(lo, fmt)}–{format(hi, fmt)})"


def table_rows(c: Comparison) -> tuple[list[str], list[list[str]], list[dict]]:
    """(header, cells per row, final eval rows by label per row): base first, then each arm.
    Steps and FLOPs are each arm's actual ones (the last metrics row of its runs; over seeds the
    mean and the range); pass@1 is the mean over seeds ± its standard error (`_pct`)."""
    labels = c.id_labels + c.ood_labels
    sk = c.success_key
    budget = c.budget
    header = ["algorithm", "steps", "training FLOPs", *(["FLOPs vs budget"] if budget else []),
              *(f"{'ID' if c.distribution(x) == 'id' else 'OOD'} '{x}' pass@1 (%)" for x in labels),
              "ID→OOD gap (points)", "ID format (%)", "ID truncated (%)"]
    if sk:
        header += [f"{'ID' if c.distribution(x) == 'id' else 'OOD'} '{x}' {sk} (%)" for x in labels]
    episode = c.episode_keys
    header += [f"{'ID' if c.distribution(x) == 'id' else 'OOD'} '{x}' {key.replace('_', ' ')} (%)"
               for key in episode for x in labels]
    base = c.manifest.get("base_label", "base model")
    entries = [(base, [0], [0.0], {x: c.base_row(x) for x in labels})]
    entries += [(a.name, a.steps_each, a.flops_each, {x: a.final(x) for x in labels}) for a in c.arms]
    cells, finals = [], []
    for i, (name, steps, flops, rows) in enumerate(entries):
        gap = _gap(c, rows)
        first_id = rows.get(c.id_labels[0]) if c.id_labels else None
        line = [name, _spread([float(x) for x in steps], ".0f"), _spread(flops, ".3g")]
        if budget:
            line.append("–" if i == 0 or not flops else f"{100 * (sum(flops) / len(flops) / budget - 1):+.1f}%")
        line += [*(_pct(rows[x]) for x in labels), "–" if gap is None else f"{gap:+.1f}",
                 _pct(first_id, "format_rate", se=False), _truncated(first_id)]
        if sk:
            line += [_pct(rows[x], sk) for x in labels]
        # a per-step accuracy is no binomial over the n routes: its error bar only over seeds
        line += [_pct(rows[x], key, se=key == "route_success" or (rows[x] or {}).get("seeds", 1) > 1)
                 for key in episode for x in labels]
        cells.append(line)
        finals.append(rows)
    return header, cells, finals


def summary_markdown(compare_dir: Path) -> str:
    """The protocol and the final table as markdown (printed by `unift compare`)."""
    c = load_comparison(compare_dir)
    header, cells, _ = table_rows(c)
    lines = [f"Protocol: {c.protocol}" + (f"; {c.seeds} seeds (pass@1: mean ± SE over seeds (min–max))"
                                          if c.seeds > 1 else ""), ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def caveats(c: Comparison) -> list[str]:
    """What this run can and cannot show, computed from the numbers in the files."""
    out = []
    budget = c.budget
    s = c.settings
    trained = [a for a in c.arms if a.trained]
    ns = sorted({int(e["n"]) for e in c.base} | {int(e["n"]) for a in c.arms for e in a.evals})
    seeds = c.seeds
    if ns:
        n = ns[0]
        worst = 100 * std_error(0.5, n)
        finals = [(a.name, a.final(c.id_labels[0])) for a in trained] if c.id_labels else []
        finals = [(name, r) for name, r in finals if r]
        text = (f"Each test set has n = {n} problems, so a pass@1 of p carries a binomial standard error "
                f"sqrt(p(1-p)/n): up to {worst:.1f} points (at p = 50%)")
        best_name, best = max(finals, key=lambda t: t[1]["pass@1"]) if finals else (None, None)
        if best and best["pass@1"] > 0:
            text += (f", {100 * std_error(best['pass@1'], n):.1f} points for the best final ID result "
                     f"({best_name}, {100 * best['pass@1']:.1f}%)")
        text += (f". Two results differ beyond noise only when their gap exceeds about two standard errors of "
                 f"the difference, i.e. roughly {2 * math.sqrt(2) * worst:.0f} points near 50%.")
        if len(finals) >= 2 and max(r["pass@1"] for _, r in finals) == 0:
            text += " Every algorithm scores 0% on the ID test set: this run cannot rank them."
        elif len(finals) >= 2:
            ranked = sorted(finals, key=lambda t: t[1]["pass@1"], reverse=True)
            (a, ra), (b, rb) = ranked[0], ranked[1]
            diff = 100 * (ra["pass@1"] - rb["pass@1"])
            se_diff = 100 * math.sqrt(std_error_of(ra) ** 2 + std_error_of(rb) ** 2)
            verdict = "beyond" if se_diff > 0 and diff > 2 * se_diff else "within"
            kind = "standard errors over seeds" if seeds > 1 else "standard errors"
            text += (f" On the ID test set the best algorithm ({a}) leads the runner-up ({b}) by {diff:.1f} points, "
                     f"{verdict} two {kind} ({2 * se_diff:.1f} points): "
                     + ("a ranking this run supports." if verdict == "beyond" else "this run cannot rank them."))
        out.append(text)
    if seeds > 1:
        out.append(f"{seeds} seeds per algorithm (training data order, problems and sampling): pass@1 is the mean "
                   "over seeds ± the standard error of that mean, the sample standard deviation over seeds / "
                   "sqrt(seeds), with the lowest and highest seed in brackets. Every seed is tested on the same "
                   "problems, so this error measures the training noise that rankings must beat; read as the "
                   "task's accuracy, each number carries the binomial test-set error above as well. With 2-3 "
                   "seeds the standard error itself is rough.")
    elif len(trained) > 1:
        out.append("One seed per algorithm: the spread between seeds is not measured here and adds to the "
                   "test-set noise above (`--seeds 0,1,2` measures it).")
    if c.ood_labels and trained:
        oods = [a.final(x) for a in trained for x in c.ood_labels]
        oods = [r for r in oods if r]
        if oods and max(r["pass@1"] for r in oods) == 0:
            out.append("Every algorithm scores 0 on the OOD test sets: at this budget nothing can be said about "
                       "generalisation beyond the training distribution.")
    base = c.base_row(c.id_labels[0]) if c.id_labels else None
    if base is not None and base.get("format_rate", 1) < 0.5:
        out.append(f"The base model writes a parsable answer for only {100 * base['format_rate']:.0f}% of the ID "
                   "problems, so early gains are mostly format learning, which SFT provides directly "
                   "(docs/methods.md section 5: SFT is needed first when the base model cannot follow the format).")
    cut = [(e, e.get("truncated_rate", 1 - e.get("finished_rate", 1))) for a in c.arms for ch in a.chains
           for e in ch.evals]
    cut = [(e, t) for e, t in cut if t > 0.1]
    if cut:
        worst_row, t = max(cut, key=lambda et: et[1])
        out.append(f"Some evaluated completions hit the token limit ({100 * t:.0f}% at worst, '{worst_row['label']}'): "
                   "a longer max_new_tokens could change these numbers.")
    if budget and trained:
        used = [(a.name, f / budget) for a in trained for f in a.flops_each]
        far = max(used, key=lambda t: abs(t[1] - 1))
        out.append(f"FLOP-matched: every arm's actual training FLOPs (each seed) lie within "
                   f"{100 * abs(far[1] - 1):.1f}% of the budget of {budget:.3g} (farthest: {far[0]}, "
                   f"{100 * (far[1] - 1):+.1f}%); the table's 'FLOPs vs budget' column gives each arm's mean.")
        short = sorted({f"{name} ({100 * f:.0f}%)" for name, f in used if f < 0.9})
        if short:
            out.append("Runs that stopped on their step estimate before spending the budget: "
                       + ", ".join(short) + "; their points sit left of the budget line.")
    if c.match == "steps" and trained:
        steps = c.manifest.get("steps")
        off = sorted({a.name for a in trained for x in a.steps_each if steps and x != steps})
        flops = sorted((a.flops, a.name) for a in trained)
        text = f"Step-matched: every arm ran {steps} optimiser steps of {s.get('batch_size')} prompts"
        text += f", except {', '.join(off)} (see the steps column)" if off else ""
        if len(flops) > 1 and flops[0][0] > 0:
            text += (f". Equal steps are not equal compute: {flops[0][1]} spent {flops[0][0]:.3g} training FLOPs, "
                     f"{flops[-1][1]} {flops[-1][0]:.3g} ({flops[-1][0] / flops[0][0]:.1f}x); the FLOPs axes "
                     "show what each arm bought with it")
        out.append(text + ".")
    own = [f"{a.name}: {', '.join(a.set)}" for a in c.arms if a.set]
    if own:
        out.append("Arms with their own settings (`--set ARM.key=value`), so not configured alike: "
                   + "; ".join(own) + ".")
    if trained:
        rl = [r for a in trained for r in a.runs if r.has_rollouts]
        if rl and s:
            steps = max(r.last_step for r in rl)
            prompts = steps * s.get("batch_size", 0)
            ref = c.manifest.get("reference")
            what = f"The budget of {budget:.3g} FLOPs per algorithm buys" if budget else "This run trains"
            out.append(f"{what} at most {steps} RL steps of {s.get('batch_size')} prompts x "
                       f"{s.get('num_generations')} rollouts ({prompts} training problems seen)"
                       + (f", against {ref}" if ref else "")
                       + ": these curves show the start of training, not where the methods end up.")
    if len(trained) > 1:
        out.append("Compute counts the training work as computed (`unift.train.flops`): 2 FLOPs per weight per "
                   "token through a forward pass, with a group's shared prompt run once and the LM head only "
                   "where a next token is trained or scored; backward twice the forward; the reference model's "
                   "forwards and the rollouts' prefill and decode included; evaluations not counted.")
    if not trained:
        out.append("No run has finished yet: only the base model's numbers are shown.")
    return out


def _by_k(run: Run, prefix: str) -> dict[int, float]:
    """Mean over steps of the metrics `PREFIX/<k>` of a run: {k: mean}."""
    values: dict[int, list[float]] = {}
    for row in run.metrics:
        for key, v in row.items():
            if key.startswith(prefix + "/") and key[len(prefix) + 1:].isdigit() and _number(v):
                values.setdefault(int(key[len(prefix) + 1:]), []).append(v)
    return {k: sum(v) / len(v) for k, v in sorted(values.items())}


def _mean_metric(run: Run, key: str) -> float | None:
    values = [r[key] for r in run.metrics if _number(r.get(key))]
    return sum(values) / len(values) if values else None


def hint_length_rows(c: Comparison) -> tuple[list[int], list[tuple[str, dict, dict, float | None, float | None]]]:
    """Rollout diagnostics by hint length k, per run with rollouts (all seeds pooled): (every k,
    [(name, reward by k, correct rate by k, EOS after a full hint, NLL tokens per step)]), each a
    mean over the steps that logged it. The EOS column is the policy's p(EOS) after a full hint
    (`full_hint_eos_p`), or the share of full-hint rollouts that ended (`full_hint_eos_rate`).
    Empty when no run logged `reward_by_k/<k>`."""
    rows, ks = [], set()
    for arm in c.arms:
        for i in range(len(arm.runs)):
            runs = [ch.runs[i] for ch in arm.chains if i < len(ch.runs) and ch.runs[i].has_rollouts]
            if not runs:
                continue
            merged = Run(runs[0].name, runs[0].preset, runs[0].dir, [r for run in runs for r in run.metrics], [])
            reward, correct = _by_k(merged, "reward_by_k"), _by_k(merged, "correct_by_k")
            if not reward:
                continue
            ks |= set(reward) | set(correct)
            name = arm.name if len(arm.runs) == 1 else f"{arm.name} ({merged.preset} run)"
            eos = _mean_metric(merged, "full_hint_eos_p")
            eos = _mean_metric(merged, "full_hint_eos_rate") if eos is None else eos
            rows.append((name, reward, correct, eos, _mean_metric(merged, "nll_tokens")))
    return sorted(ks), rows


def samples(c: Comparison, per_arm: int = 3) -> list[tuple[str, Path, list[dict]]]:
    """A few training samples per arm: the first `per_arm` rows of the last step in the last
    `samples.jsonl` of the arm's first seed (no file: no entry)."""
    out = []
    for arm in c.arms:
        for run in reversed(arm.runs):
            rows = _jsonl(run.dir / "samples.jsonl")
            if rows:
                last = max(r.get("step", 0) for r in rows)
                shown = [r for r in rows if r.get("step", 0) == last][:per_arm]
                out.append((arm.name, run.dir / "samples.jsonl", shown))
                break
    return out


# -- HTML ---------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; line-height: 1.5; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.sub { color: #555; margin-top: 0; } code { background: #f3f3f3; padding: 0.1em 0.3em; border-radius: 3px; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #d6d6d6; padding: 0.35em 0.7em; text-align: right; }
th { background: #f4f6f8; } td:first-child, th:first-child { text-align: left; }
tr.base td { color: #555; font-style: italic; } td.best { font-weight: 700; background: #eef7ee; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.92em; margin-top: 0.3em; }
.caveats li { margin: 0.35em 0; } .small { font-size: 0.88em; color: #555; }
table.setup td, table.runs td { text-align: left; }
.protocol { background: #f4f6f8; padding: 0.4em 0.7em; border-left: 3px solid #1f77b4; }
details { margin: 0.5em 0; } summary { cursor: pointer; }
.sample pre { white-space: pre-wrap; background: #fafafa; border: 1px solid #eee; padding: 0.5em; font-size: 0.85em; }
.hint { background: #fff3c4; } .completion { background: #e3f0ff; }
"""


def _table_html(header: list[str], cells: list[list[str]], finals: list[dict], c: Comparison) -> str:
    labels = c.id_labels + c.ood_labels
    first = 4 if c.budget else 3  # the first pass@1 column (after algorithm, steps, FLOPs, vs budget)
    best: dict[int, float] = {}
    for j, label in enumerate(labels):  # best final pass@1 among the algorithms (not the base)
        values = [f[label]["pass@1"] for f in finals[1:] if f.get(label)]
        if values and max(values) > 0:
            best[first + j] = max(values)
    out = ["<table id='results'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
           + "</tr></thead><tbody>"]
    for i, (row, final) in enumerate(zip(cells, finals, strict=True)):
        tds = []
        for j, cell in enumerate(row):
            label = labels[j - first] if first <= j < first + len(labels) else None
            is_best = i > 0 and j in best and final.get(label) and final[label]["pass@1"] == best[j]
            tds.append(f"<td{' class=best' if is_best else ''}>{html.escape(cell)}</td>")
        out.append(f"<tr{' class=base' if i == 0 else ''}>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _setup_html(c: Comparison) -> str:
    s = c.settings
    keys = ["model", "task", "variant", "ood", "match", "steps", "budget", "seeds", "batch_size", "num_generations",
            "max_new_tokens", "stop_strings", "temperature", "lr", "schedule", "precision", "eval_n", "eval_k",
            "eval_viter", "seed"]

    def value(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else v if isinstance(v, str) else json.dumps(v)

    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(value(s[k]))}</td></tr>"
                   for k in keys if k in s)
    rows += "".join(f"<tr><td>{html.escape(a.name)} only</td><td>{html.escape(', '.join(a.set))}</td></tr>"
                    for a in c.arms if a.set)
    runs = []
    for arm in c.arms:
        for chain in arm.chains:
            for run in chain.runs:
                rel = run.dir.relative_to(c.dir) if run.dir.is_relative_to(c.dir) else run.dir
                runs.append(f"<tr><td>{html.escape(arm.name)}</td><td>{chain.seed}</td>"
                            f"<td>{html.escape(run.preset)}</td><td>{run.last_step}</td><td>{run.last_flops:.3g}</td>"
                            f"<td><code>{html.escape(str(rel))}</code></td>"
                            f"<td><code>configs/{html.escape(run.name)}.yaml</code></td></tr>")
    return ("<table class='setup'><tbody>" + rows + "</tbody></table>"
            "<table class='runs'><thead><tr><th>algorithm</th><th>seed</th><th>preset</th><th>steps</th>"
            "<th>FLOPs</th><th>run directory</th><th>config</th></tr></thead><tbody>" + "".join(runs)
            + "</tbody></table>")


def _hint_length_html(c: Comparison) -> str:
    """The rollouts' reward and correct rate by hint length k (empty without the metrics)."""
    ks, rows = hint_length_rows(c)
    if not rows:
        return ""
    head = ["run", *(f"k = {k}" for k in ks), "EOS after a full hint (%)", "NLL tokens / step"]
    body = []
    for name, reward, correct, eos, nll in rows:
        cells = [name]
        for k in ks:
            cells.append("–" if k not in reward else f"{reward[k]:.2f}"
                         + (f" ({100 * correct[k]:.0f}%)" if k in correct else ""))
        cells += ["–" if eos is None else f"{100 * eos:.0f}", "–" if nll is None else f"{nll:.0f}"]
        body.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in cells) + "</tr>")
    return ("<h2>Rollouts by hint length</h2><p>Mean training reward of the rollouts (correct rate in brackets) "
            "by hint length k (k of the solution's cut points given as hint; 0: none), averaged over the steps "
            "and seeds that drew it; how likely the policy ends (EOS) right after a full hint, which is the SFT target "
            "and should end there; NLL tokens per step "
            "(hint tokens trained by the NLL term).</p><table id='by-k'><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>" + "".join(body)
            + "</tbody></table>")


def _samples_html(c: Comparison) -> str:
    """A few training samples per arm, escaped, in collapsible blocks (empty without samples.jsonl)."""
    blocks = []
    for name, path, rows in samples(c):
        rel = path.relative_to(c.dir) if path.is_relative_to(c.dir) else path
        items = []
        for r in rows:
            k = f"hint k = {r.get('k')} of {r.get('num_pieces')} pieces" if r.get("k") is not None else "no hint"
            verdict = "correct" if r.get("correct") else "not correct"
            reward = r.get("reward")  # None or NaN: no reward term scored the row (reward_funcs)
            reward = f"{reward:.2f}" if isinstance(reward, int | float) and reward == reward else "none"
            meta = f"source {r.get('source', '?')} · {k} · reward {reward} · {verdict}"
            feedback = f"\n<span class='small'>verifier: {html.escape(str(r['feedback']))}</span>" \
                if r.get("feedback") else ""
            items.append(f"<div class='sample'><p class='small'>{html.escape(meta)}</p><pre>"
                         f"<span class='prompt'>{html.escape(str(r.get('prompt', '')))}</span>\n"
                         f"<span class='hint'>{html.escape(str(r.get('hint') or ''))}</span>"
                         f"<span class='completion'>{html.escape(str(r.get('completion', '')))}</span>"
                         f"{feedback}</pre></div>")
        step = rows[0].get("step") if rows else "?"
        blocks.append(f"<details><summary>{html.escape(name)}: step {step}, first {len(rows)} samples "
                      f"(<code>{html.escape(str(rel))}</code>)</summary>{''.join(items)}</details>")
    if not blocks:
        return ""
    return ("<h2>Samples</h2><p>Training rollouts of each arm's last step (first seed): the prompt, "
            "<span class='hint'>the hint</span> and <span class='completion'>the completion</span>.</p>"
            + "".join(blocks))


FIGURES = [
    ("accuracy", accuracy_figure,
     "Greedy pass@1 on each held-out test set against the training FLOPs spent so far and against optimiser "
     "steps; the dotted line is the base model, every curve starts from it at 0. Bands: ±1 standard error "
     "(binomial over the test problems for one seed; over seeds when there are several)."),
    ("reward", reward_figure,
     "Left: mean reward of each step's rollouts (RL runs only; UFT and R3 rollouts start after a hint, so "
     "their early training reward is not comparable with RFT's). Right: mean greedy reward on the ID test set."),
    ("hints", hint_figure,
     "hint_p is the schedule's expected share of the solution given as hint; hint_fraction the share of a "
     "step's prompts that got a non-empty hint. RFT never hints; UFT's cosine schedule ends at T_hint."),
]


def build_report(compare_dir: Path) -> Path:
    """Write compare_dir/report.html (and fig_*.png beside it); returns the HTML path."""
    compare_dir = Path(compare_dir)
    c = load_comparison(compare_dir)
    m = c.manifest
    figures = []
    wanted = m.get("figures") or [name for name, _, _ in FIGURES]
    for name, make, caption in FIGURES:
        if name not in wanted:
            continue
        fig = make(c)
        png = _png(fig)
        (compare_dir / f"fig_{name}.png").write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        figures.append(f"<figure id='fig-{name}'><img alt='{name} figure' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    header, cells, finals = table_rows(c)
    n_params = m.get("n_params")
    sub = (f"{html.escape(str(m.get('model')))}"
           + (f" ({n_params / 1e6:.1f}M parameters)" if n_params else "")
           + f" · task {html.escape(str(m.get('task')))}"
           + (f" · budget {c.budget:.3g} training FLOPs per algorithm" if c.budget else "")
           + (f" · {m['steps']} optimiser steps per algorithm" if c.match == "steps" and m.get("steps") else "")
           + (f" · seeds {', '.join(map(str, m['seeds']))}" if len(m.get("seeds") or []) > 1 else "")
           + f" · {datetime.now():%Y-%m-%d %H:%M}")
    command = f"<p class='small'>Command: <code>{html.escape(m['command'])}</code></p>" if m.get("command") else ""
    items = "".join(f"<li>{html.escape(t)}</li>" for t in caveats(c))
    if c.seeds > 1:
        intro = (f"Greedy pass@1 at the end of each run, the mean over {c.seeds} seeds ± the standard error of that "
                 "mean (sample standard deviation over seeds / sqrt(seeds)), the lowest and highest seed in brackets")
    else:
        intro = "Greedy pass@1 at the end of each run (± binomial standard error over the test problems)"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(m.get("title", "unift comparison"))}</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(m.get("title", "unift comparison"))}</h1>
<p class="sub">{sub}</p>
<p class="protocol" id="protocol"><b>Protocol:</b> {html.escape(c.protocol)}.</p>
{command}
<h2>Final results</h2>
<p>{intro}, on the same test problems for every algorithm. Steps and training FLOPs are what each arm actually
ran (the last metrics row of its runs). The ID→OOD gap is ID pass@1 minus the mean OOD pass@1, in percentage
points; truncated: greedy completions cut by the token limit. Bold: best algorithm per test set.</p>
{_table_html(header, cells, finals, c)}
{"".join(f"<p>{html.escape(t)}</p>" for t in m.get("notes", []))}
<h2>What this run can and cannot show</h2>
<ul class="caveats">{items}</ul>
<h2>Figures</h2>
{"".join(figures)}
{_hint_length_html(c)}
{_samples_html(c)}
<h2>Setup</h2>
{_setup_html(c)}
<p class="small">Every number comes from <code>compare.json</code>, <code>base/evals.jsonl</code> and the runs'
<code>metrics.jsonl</code> / <code>evals.jsonl</code>. Rebuild with
<code>unift compare --report-only {html.escape(str(compare_dir))}</code>.</p>
</body></html>
"""
    path = compare_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
