"""Promotion gates: the challenger replaces the champion only if every enabled gate passes.

* ``utility`` — test accuracy may drop at most ``max_test_acc_drop`` points below the champion's (and stay
  above ``min_test_acc`` when that floor is set).
* ``forgetting`` — against the oracle: forget accuracy within ``max_forget_acc_gap`` points of the retrained
  oracle's. Without an oracle (``forgetting_reference: test``): forget accuracy may exceed the challenger's own
  test accuracy by at most that much (forgotten samples should look unseen).
* ``privacy`` — against the oracle: SalUn MIA-efficacy within ``max_mia_gap`` points of the oracle's. Without
  an oracle (``privacy_reference: chance``): the loss-threshold attack AUC (forget vs test) within
  ``max_mia_gap`` / 100 of chance (0.5).
* ``cost`` — unlearning wall time at most ``max_time_ratio`` x the retraining time.

Each gate can be switched off in params.yaml; a switched-off gate is reported as such and never blocks.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from forgetflow.config import GateParams

GATES = ("utility", "forgetting", "privacy", "cost")

# What each gate protects, in words a privacy officer can check a verdict against (used by the reports).
MEANING = {
    "utility": "The new model must stay about as accurate on held-out test images as the model it replaces.",
    "forgetting": "On the erased samples the new model should do no better than a model that never saw them; "
                  "doing better would mean it still remembers them.",
    "privacy": "A membership-inference attack (an attacker guessing whether a sample was used in training) must "
               "not find the erased samples more 'member-like' than for a model that never saw them, or than a "
               "coin flip when no such model was trained.",
    "cost": "Unlearning must be clearly cheaper than retraining from scratch; otherwise retraining is the better tool.",
}


def _gate(value: float, threshold: float, detail: str, reference: str, unit: str = "points") -> dict[str, Any]:
    passed = (not math.isnan(value)) and value <= threshold
    return {"passed": bool(passed), "enabled": True, "value": round(float(value), 4), "threshold": threshold,
            "unit": unit, "reference": reference, "detail": detail}


def _off(name: str, threshold: float | None) -> dict[str, Any]:
    return {"passed": True, "enabled": False, "value": None, "threshold": threshold, "unit": "", "reference": "off",
            "detail": f"switched off (gates.{name}: false)"}


def _missing(name: str, what: str, threshold: float) -> dict[str, Any]:
    return {"passed": False, "enabled": True, "value": None, "threshold": threshold, "unit": "", "reference": "oracle",
            "detail": f"{what} was not measured, so the {name} gate cannot pass"}


def resolve_reference(setting: str, have_oracle: bool, oracle_free: str) -> str:
    """``auto`` → ``oracle`` when an oracle was evaluated, else the oracle-free reference."""
    if setting == "auto":
        return "oracle" if have_oracle else oracle_free
    return setting


def evaluate_gates(
    candidate: Mapping[str, float],
    champion: Mapping[str, float],
    oracle: Mapping[str, float] | None,
    unlearn_seconds: float,
    retrain_seconds: float | None,
    gates: GateParams,
) -> dict[str, dict[str, Any]]:
    """Every gate's verdict: passed, whether it is enabled, the measured value, threshold, reference, detail."""
    out: dict[str, dict[str, Any]] = {}

    if not gates.utility:
        out["utility"] = _off("utility", gates.max_test_acc_drop)
    else:
        drop = champion["test_acc"] - candidate["test_acc"]
        verdict = _gate(drop, gates.max_test_acc_drop,
                        f"test acc {candidate['test_acc']:.2f} vs champion {champion['test_acc']:.2f} "
                        f"(drop {drop:.2f} points, at most {gates.max_test_acc_drop} allowed)", "champion")
        if gates.min_test_acc is not None:
            above = candidate["test_acc"] >= gates.min_test_acc
            verdict["passed"] = verdict["passed"] and bool(above)
            verdict["detail"] += f"; floor {gates.min_test_acc:.2f} {'met' if above else 'NOT met'}"
        out["utility"] = verdict

    ref = resolve_reference(gates.forgetting_reference, oracle is not None, "test")
    if not gates.forgetting:
        out["forgetting"] = _off("forgetting", gates.max_forget_acc_gap)
    elif ref == "oracle":
        if oracle is None or "forget_acc" not in oracle:
            out["forgetting"] = _missing("forgetting", "the oracle's forget accuracy", gates.max_forget_acc_gap)
        else:
            out["forgetting"] = _gate(abs(candidate["forget_acc"] - oracle["forget_acc"]), gates.max_forget_acc_gap,
                                      f"forget acc {candidate['forget_acc']:.2f} vs oracle {oracle['forget_acc']:.2f}",
                                      "oracle")
    else:
        out["forgetting"] = _gate(candidate["forget_acc"] - candidate["test_acc"], gates.max_forget_acc_gap,
                                  f"forget acc {candidate['forget_acc']:.2f} vs own test acc {candidate['test_acc']:.2f} "
                                  "(no oracle)", "test")

    ref = resolve_reference(gates.privacy_reference, oracle is not None, "chance")
    if not gates.privacy:
        out["privacy"] = _off("privacy", gates.max_mia_gap)
    elif ref == "oracle":
        if oracle is None or "mia_efficacy" not in oracle:
            out["privacy"] = _missing("privacy", "the oracle's MIA-efficacy", gates.max_mia_gap)
        else:
            out["privacy"] = _gate(abs(candidate["mia_efficacy"] - oracle["mia_efficacy"]), gates.max_mia_gap,
                                   f"MIA-efficacy (SalUn SVC) {candidate['mia_efficacy']:.2f} vs oracle "
                                   f"{oracle['mia_efficacy']:.2f}", "oracle")
    else:
        out["privacy"] = _gate(100 * abs(candidate["mia_auc"] - 0.5), gates.max_mia_gap,
                               f"loss-attack AUC forget vs test {candidate['mia_auc']:.3f} vs chance 0.5 (no oracle)",
                               "chance")

    if not gates.cost:
        out["cost"] = _off("cost", gates.max_time_ratio)
    elif retrain_seconds and retrain_seconds > 0:
        out["cost"] = _gate(unlearn_seconds / retrain_seconds, gates.max_time_ratio,
                            f"{unlearn_seconds:.1f} s unlearning vs {retrain_seconds:.1f} s retraining", "retraining",
                            unit="ratio")
    else:
        out["cost"] = {"passed": True, "enabled": True, "value": None, "threshold": gates.max_time_ratio,
                       "unit": "ratio", "reference": "retraining", "detail": "no retraining time known; not gated"}
    return out


def all_passed(verdicts: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when no enabled gate failed."""
    return all(v["passed"] for v in verdicts.values())


def failed(verdicts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the gates that failed, in gate order."""
    return [name for name, v in verdicts.items() if not v["passed"]]


def summary(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    """One line: ``utility ok (0.4 ≤ 2.0), forgetting FAIL (7.1 > 5.0), privacy off, ...``."""
    parts = []
    for name, v in verdicts.items():
        if not v.get("enabled", True):
            parts.append(f"{name} off")
        elif v["value"] is None:
            parts.append(f"{name} {'ok' if v['passed'] else 'FAIL'} (not measured)")
        else:
            sign = "≤" if v["value"] <= v["threshold"] else ">"
            parts.append(f"{name} {'ok' if v['passed'] else 'FAIL'} ({v['value']:g} {sign} {v['threshold']:g})")
    return ", ".join(parts)
