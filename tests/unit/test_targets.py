"""benchmarks/targets.py judges the memorising-setting targets from result rows: the verdicts follow the figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("targets", Path(__file__).resolve().parents[2] / "benchmarks" / "targets.py")
targets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(targets)


def _row(method, seed, gap, det, ratio, count=None, size=100, **extra):
    return {"method": method, "seed": seed, "avg_gap": gap, "lira_detected": det, "time_ratio": ratio,
            "lira_detected_count": count if count is not None else det * size / 100, "forget_size": size, **extra}


def _table(aru_gap, aru_det, aru_ratio, baseline_gap):
    rows = []
    for seed in (0, 1):
        rows += [_row("original", seed, 12.0, 8.0, 0.0), _row("retrain", seed, 0.0, 1.0, 1.0, count=1),
                 _row("aru", seed, aru_gap, aru_det, aru_ratio), _row("rfa", seed, 11.0, 6.0, 0.04),
                 _row("finetune", seed, baseline_gap, 8.0, 0.01)]
    return rows


def test_random_target_met_only_when_every_part_holds():
    met = targets.privacy_target(_table(2.5, 1.0, 0.03, 11.0), None, "random")
    assert met["method"] == "aru" and met["met"] and all(met["checks"].values())
    too_far = targets.privacy_target(_table(3.5, 1.0, 0.03, 11.0), None, "random")  # 3.5 > 12 / 4
    assert not too_far["met"] and [ok for c, ok in too_far["checks"].items() if c.startswith("gap")] == [False]
    detected = targets.privacy_target(_table(2.5, 6.0, 0.03, 11.0), None, "random")  # outside the oracle's interval
    assert not detected["met"]
    slow = targets.privacy_target(_table(2.5, 1.0, 0.08, 11.0), None, "random")
    assert not slow["met"]
    behind = targets.privacy_target(_table(2.5, 1.0, 0.03, 2.0), None, "random")  # a baseline does better
    assert not behind["met"]


def test_full_class_and_rem_targets():
    rows = [{"method": "retrain", "forget_acc": 0.0, "retain_acc": 100.0, "test_acc": 75.0},
            {"method": "aru", "forget_acc": 0.4, "retain_acc": 99.7, "test_acc": 74.6},
            {"method": "rfa", "forget_acc": 9.0, "retain_acc": 97.0, "test_acc": 72.0}]
    assert targets.full_class_target(rows)["met"]
    rows[1]["retain_acc"] = 99.0
    verdict = targets.full_class_target(rows)
    assert not verdict["met"] and verdict["method"] == "aru"
    grid = [{"method": m, "opt_regularity": reg, "opt_discovery": 0.5, "utility_x_healed": uxh}
            for reg, (rem, oracle) in {"a": (70.0, 45.0), "b": (60.0, 45.0)}.items()
            for m, uxh in (("rem", rem), ("retrain", oracle))]
    assert targets.corrupted_target(grid)["met"]  # leads of 25 and 15: 20 on average
    grid[0]["utility_x_healed"] = 60.0
    assert not targets.corrupted_target(grid)["met"]
