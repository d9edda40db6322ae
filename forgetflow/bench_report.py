"""Benchmark outputs: per-run CSV, aggregated Markdown tables (mean ± std over seeds) and plots.

Plots (matplotlib, Agg backend): accuracy of every method next to the oracle's; forget-set loss
histograms of each method against the oracle's; with reference models, the per-sample LiRA score
distributions of the forget set (original, oracle and every method, the oracle's drawn under each) with the
1 %-FPR threshold; for the corrupted-data grid, REM-style heat-maps of Utility x Healed (rows =
regularity, columns = discovery rate).

Per-sample columns (present when the benchmark ran with reference models): LiRA / RMIA detected = % of
forget samples above the 1 %-FPR threshold of never-seen test samples under the same model; the oracle's
cell adds its Clopper–Pearson 95 % interval, pooled over seeds (the target a method should land in);
dist. to oracle = mean absolute difference of a model's per-sample LiRA scores from the oracle's on the forget
set; AUC vs oracle = ROC AUC of those two score sets (0.5 = indistinguishable).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from forgetflow.bench import DO_NOTHING, RETRAIN, aggregate
from forgetflow.bench_membership import clopper_pearson

PER_SAMPLE = ["lira_detected", "rmia_detected", "lira_dist", "lira_auc_vs_oracle"]
COLUMNS = {
    "privacy": ["forget_acc", "retain_acc", "test_acc", "mia_efficacy", "mia_entropy", "mia_auc", "avg_gap",
                "avg_gap_mumis", "kl_forget_to_oracle", *PER_SAMPLE, "seconds", "time_ratio"],
    "subject": ["forget_acc", "retain_acc", "test_acc", "mia_efficacy", "mia_auc", "mia_unseen_acc", "nomus", "avg_gap",
                "avg_gap_mumis", *PER_SAMPLE, "seconds", "time_ratio"],
    "corrupted": ["healed", "healed_undiscovered", "utility", "utility_x_healed", "forget_acc", "test_acc",
                  *PER_SAMPLE, "seconds", "time_ratio"],
}
LABELS = {
    "forget_acc": "FA %", "retain_acc": "RA %", "test_acc": "TA %", "mia_efficacy": "MIA-eff. (SalUn SVC) %",
    "mia_entropy": "MIA (SSD entropy LR) %", "mia_auc": "MIA loss AUC f-vs-t", "avg_gap": "gap (SalUn)",
    "avg_gap_mumis": "gap (MU-Mis)", "kl_forget_to_oracle": "KL forget→oracle", "seconds": "time s",
    "time_ratio": "time / retrain", "mia_unseen_acc": "MIA MUFAC acc", "nomus": "NoMUS", "healed": "Healed %",
    "healed_undiscovered": "Healed undisc. %", "utility": "Utility %", "utility_x_healed": "U×H",
    "lira_detected": "LiRA det. @1 % FPR %", "rmia_detected": "RMIA det. @1 % FPR %",
    "lira_dist": "LiRA dist. to oracle", "lira_auc_vs_oracle": "LiRA AUC vs oracle",
}


def family(scenario: str) -> str:
    if scenario.startswith("corrupted"):
        return "corrupted"
    if scenario.startswith("subject"):
        return "subject"
    return "privacy"


def table_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the private per-sample fields (names starting with '_')."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    clean = table_rows(rows)
    keys: list[str] = []
    for r in clean:
        keys.extend(k for k in r if k not in keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in clean:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def _fmt(mean: float, std: float, key: str) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    digits = 3 if key in ("mia_auc", "mia_unseen_acc", "nomus", "time_ratio", "kl_forget_to_oracle", "lira_dist",
                          "lira_auc_vs_oracle") else 2
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def markdown(rows: Sequence[dict[str, Any]], group: str = "scenario") -> str:
    """One Markdown table per scenario label, mean ± std over seeds; the do-nothing and retrain rows first.

    A method whose run of some seed was flagged (wrecked the model, cost more than retraining, diverged) or ran
    without a preset for the scenario is marked ⚠ and its reasons are listed under the table.
    """
    out = []
    labels = list(dict.fromkeys(r[group] for r in rows))
    for label in labels:
        sub = [r for r in rows if r[group] == label]
        cols = COLUMNS[family(label)]
        cols = [c for c in cols if any(c in r for r in sub)]
        agg = aggregate([{**r, "scenario": label} for r in sub], cols)
        agg.sort(key=lambda a: (a["method"] not in (DO_NOTHING, RETRAIN), a["method"] != DO_NOTHING))
        seeds = max(a["seeds"] for a in agg)
        out.append(f"### {label} ({seeds} seed{'s' if seeds > 1 else ''})\n")
        out.append("| method | " + " | ".join(LABELS.get(c, c) for c in cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        notes = _notes(sub)
        for a in agg:
            name = {"original": "original (do nothing)", "retrain": "retrain (oracle)"}.get(a["method"], a["method"])
            if a["method"] in notes:
                name += " ⚠"
            cells = [_fmt(a[c], a[f'{c}_std'], c) for c in cols]
            if a["method"] == RETRAIN:
                cells = [cell + _oracle_interval(sub, c) for cell, c in zip(cells, cols)]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        for method, reasons in notes.items():
            out.append(f"\n⚠ {method}: " + "; ".join(reasons))
        out.append("")
    return "\n".join(out)


def _oracle_interval(rows: Sequence[dict[str, Any]], key: str) -> str:
    """`` [lo, hi]``: the oracle's detected share's 95 % interval pooled over seeds (empty for other columns)."""
    if not key.endswith("_detected"):
        return ""
    oracle = [r for r in rows if r["method"] == RETRAIN and f"{key}_count" in r]
    if not oracle:
        return ""
    count = sum(int(r[f"{key}_count"]) for r in oracle)
    n = sum(int(r["forget_size"]) for r in oracle)
    lo, hi = clopper_pearson(count, n)
    return f" [{lo:.2f}, {hi:.2f}]"


def write_markdown(rows: Sequence[dict[str, Any]], path: Path, title: str, command: str, runner: str,
                   setting: str | None = None) -> str:
    """Write ``results.md`` (title, the command, the setting, the runner, the load average, the tables).

    The load average is read when the file is written, at the end of the run: wall times depend on it.
    Returns the tables.
    """
    import os

    tables = markdown(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"Command: `{command}`", *([f"Setting: {setting}"] if setting else []), f"Runner: {runner}",
             f"Load average at the end (1/5/15 min): {load}"]
    path.write_text(f"# {title}\n\n" + "  \n".join(lines) + f"\n\n{tables}\n")
    return tables


def _notes(rows: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Per method, the distinct flags and preset warnings of its rows (with the seed where they came from)."""
    notes: dict[str, list[str]] = {}
    for r in rows:
        flags = [f.strip() for f in (r.get("flags") or "").split("; ") if f.strip()]  # cell_flags joins with "; "
        for part in flags + ([r["warning"]] if r.get("warning") else []):
            entry = f"{part} (seed {r.get('seed')})"
            if entry not in notes.setdefault(r["method"], []):
                notes[r["method"]].append(entry)
    return {m: v for m, v in notes.items() if v}


def plots(rows: Sequence[dict[str, Any]], folder: Path) -> list[Path]:
    """Write the plots for these rows into ``folder``; returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label in dict.fromkeys(r["scenario"] for r in rows):
        sub = [r for r in rows if r["scenario"] == label]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        if family(label) != "corrupted":
            written.append(_accuracy_bars(plt, sub, label, folder / f"accuracy-{safe}.png"))
            hist = _loss_histograms(plt, sub, label, folder / f"forget-loss-{safe}.png")
            if hist:
                written.append(hist)
        scores = _score_histograms(plt, sub, label, folder / f"forget-lira-{safe}.png")
        if scores:
            written.append(scores)
    grid = [r for r in rows if family(r["scenario"]) == "corrupted" and "utility_x_healed" in r]
    if grid:
        written.append(_heatmap(plt, grid, folder / "rem-heatmap.png"))
    return written


def _accuracy_bars(plt, rows, label, path: Path) -> Path:
    agg = aggregate(rows, ["forget_acc", "retain_acc", "test_acc"])
    methods = [a["method"] for a in agg]
    x = np.arange(len(methods))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(methods)), 4))
    for i, key in enumerate(("forget_acc", "retain_acc", "test_acc")):
        ax.bar(x + (i - 1) * 0.27, [a[key] for a in agg], 0.27, yerr=[a[f"{key}_std"] for a in agg],
               label=LABELS[key])
    oracle = next((a for a in agg if a["method"] == RETRAIN), None)
    if oracle:
        for key, style in (("forget_acc", "--"), ("test_acc", ":")):
            ax.axhline(oracle[key], color="k", linestyle=style, linewidth=1, label=f"oracle {LABELS[key]}")
    low = min(min(a[k] for k in ("forget_acc", "retain_acc", "test_acc")) for a in agg)
    ax.set_ylim(max(0, low - 5), 100.5)
    ax.set_xticks(x, methods, rotation=30, ha="right")
    ax.set_title(f"accuracy vs the retrained oracle — {label}")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _loss_histograms(plt, rows, label, path: Path) -> Path | None:
    seed0 = min(r["seed"] for r in rows)
    runs = {r["method"]: np.asarray(r["_forget_loss"]) for r in rows if r["seed"] == seed0 and "_forget_loss" in r}
    if RETRAIN not in runs:
        return None
    methods = [m for m in runs if m != RETRAIN]
    cols = min(4, len(methods))
    nrows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    top = np.quantile(np.concatenate(list(runs.values())), 0.99) + 1e-6
    bins = np.linspace(0, top, 40)
    for ax, method in zip(axes.flat, methods):
        ax.hist(np.clip(runs[RETRAIN], 0, top), bins=bins, alpha=0.5, label="oracle", density=True)
        ax.hist(np.clip(runs[method], 0, top), bins=bins, alpha=0.5, label=method, density=True)
        ax.set_title(method, fontsize=9)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle(f"forget-set loss vs the oracle's — {label} (seed {seed0})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _score_histograms(plt, rows, label, path: Path, attack: str = "lira") -> Path | None:
    """Per-sample attack scores of the forget set: one panel per model (original first), the oracle's under each."""
    seed0 = min(r["seed"] for r in rows)
    runs = {r["method"]: r for r in rows if r["seed"] == seed0 and f"_{attack}_forget" in r}
    if RETRAIN not in runs:
        return None
    methods = [m for m in runs if m != RETRAIN]
    methods.sort(key=lambda m: m != DO_NOTHING)
    if not methods:
        return None
    oracle = np.asarray(runs[RETRAIN][f"_{attack}_forget"], float)
    every = np.concatenate([np.asarray(r[f"_{attack}_forget"], float) for r in runs.values()])
    lo, hi = np.quantile(every, [0.005, 0.995])
    bins = np.linspace(lo, hi + 1e-6, 40)
    cols = min(4, len(methods))
    nrows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        r = runs[method]
        ax.hist(np.clip(oracle, lo, hi), bins=bins, alpha=0.5, label="oracle", density=True)
        ax.hist(np.clip(np.asarray(r[f"_{attack}_forget"], float), lo, hi), bins=bins, alpha=0.5, label=method,
                density=True)
        ax.axvline(r[f"_{attack}_threshold"], color="k", linestyle="--", linewidth=1, label="1 % FPR")
        ax.set_title(f"{method}: {r[f'{attack}_detected']:.1f} % detected", fontsize=9)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle(f"{attack.upper()} scores of the forget set vs the oracle's — {label} (seed {seed0})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _heatmap(plt, rows, path: Path) -> Path:
    regs = list(dict.fromkeys(r.get("opt_regularity") for r in rows))
    discs = sorted({float(r.get("opt_discovery")) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 2.8), squeeze=False)
    for k, (ax, method) in enumerate(zip(axes.flat, methods)):
        grid = np.full((len(regs), len(discs)), np.nan)
        for i, reg in enumerate(regs):
            for j, disc in enumerate(discs):
                vals = [r["utility_x_healed"] for r in rows if r["method"] == method and r.get("opt_regularity") == reg
                        and float(r.get("opt_discovery")) == disc]
                if vals:
                    grid[i, j] = float(np.mean(vals))
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.0f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_xticks(range(len(discs)), [f"{d:g}" for d in discs], fontsize=7)
        ax.set_yticks(range(len(regs)), regs if k == 0 else [], fontsize=7)  # row names once, at the left
        ax.set_title(f"{method}\nmean {np.nanmean(grid):.1f}", fontsize=8)
        ax.set_xlabel("discovery rate", fontsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    fig.suptitle("Utility × Healed (REM task space)", fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
