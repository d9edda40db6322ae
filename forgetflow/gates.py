"""Promotion gates: the challenger replaces the champion only if every gate passes.

* ``utility`` — test accuracy may drop at most ``max_test_acc_drop`` points below the champion's.
* ``forgetting`` — forget accuracy within ``max_forget_acc_gap`` points of the oracle's; without an oracle,
  forget accuracy may exceed the challenger's own test accuracy by at most that much (forgotten samples
  should look unseen).
* ``privacy`` — SalUn MIA-efficacy within ``max_mia_gap`` points of the oracle's; without an oracle, the
  loss-threshold attack AUC (forget vs test) within ``max_mia_gap`` / 100 of chance (0.5).
* ``cost`` — unlearning wall time at most ``max_time_ratio`` x the retraining time.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from forgetflow.config import GateParams


def _gate(value: float, threshold: float, detail: str) -> dict[str, Any]:
    passed = (not math.isnan(value)) and value <= threshold
    return {"passed": bool(passed), "value": round(float(value), 4), "threshold": threshold, "detail": detail}


def evaluate_gates(
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    oracle: Mapping[str, float] | None,
    unlearn_seconds: float,
    retrain_seconds: float | None,
    gates: GateParams,
) -> dict[str, dict[str, Any]]:
    """Every gate's verdict with the measured value and its threshold."""
    out = {
        "utility": _gate(champion["test_acc"] - candidate["test_acc"], gates.max_test_acc_drop,
                         f"test acc {candidate['test_acc']:.2f} vs champion {champion['test_acc']:.2f}"),
    }
    if oracle is not None:
        out["forgetting"] = _gate(abs(candidate["forget_acc"] - oracle["forget_acc"]), gates.max_forget_acc_gap,
                                  f"forget acc {candidate['forget_acc']:.2f} vs oracle {oracle['forget_acc']:.2f}")
        out["privacy"] = _gate(abs(candidate["mia_efficacy"] - oracle["mia_efficacy"]), gates.max_mia_gap,
                               f"MIA-efficacy (SalUn SVC) {candidate['mia_efficacy']:.2f} vs oracle {oracle['mia_efficacy']:.2f}")
    else:
        out["forgetting"] = _gate(candidate["forget_acc"] - candidate["test_acc"], gates.max_forget_acc_gap,
                                  f"forget acc {candidate['forget_acc']:.2f} vs own test acc {candidate['test_acc']:.2f} (no oracle)")
        out["privacy"] = _gate(100 * abs(candidate["mia_auc"] - 0.5), gates.max_mia_gap,
                               f"loss-attack AUC forget vs test {candidate['mia_auc']:.3f} vs chance 0.5 (no oracle)")
    if retrain_seconds and retrain_seconds > 0:
        out["cost"] = _gate(unlearn_seconds / retrain_seconds, gates.max_time_ratio,
                            f"{unlearn_seconds:.1f} s unlearning vs {retrain_seconds:.1f} s retraining")
    else:
        out["cost"] = {"passed": True, "value": None, "threshold": gates.max_time_ratio,
                       "detail": "no retraining time known; not gated"}
    return out


def all_passed(verdicts: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(v["passed"] for v in verdicts.values())
