"""Judge the method targets of the memorising setting from benchmark result files: met or not, with the figures.

Usage (from the repository root):

    .venv/bin/python benchmarks/targets.py [--results docs/results/memorising] [--json FILE]

Reads ``<results>/<scenario>/results.csv`` as written by ``forgetflow bench --out`` (whichever scenarios are
there) and prints one line per target, each with the numbers it was judged on. The targets (issue 8, §5):

* **random** (10 %): the best *paper* method by mean SalUn gap has a gap of at most a quarter of the do-nothing
  gap, a LiRA detected-at-1 %-FPR share inside the oracle's 95 % interval (Clopper-Pearson, pooled over seeds,
  as the tables print it), a time of at most 5 % of the retrain time (mean of the per-seed ratios), and a gap
  below every baseline's.
* **subject** (1 % of the subjects): the same for the privacy default (``unlearn.by_reason.privacy`` of
  params.yaml), plus its NoMUS at least the oracle's.
* **full-class**: some paper method with mean FA at most 0.5 % and RA and TA each within 0.5 point of the oracle's.
* **corrupted** (the REM task space): REM's Utility x Healed at least the oracle's + 20, averaged over the grid.

Nothing here reruns a model: the figures are the benchmark's own, so the verdicts can be checked by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAPER = ("mu-mis", "rem", "rfa", "aru")
NOT_METHODS = ("original", "retrain")


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in list(r.items()):
            try:
                r[k] = float(v) if v not in ("", None) else None
            except ValueError:
                pass
    return rows


def _mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def _by_method(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[r["method"]].append(r.get(key))
    return {m: _mean(v) for m, v in groups.items()}


def _oracle_interval(rows: list[dict[str, Any]], attack: str = "lira") -> tuple[float, float]:
    from forgetflow.bench_membership import clopper_pearson

    oracle = [r for r in rows if r["method"] == "retrain"]
    count = sum(int(r[f"{attack}_detected_count"]) for r in oracle)
    n = sum(int(r["forget_size"]) for r in oracle)
    lo, hi = clopper_pearson(count, n)
    return lo, hi


def privacy_target(rows: list[dict[str, Any]], method: str | None, label: str, nomus: bool = False) -> dict[str, Any]:
    """The random / subject target for ``method`` (None: the paper method with the lowest mean gap)."""
    gap = _by_method(rows, "avg_gap")
    det = _by_method(rows, "lira_detected")
    ratio = _by_method(rows, "time_ratio")
    present = [m for m in gap if m not in NOT_METHODS]
    if method is None:
        method = min((m for m in present if m in PAPER), key=lambda m: gap[m])
    lo, hi = _oracle_interval(rows)
    baselines = {m: gap[m] for m in present if m not in PAPER}
    best_baseline = min(baselines, key=baselines.get) if baselines else None
    checks = {
        f"gap {gap[method]:.2f} <= 1/4 of do-nothing {gap['original']:.2f} ({gap['original'] / 4:.2f})":
            gap[method] <= gap["original"] / 4,
        f"LiRA detected {det[method]:.2f} % in the oracle's [{lo:.2f}, {hi:.2f}] %": lo <= det[method] <= hi,
        f"time / retrain {ratio[method]:.3f} <= 0.05": ratio[method] <= 0.05,
        (f"ahead of every baseline on gap (best baseline {best_baseline} {baselines[best_baseline]:.2f})"
         if best_baseline else "no baseline in the table"): bool(best_baseline) and gap[method] < min(baselines.values()),
    }
    if nomus:
        n = _by_method(rows, "nomus")
        checks[f"NoMUS {n[method]:.3f} >= oracle's {n['retrain']:.3f}"] = n[method] >= n["retrain"]
    return {"target": label, "method": method, "met": all(checks.values()), "checks": checks}


def full_class_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    fa, ra, ta = (_by_method(rows, k) for k in ("forget_acc", "retain_acc", "test_acc"))
    verdicts = {}
    for m in [m for m in fa if m in PAPER]:
        verdicts[m] = {f"FA {fa[m]:.2f} <= 0.5": fa[m] <= 0.5,
                       f"RA {ra[m]:.2f} within 0.5 of the oracle's {ra['retrain']:.2f}": abs(ra[m] - ra["retrain"]) <= 0.5,
                       f"TA {ta[m]:.2f} within 0.5 of the oracle's {ta['retrain']:.2f}": abs(ta[m] - ta["retrain"]) <= 0.5}
    # the closest paper method: the smallest worst excess over the three limits
    best = min(verdicts, key=lambda m: max(fa[m] - 0.5, abs(ra[m] - ra["retrain"]) - 0.5, abs(ta[m] - ta["retrain"]) - 0.5))
    return {"target": "full class: a paper method forgets the class at the oracle's utility", "method": best,
            "met": any(all(v.values()) for v in verdicts.values()), "checks": verdicts[best]}


def corrupted_target(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("utility_x_healed") is not None:
            cells[(r.get("opt_regularity"), r.get("opt_discovery"))][r["method"]].append(r["utility_x_healed"])
    diffs = [_mean(c["rem"]) - _mean(c["retrain"]) for c in cells.values() if c.get("rem") and c.get("retrain")]
    lead = _mean(diffs)
    return {"target": "REM task space: REM's U x H >= the oracle's + 20, averaged over the grid", "method": "rem",
            "met": lead >= 20, "checks": {f"REM - oracle U x H {lead:.2f} over {len(diffs)} cells >= 20": lead >= 20}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "results" / "memorising")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from forgetflow.project import Project

    privacy_default = Project.load(REPO / "params.yaml").params.unlearn.by_reason["privacy"]
    verdicts = []
    for scenario, judge in (("random", lambda r: privacy_target(r, None, "random 10 %: the best paper method")),
                            ("subject", lambda r: privacy_target(r, privacy_default,
                                                                 f"subject 1 %: the privacy default ({privacy_default})",
                                                                 nomus=True)),
                            ("full-class", full_class_target), ("corrupted", corrupted_target)):
        path = args.results / scenario / "results.csv"
        if path.exists():
            verdicts.append({"scenario": scenario, "file": str(path), **judge(_rows(path))})
    for v in verdicts:
        print(f"{v['target']} — {v['method']}: {'MET' if v['met'] else 'NOT MET'}  ({v['file']})")
        for check, ok in v["checks"].items():
            print(f"    [{'x' if ok else ' '}] {check}")
    if args.json:
        args.json.write_text(json.dumps(verdicts, indent=2))


if __name__ == "__main__":
    main()
