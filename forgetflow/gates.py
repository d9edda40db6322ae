"""Promotion gates: the challenger replaces the champion only if every enabled gate passes.

Each gate is one registered function, ``fn(inputs, cfg) -> verdict``, with its settings in one section of
params.yaml (``gates.<name>``, typed in ``forgetflow/config.py``); a contract test keeps the registry and the
sections in step. Adding a gate = one function here and one params section.

* ``utility`` — test accuracy may drop at most ``max_test_acc_drop`` points below the champion's (and stay above
  ``min_test_acc`` when that floor is set).
* ``forgetting`` — evidence: no request of the batch is still detectably a member (``forgetflow/evidence.py``:
  Fisher per request, Holm over the batch at ``evidence.alpha``); with an oracle, also forget accuracy within
  ``max_forget_acc_gap`` points of the oracle's.
* ``privacy`` — evidence: the forget set's detected share at ``evidence.fpr`` is not distinguishable from
  never-seen samples' (same Holm family); with an oracle, also SalUn MIA-efficacy within ``max_mia_gap`` points of
  the oracle's.
* ``cost`` — unlearning wall time at most ``max_time_ratio`` x the last recorded full retrain of the serving
  recipe (``forgetflow train``, a retrain batch or an oracle audit), never an oracle trained for the batch.

A verdict says whether its test could fail at all (``can_fail``) and, for the evidence, the smallest effect it
catches (``power``): a gate that cannot fail on a tiny batch says so in its detail instead of passing silently.
A switched-off gate is reported as such and never blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from forgetflow.config import CostGate, ForgettingGate, GateParams, PrivacyGate, UtilityGate
from forgetflow.errors import ConfigError
from forgetflow.registry import Registry

Verdict = dict[str, Any]


@dataclass(frozen=True)
class GateInputs:
    """What the gates judge: the batch's measured facts.

    ``evidence`` is the candidate's membership evidence (``forgetflow.evidence.ModelEvidence.as_dict()`` plus
    ``attack`` and ``k``); ``retrain_seconds`` the last recorded full retrain of the serving recipe and
    ``retrain_source`` where that number comes from, in words.
    """

    candidate: Mapping[str, float]
    champion: Mapping[str, float]
    oracle: Mapping[str, float] | None = None
    unlearn_seconds: float = 0.0
    retrain_seconds: float | None = None
    retrain_source: str = ""
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GateSpec:
    """A registered gate: its function, its order in reports and what it protects in plain words."""

    name: str
    order: int
    meaning: str
    fn: Callable[[GateInputs, Any], Verdict]


GATES: Registry[GateSpec] = Registry("gate")


def register_gate(name: str, order: int, meaning: str) -> Callable[[Callable[[GateInputs, Any], Verdict]],
                                                                   Callable[[GateInputs, Any], Verdict]]:
    """Register ``fn(inputs, cfg)`` as gate ``name``; its settings are ``GateParams.<name>``."""

    def deco(fn: Callable[[GateInputs, Any], Verdict]) -> Callable[[GateInputs, Any], Verdict]:
        GATES.add(name, GateSpec(name, order, meaning, fn))
        return fn

    return deco


def gate_names() -> list[str]:
    """Registered gates in report order."""
    return sorted(GATES.names(), key=lambda n: (GATES.get(n).order, n))


# ---- building blocks of a verdict ---------------------------------------------------------------------
def check(name: str, passed: bool, value: float | None, threshold: float | None, unit: str, short: str,
          detail: str, can_fail: bool = True, power: str | None = None) -> dict[str, Any]:
    """One comparison inside a gate (a gate passes when all its checks pass)."""
    return {"name": name, "passed": bool(passed), "value": None if value is None else round(float(value), 6),
            "threshold": threshold, "unit": unit, "short": short, "detail": detail, "can_fail": bool(can_fail),
            "power": power}


def not_measured(name: str, what: str) -> dict[str, Any]:
    """A check whose input is missing: it fails, and says what is missing."""
    return check(name, False, None, None, "", "not measured", f"{what} was not measured, so this check cannot pass")


def combine_checks(reference: str, checks: list[dict[str, Any]]) -> Verdict:
    """A gate's verdict from its checks: passed when every check passed; the first check's numbers are shown."""
    first = checks[0]
    can_fail = any(c["can_fail"] for c in checks)
    detail = "; ".join(c["detail"] for c in checks)
    if not can_fail:
        detail = "THIS TEST CANNOT FAIL on this batch: " + detail
    return {"passed": all(c["passed"] for c in checks), "enabled": True, "value": first["value"],
            "threshold": first["threshold"], "unit": first["unit"], "reference": reference, "detail": detail,
            "short": ", ".join(c["short"] for c in checks), "can_fail": can_fail,
            "power": "; ".join(c["power"] for c in checks if c["power"]) or None, "checks": checks}


def off(name: str) -> Verdict:
    """The verdict of a switched-off gate."""
    return {"passed": True, "enabled": False, "value": None, "threshold": None, "unit": "", "reference": "off",
            "detail": f"switched off (gates.{name}.enabled: false)", "short": "off", "can_fail": False,
            "power": None, "checks": []}


def _at_most(name: str, value: float, threshold: float, unit: str, detail: str) -> dict[str, Any]:
    passed = (not math.isnan(value)) and value <= threshold
    return check(name, passed, value, threshold, unit, f"{value:g} {'≤' if passed else '>'} {threshold:g}", detail)


# ---- the gates ---------------------------------------------------------------------------------------
@register_gate("utility", 1, "The new model must stay about as accurate on held-out test images as the model it "
                             "replaces.")
def utility(inp: GateInputs, cfg: UtilityGate) -> Verdict:
    """Test accuracy drop against the champion, and the optional absolute floor."""
    if "test_acc" not in inp.candidate or "test_acc" not in inp.champion:
        return combine_checks("champion", [not_measured("test-acc-drop", "test accuracy")])
    new, old = float(inp.candidate["test_acc"]), float(inp.champion["test_acc"])
    checks = [_at_most("test-acc-drop", old - new, cfg.max_test_acc_drop, "points",
                       f"test acc {new:.2f} vs champion {old:.2f} (drop {old - new:.2f} points, at most "
                       f"{cfg.max_test_acc_drop:g} allowed)")]
    if cfg.min_test_acc is not None:
        met = new >= cfg.min_test_acc
        checks.append(check("test-acc-floor", met, new, cfg.min_test_acc, "%", f"floor {cfg.min_test_acc:g} "
                            f"{'met' if met else 'NOT met'}", f"floor {cfg.min_test_acc:.2f} {'met' if met else 'NOT met'}"))
    return combine_checks("champion", checks)


def _gap_to_oracle(inp: GateInputs, name: str, metric: str, label: str, missing: str, limit: float) -> dict[str, Any]:
    """|candidate − oracle| on ``metric`` at most ``limit`` points; not measured when either value is absent."""
    if inp.oracle is None or metric not in inp.oracle or metric not in inp.candidate:
        return not_measured(name, missing)
    new, ref = float(inp.candidate[metric]), float(inp.oracle[metric])
    return _at_most(name, abs(new - ref), limit, "points", f"{label} {new:.2f} vs oracle {ref:.2f}")


@register_gate("forgetting", 2, "No erasure request may still be detectable: a per-sample membership attack, "
                                "calibrated with reference models, must not find this person's samples more "
                                "'member-like' than images the model never saw.")
def forgetting(inp: GateInputs, cfg: ForgettingGate) -> Verdict:
    """Evidence per request (and the forget accuracy against the oracle's when one ran)."""
    checks: list[dict[str, Any]] = []
    use = _references(cfg.reference, inp, "test")
    if "evidence" in use:
        checks.append(_requests_check(inp.evidence) if inp.evidence else not_measured("requests", "membership evidence"))
    if "oracle" in use:
        checks.append(_gap_to_oracle(inp, "forget-acc-vs-oracle", "forget_acc", "forget acc", "the oracle's forget accuracy",
                                     cfg.max_forget_acc_gap))
    if "test" in use:
        if "forget_acc" not in inp.candidate or "test_acc" not in inp.candidate:
            checks.append(not_measured("forget-vs-test-acc", "forget and test accuracy"))
        else:
            f, t = float(inp.candidate["forget_acc"]), float(inp.candidate["test_acc"])
            checks.append(_at_most("forget-vs-test-acc", f - t, cfg.max_forget_acc_gap, "points",
                                   f"forget acc {f:.2f} vs own test acc {t:.2f} (no oracle, no evidence)"))
    return combine_checks("+".join(use), checks)


@register_gate("privacy", 3, "The erased samples as a group must not be distinguishable from images the model never "
                             "saw: a membership-inference attack (an attacker guessing whether a sample was used in "
                             "training) may not detect them more often than it wrongly flags never-seen images.")
def privacy(inp: GateInputs, cfg: PrivacyGate) -> Verdict:
    """The batch-level share test (and SalUn MIA-efficacy against the oracle's when one ran)."""
    checks: list[dict[str, Any]] = []
    use = _references(cfg.reference, inp, "chance")
    if "evidence" in use:
        checks.append(_batch_check(inp.evidence) if inp.evidence else not_measured("forget-share", "membership evidence"))
    if "oracle" in use:
        checks.append(_gap_to_oracle(inp, "mia-efficacy-vs-oracle", "mia_efficacy", "MIA-efficacy (SalUn SVC)",
                                     "the oracle's MIA-efficacy", cfg.max_mia_gap))
    if "chance" in use:
        if "mia_auc" not in inp.candidate:
            checks.append(not_measured("loss-auc-vs-chance", "the loss-attack AUC"))
        else:
            auc = float(inp.candidate["mia_auc"])
            checks.append(_at_most("loss-auc-vs-chance", 100 * abs(auc - 0.5), cfg.max_mia_gap, "points",
                                   f"loss-attack AUC forget vs test {auc:.3f} vs chance 0.5 (no oracle, no evidence)"))
    return combine_checks("+".join(use), checks)


@register_gate("cost", 4, "Unlearning must be clearly cheaper than retraining from scratch; otherwise retraining is "
                          "the better tool.")
def cost(inp: GateInputs, cfg: CostGate) -> Verdict:
    """Unlearning time over the last recorded full retrain's."""
    source = inp.retrain_source or "the last recorded full retrain"
    if not inp.retrain_seconds or inp.retrain_seconds <= 0:
        return combine_checks("retraining", [check(
            "time-ratio", True, None, cfg.max_time_ratio, "ratio", "no retrain time recorded",
            "no full retrain time is recorded (forgetflow train, a retrain batch or an oracle audit records one): "
            "not gated", can_fail=False)])
    ratio = inp.unlearn_seconds / inp.retrain_seconds
    return combine_checks("retraining", [_at_most("time-ratio", ratio, cfg.max_time_ratio, "ratio",
                                                  f"{inp.unlearn_seconds:.1f} s unlearning vs {inp.retrain_seconds:.1f} s "
                                                  f"for {source}")])


def _references(setting: str, inp: GateInputs, fallback: str) -> list[str]:
    """Which yardsticks a forgetting/privacy gate uses: ``auto`` = the evidence, plus the oracle when one ran,
    else the oracle-free ``fallback`` heuristic."""
    if setting != "auto":
        return [setting]
    use = (["evidence"] if inp.evidence is not None else []) + (["oracle"] if inp.oracle is not None else [])
    return use or [fallback]


def _attack(ev: Mapping[str, Any]) -> str:
    parts = [str(ev.get("attack") or "attack")]
    if ev.get("k") is not None:
        parts.append(f"K={ev['k']}")
    return ", ".join(parts)


def _requests_check(ev: Mapping[str, Any]) -> dict[str, Any]:
    requests = ev.get("requests") or []
    detectable = [r["request_id"] for r in requests if r["verdict"] == "still detectable"]
    can_fail = any(r.get("can_fail", True) for r in requests)
    sizes = sorted({(r["samples"], r.get("max_detectable_sample_p")) for r in requests})
    power = "; ".join(f"{n} sample(s): caught when every p ≤ {q:.3g}" if q is not None else
                      f"{n} sample(s): cannot be detected with this null" for n, q in sizes[:4])
    names = f": {', '.join(detectable[:5])}{' ...' if len(detectable) > 5 else ''}" if detectable else ""
    detail = (f"{len(detectable)} of {len(requests)} request(s) still detectable{names} ({_attack(ev)}; Fisher per "
              f"request, Holm at α = {ev['alpha']:g} over {ev['family_size']} tests)")
    return check("requests", not detectable, len(detectable), 0, "requests",
                 f"{len(detectable)}/{len(requests)} requests detectable", detail, can_fail, power)


def _batch_check(ev: Mapping[str, Any]) -> dict[str, Any]:
    b = ev["batch"]
    floor = b["floor"]
    pct = lambda x: "—" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    oracle = ev.get("oracle_share")
    detail = (f"{pct(b['share'])} of {b['samples']} forget sample(s) detected at {ev['fpr']:.0%} FPR "
              f"[{pct(b['ci'][0])}, {pct(b['ci'][1])}] vs {pct(floor['share'])} of {floor['samples']} never-seen "
              f"[{pct(floor['ci'][0])}, {pct(floor['ci'][1])}]"
              + (f", oracle {pct(oracle)}" if oracle is not None else "")
              + f"; p = {b['p_value']:.3g}, Holm-adjusted {b['adjusted_p']:.3g} "
              f"{'≤' if b['distinguishable'] else '>'} α = {ev['alpha']:g} ({_attack(ev)})")
    smallest = b.get("min_detectable_share")
    power = (f"catches a detected share ≥ {pct(smallest)} with {ev['power']:.0%} power" if smallest is not None
             else f"cannot reach {ev['power']:.0%} power with {b['samples']} sample(s)")
    return check("forget-share", not b["distinguishable"], b["adjusted_p"], ev["alpha"], "adjusted p",
                 f"p {b['adjusted_p']:.3g} {'≤' if b['distinguishable'] else '>'} α {ev['alpha']:g}", detail,
                 bool(b.get("can_fail", True)), power)


# ---- the whole set ----------------------------------------------------------------------------------
def evaluate_gates(inputs: GateInputs, params: GateParams) -> dict[str, Verdict]:
    """Every registered gate's verdict, in report order; a switched-off gate is reported as ``off``."""
    out: dict[str, Verdict] = {}
    for name in gate_names():
        cfg = getattr(params, name, None)
        if cfg is None:
            raise ConfigError(f"gate {name!r} is registered but params has no gates.{name} section")
        out[name] = GATES.get(name).fn(inputs, cfg) if cfg.enabled else off(name)
    return out


def all_passed(verdicts: Mapping[str, Mapping[str, Any]]) -> bool:
    """True when no enabled gate failed."""
    return all(v["passed"] for v in verdicts.values())


def failed(verdicts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the gates that failed, in gate order."""
    return [name for name, v in verdicts.items() if not v["passed"]]


def summary(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    """One line: ``utility ok (0.4 ≤ 2), forgetting FAIL (1/3 requests detectable), privacy off, ...``."""
    parts = []
    for name, v in verdicts.items():
        if not v.get("enabled", True):
            parts.append(f"{name} off")
        else:
            note = "" if v.get("can_fail", True) else ", cannot fail"
            parts.append(f"{name} {'ok' if v['passed'] else 'FAIL'} ({v.get('short', '')}{note})")
    return ", ".join(parts)


MEANING = {name: GATES.get(name).meaning for name in gate_names()}
