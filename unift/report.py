"""The report of a comparison directory (`unift compare`, `unift study`): one self-contained
HTML file with the figures embedded as base64 PNGs (also saved beside it as PNG files).

    build_report(Path("runs/compare-countdown"))   # -> runs/compare-countdown/report.html

Every number is read from the files the runs wrote (compare.json, base/evals.jsonl and each
run's metrics.jsonl and evals.jsonl); nothing is recomputed except standard errors and
differences of those numbers. An algorithm of several runs (SFT-RFT) is drawn as one curve: each
later run's steps and FLOPs continue from the last row of the run before it.

Figures: held-out pass@1 against training FLOPs per test set (and success@V with verification
iterations); training reward (rollouts) and held-out reward against FLOPs; the hint schedule
(hint_p and hint_fraction against step). Then the final table with the ID -> OOD gap and a
paragraph on what the test-set size and the budget can and cannot show.
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
class Arm:
    name: str
    runs: list[Run]
    evals: list[dict] = field(default_factory=list)
    """Evaluation rows along the whole arm (global step and FLOPs), base point first."""

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


@dataclass
class Comparison:
    dir: Path
    manifest: dict
    base: list[dict]
    arms: list[Arm]

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
    def success_key(self) -> str | None:
        keys = {k for rows in [self.base, *[a.evals for a in self.arms]] for r in rows for k in r
                if k.startswith("success@")}
        return max(keys, key=lambda k: int(k.split("@")[1])) if keys else None


def load_comparison(compare_dir: Path) -> Comparison:
    compare_dir = Path(compare_dir)
    manifest = json.loads((compare_dir / "compare.json").read_text())
    base = _jsonl(compare_dir / manifest.get("base", "base") / "evals.jsonl")
    arms = []
    for entry in manifest["arms"]:
        runs, step0, flops0 = [], 0, 0.0
        evals = [dict(r) for r in base]
        for i, spec in enumerate(entry["runs"]):
            d = compare_dir / spec["dir"]
            run = Run(spec["name"], spec["preset"], d, _jsonl(d / "metrics.jsonl"), _jsonl(d / "evals.jsonl"),
                      step0, flops0)
            for e in run.evals:
                if e["step"] == 0 and (i > 0 or base):
                    continue  # the model of the previous run (or the base model, evaluated once)
                evals.append({**e, "step": e["step"] + step0, "flops": float(e["flops"]) + flops0})
            runs.append(run)
            step0, flops0 = step0 + run.last_step, flops0 + run.last_flops
        arms.append(Arm(entry["name"], runs, evals))
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


def accuracy_figure(c: Comparison):
    """Held-out pass@1 (and success@V) against training FLOPs, one panel per test set."""
    metrics = [("pass@1", "greedy pass@1 (%)")]
    if c.success_key:
        metrics.append((c.success_key, f"{c.success_key}: solved within {c.success_key.split('@')[1]} attempts (%)"))
    labels = c.id_labels + c.ood_labels
    fig, axes = _figure(len(labels), len(metrics))
    for row, (key, ylabel) in enumerate(metrics):
        for col, label in enumerate(labels):
            ax = axes[row, col]
            base = c.base_row(label)
            n = int(base["n"]) if base else next((int(e["n"]) for a in c.arms for e in a.evals if e["label"] == label), 0)
            kind = "ID" if c.distribution(label) == "id" else "OOD"
            ax.set_title(f"{kind} test set '{label}' (n = {n}): {key}", fontsize=10)
            if base and key in base:
                ax.axhline(100 * base[key], color=COLORS["base"], ls=":", lw=1.2,
                           label=c.manifest.get("base_label", "base model"))
            for i, arm in enumerate(c.arms):
                rows = [e for e in arm.evals if e["label"] == label and key in e]
                if not rows:
                    continue
                x = [float(e["flops"]) for e in rows]
                y = [100 * e[key] for e in rows]
                se = [100 * std_error(e[key], e["n"]) for e in rows]
                color = _color(arm.name, i)
                ax.plot(x, y, marker="o", ms=4, color=color, label=arm.name)
                ax.fill_between(x, [a - b for a, b in zip(y, se, strict=True)],
                                [a + b for a, b in zip(y, se, strict=True)], color=color, alpha=0.12, lw=0)
            _flops_axis(ax)
            ax.set_ylabel(ylabel)
            ax.set_ylim(0, max(5.0, ax.get_ylim()[1]))
    _legend(fig, axes)
    fig.suptitle("Held-out accuracy against training compute (bands: ±1 binomial standard error)")
    return fig


def reward_figure(c: Comparison):
    """Training reward of the rollouts and held-out greedy reward (ID) against FLOPs."""
    fig, axes = _figure(2)
    left, right = axes[0]
    for i, arm in enumerate(c.arms):
        color = _color(arm.name, i)
        for run in arm.runs:
            rows = [r for r in run.metrics if r.get("rollout_tokens") and r.get("reward_mean") is not None]
            if not rows:
                continue
            x = [run.flops_offset + float(r["flops"]) for r in rows]
            y = [r["reward_mean"] for r in rows]
            window = max(1, len(y) // 15)
            left.plot(x, y, color=color, alpha=0.25, lw=0.8)
            left.plot(x, _smooth(y, window), color=color, lw=1.8, label=arm.name)
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
    right.set_title(f"Held-out greedy reward on the ID test set '{label}'", fontsize=10)
    right.set_ylabel("mean reward (task scale)")
    base = c.base_row(label)
    if base:
        right.axhline(base["reward_mean"], color=COLORS["base"], ls=":", lw=1.2,
                      label=c.manifest.get("base_label", "base model"))
    _flops_axis(right)
    _legend(fig, axes)
    fig.suptitle("Reward against training compute (thin lines: per step; thick: moving average)")
    return fig


def hint_figure(c: Comparison):
    """hint_p (the schedule) and hint_fraction (prompts that got a hint) against step."""
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
    fig.suptitle("UFT-hint schedules (SFT always sees the whole solution and is not drawn)")
    return fig


# -- table and text -----------------------------------------------------------------------------


def _pct(row: dict | None, key: str = "pass@1", se: bool = True) -> str:
    if not row or key not in row:
        return "–"
    p = row[key]
    return f"{100 * p:.1f} ± {100 * std_error(p, row['n']):.1f}" if se else f"{100 * p:.1f}"


def _gap(c: Comparison, rows: dict[str, dict | None]) -> float | None:
    ids = [rows[x]["pass@1"] for x in c.id_labels if rows.get(x)]
    oods = [rows[x]["pass@1"] for x in c.ood_labels if rows.get(x)]
    if not ids or not oods:
        return None
    return 100 * (sum(ids) / len(ids) - sum(oods) / len(oods))


def table_rows(c: Comparison) -> tuple[list[str], list[list[str]], list[dict]]:
    """(header, cells per row, final eval rows by label per row): base first, then each arm."""
    labels = c.id_labels + c.ood_labels
    sk = c.success_key
    header = ["algorithm", "steps", "training FLOPs",
              *(f"{'ID' if c.distribution(x) == 'id' else 'OOD'} '{x}' pass@1 (%)" for x in labels),
              "ID→OOD gap (points)", "ID format (%)"]
    if sk:
        header += [f"{'ID' if c.distribution(x) == 'id' else 'OOD'} '{x}' {sk} (%)" for x in labels]
    entries = [(c.manifest.get("base_label", "base model"), 0, 0.0, {x: c.base_row(x) for x in labels})]
    entries += [(a.name, a.steps, a.flops, {x: a.final(x) for x in labels}) for a in c.arms]
    cells, finals = [], []
    for name, steps, flops, rows in entries:
        gap = _gap(c, rows)
        first_id = rows.get(c.id_labels[0]) if c.id_labels else None
        line = [name, str(steps), f"{flops:.3g}", *(_pct(rows[x]) for x in labels),
                "–" if gap is None else f"{gap:+.1f}", _pct(first_id, "format_rate", se=False)]
        if sk:
            line += [_pct(rows[x], sk) for x in labels]
        cells.append(line)
        finals.append(rows)
    return header, cells, finals


def summary_markdown(compare_dir: Path) -> str:
    """The final table as markdown (printed by `unift compare`)."""
    header, cells, _ = table_rows(load_comparison(compare_dir))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def caveats(c: Comparison) -> list[str]:
    """What this budget can and cannot show, computed from the numbers in the files."""
    out = []
    budget = float(c.manifest.get("budget") or 0)
    s = c.manifest.get("settings", {})
    trained = [a for a in c.arms if a.trained]
    ns = sorted({int(e["n"]) for e in c.base} | {int(e["n"]) for a in c.arms for e in a.evals})
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
            text += " Every algorithm scores 0% on the ID test set: this budget cannot rank them."
        elif len(finals) >= 2:
            ranked = sorted(finals, key=lambda t: t[1]["pass@1"], reverse=True)
            (a, ra), (b, rb) = ranked[0], ranked[1]
            diff = 100 * (ra["pass@1"] - rb["pass@1"])
            se_diff = 100 * math.sqrt(std_error(ra["pass@1"], n) ** 2 + std_error(rb["pass@1"], n) ** 2)
            verdict = "beyond" if se_diff > 0 and diff > 2 * se_diff else "within"
            text += (f" On the ID test set the best algorithm ({a}) leads the runner-up ({b}) by {diff:.1f} points, "
                     f"{verdict} two standard errors ({2 * se_diff:.1f} points): "
                     + ("a ranking this budget supports." if verdict == "beyond"
                        else "this budget cannot rank them."))
        out.append(text)
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
    unfinished = [e for a in c.arms for e in a.evals if e.get("finished_rate", 1) < 0.9]
    if unfinished:
        worst_row = min(unfinished, key=lambda e: e["finished_rate"])
        out.append(f"Some evaluated completions hit the token limit ({100 * (1 - worst_row['finished_rate']):.0f}% "
                   f"at worst, '{worst_row['label']}'): a longer max_new_tokens could change these numbers.")
    if budget and trained:
        used = [(a.name, a.flops / budget) for a in trained]
        short = [f"{name} ({100 * f:.0f}%)" for name, f in used if f < 0.9]
        if short:
            out.append("Runs that stopped on their step estimate before spending the budget: "
                       + ", ".join(short) + "; their points sit left of the budget line.")
        rl = [r for a in trained for r in a.runs if r.has_rollouts]
        if rl and s:
            steps = max(r.last_step for r in rl)
            prompts = steps * s.get("batch_size", 0)
            ref = c.manifest.get("reference")
            out.append(f"The budget of {budget:.3g} FLOPs per algorithm buys at most {steps} RL steps of "
                       f"{s.get('batch_size')} prompts x {s.get('num_generations')} rollouts ({prompts} training "
                       "problems seen)" + (f", against {ref}" if ref else "")
                       + ": these curves show the start of training, not where the methods end up.")
    if len(trained) > 1:
        out.append("One seed per algorithm: the spread between seeds is not measured here and adds to the "
                   "test-set noise above. Compute counts training only (6 N per trained token, 2 N per generated "
                   "token); the reference model's forward passes and evaluations are not counted.")
    if not trained:
        out.append("No run has finished yet: only the base model's numbers are shown.")
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
"""


def _table_html(header: list[str], cells: list[list[str]], finals: list[dict], c: Comparison) -> str:
    labels = c.id_labels + c.ood_labels
    best: dict[int, float] = {}
    for j, label in enumerate(labels):  # best final pass@1 among the algorithms (not the base)
        values = [f[label]["pass@1"] for f in finals[1:] if f.get(label)]
        if values and max(values) > 0:
            best[3 + j] = max(values)
    out = ["<table id='results'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
           + "</tr></thead><tbody>"]
    for i, (row, final) in enumerate(zip(cells, finals, strict=True)):
        tds = []
        for j, cell in enumerate(row):
            label = labels[j - 3] if 3 <= j < 3 + len(labels) else None
            is_best = i > 0 and j in best and final.get(label) and final[label]["pass@1"] == best[j]
            tds.append(f"<td{' class=best' if is_best else ''}>{html.escape(cell)}</td>")
        out.append(f"<tr{' class=base' if i == 0 else ''}>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _setup_html(c: Comparison) -> str:
    s = c.manifest.get("settings", {})
    keys = ["model", "task", "variant", "ood", "budget", "batch_size", "num_generations", "max_new_tokens",
            "temperature", "lr", "schedule", "precision", "eval_n", "eval_k", "eval_viter", "seed"]
    def value(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else v if isinstance(v, str) else json.dumps(v)

    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(value(s[k]))}</td></tr>"
                   for k in keys if k in s)
    runs = []
    for arm in c.arms:
        for run in arm.runs:
            rel = run.dir.relative_to(c.dir) if run.dir.is_relative_to(c.dir) else run.dir
            runs.append(f"<tr><td>{html.escape(arm.name)}</td><td>{html.escape(run.preset)}</td>"
                        f"<td>{run.last_step}</td><td>{run.last_flops:.3g}</td>"
                        f"<td><code>{html.escape(str(rel))}</code></td>"
                        f"<td><code>configs/{html.escape(run.name)}.yaml</code></td></tr>")
    return ("<table class='setup'><tbody>" + rows + "</tbody></table>"
            "<table class='runs'><thead><tr><th>algorithm</th><th>preset</th><th>steps</th><th>FLOPs</th>"
            "<th>run directory</th><th>config</th></tr></thead><tbody>" + "".join(runs) + "</tbody></table>")


FIGURES = [
    ("accuracy", accuracy_figure,
     "Greedy pass@1 on each held-out test set against the training FLOPs spent so far; the dotted line is the "
     "base model, every curve starts from it at 0 FLOPs. Bands: ±1 binomial standard error."),
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
           + (f" · budget {float(m['budget']):.3g} training FLOPs per algorithm" if m.get("budget") else "")
           + f" · {datetime.now():%Y-%m-%d %H:%M}")
    command = f"<p class='small'>Command: <code>{html.escape(m['command'])}</code></p>" if m.get("command") else ""
    items = "".join(f"<li>{html.escape(t)}</li>" for t in caveats(c))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(m.get("title", "unift comparison"))}</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(m.get("title", "unift comparison"))}</h1>
<p class="sub">{sub}</p>
{command}
<h2>Final results</h2>
<p>Greedy pass@1 at the end of each run (± binomial standard error), on the same test problems for every
algorithm. The ID→OOD gap is ID pass@1 minus the mean OOD pass@1, in percentage points. Bold: best
algorithm per test set.</p>
{_table_html(header, cells, finals, c)}
{"".join(f"<p>{html.escape(t)}</p>" for t in m.get("notes", []))}
<h2>What this budget can and cannot show</h2>
<ul class="caveats">{items}</ul>
<h2>Figures</h2>
{"".join(figures)}
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
