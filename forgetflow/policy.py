"""Decisions a deletion batch takes, as pure functions of measured facts and params.yaml.

* :func:`decide` — before unlearning: unlearn, or retrain from scratch on the retain set (exact)?
* :func:`escalate` — the membership evidence found leftover membership: unlearn again, harder?
* :func:`after_gate_failure` — the unlearned model failed the gates: retrain instead?
* :func:`plan_promotion` — promote now, wait for a person, or keep the champion?
* :func:`audit_verdict` — an oracle audit: has the champion drifted from a fresh retrain?

Every decision carries its rule, a reason in plain words (it goes into the receipts and the report) and the
numbers it was taken on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from forgetflow.config import AuditParams, RetrainParams

UNLEARN = "unlearn"
RETRAIN = "retrain"
# The ledger's quality metric of every full retrain of the serving recipe (``forgetflow train``, retrain batches,
# oracle audits): the cost gate's yardstick.
FULL_RETRAIN_METRIC = "full_retrain_seconds"
EVIDENCE_GATES = ("forgetting", "privacy")


@dataclass
class Decision:
    """Unlearn or retrain, the rule that decided, why (plain words), and the measures behind it."""

    action: str
    rule: str
    reason: str
    measures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Facts:
    """What the batch measured before unlearning (collected by ``tasks/decision.py``)."""

    champion_version: str
    held_batches: list[str]  # erasures whose data the champion still holds
    root_version: str | None  # the last full (re)training in the champion's lineage
    root_train_samples: int | None
    erased_since_root: int  # earlier batches' samples the root still learned from
    batch_samples: int  # this batch's forget set
    champion_test_acc: float | None
    reference_test_acc: float | None  # the most recent full retrain's (lineage root or oracle audit)
    reference: str = ""  # where the reference comes from, in words
    # predicted before unlearning from the methods' budgets at a measured speed (pipeline.cost_estimate)
    predicted_unlearn_seconds: float | None = None
    predicted_retrain_seconds: float | None = None

    @property
    def forgotten_fraction(self) -> float | None:
        if not self.root_train_samples:
            return None
        return (self.erased_since_root + self.batch_samples) / self.root_train_samples

    @property
    def quality_drift(self) -> float | None:
        if self.champion_test_acc is None or self.reference_test_acc is None:
            return None
        return self.reference_test_acc - self.champion_test_acc

    def measures(self) -> dict[str, Any]:
        fraction, drift = self.forgotten_fraction, self.quality_drift
        return {"champion_version": self.champion_version, "held_batches": list(self.held_batches),
                "last_full_retrain_version": self.root_version, "last_full_retrain_samples": self.root_train_samples,
                "erased_since_last_retrain": self.erased_since_root + self.batch_samples,
                "forgotten_fraction": None if fraction is None else round(fraction, 6),
                "champion_test_acc": self.champion_test_acc, "reference_test_acc": self.reference_test_acc,
                "quality_reference": self.reference,
                "quality_drift": None if drift is None else round(drift, 4),
                "predicted_unlearn_seconds": _round(self.predicted_unlearn_seconds),
                "predicted_retrain_seconds": _round(self.predicted_retrain_seconds)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def decide(params: RetrainParams, facts: Facts, forced: str | None = None) -> Decision:
    """Unlearn, or retrain from scratch? First matching rule wins: forced, lineage, cost, forgotten fraction, drift."""
    m = facts.measures()
    if forced == RETRAIN:
        return Decision(RETRAIN, "forced", "An operator asked for a retrain from scratch for this batch.", m)
    if forced == UNLEARN:
        return Decision(UNLEARN, "forced", "An operator asked for unlearning for this batch, whatever the policy says.", m)
    if facts.held_batches:
        held = ", ".join(facts.held_batches[:3]) + (" ..." if len(facts.held_batches) > 3 else "")
        return Decision(RETRAIN, "lineage",
                        f"The serving model (version {facts.champion_version}) still holds data that earlier batches "
                        f"erased ({held}): their unlearned models were not promoted. Those samples are already "
                        "deleted, so they cannot be unlearned any more; the model is retrained from scratch "
                        "without them.", m)
    unlearn_s, retrain_s = facts.predicted_unlearn_seconds, facts.predicted_retrain_seconds
    if unlearn_s is not None and retrain_s is not None and unlearn_s >= retrain_s:
        return Decision(RETRAIN, "cost",
                        f"Unlearning this batch is predicted to take {unlearn_s:.1f} s, no less than retraining from "
                        f"scratch ({retrain_s:.1f} s), from the methods' step budgets at the model's measured speed: "
                        "the exact retrain costs no more, so the model is retrained.", m)
    fraction = facts.forgotten_fraction
    limit = params.max_forgotten_fraction
    if limit is not None and fraction is not None and fraction > limit:
        return Decision(RETRAIN, "forgotten-fraction",
                        f"{fraction:.1%} of the {facts.root_train_samples} training samples of the last full "
                        f"retrain (version {facts.root_version}) are now erased, this batch included: more than the "
                        f"{limit:.1%} allowed (retrain.max_forgotten_fraction). Approximate unlearning errors add up "
                        "over batches, so the model is retrained from scratch.", m)
    drift = facts.quality_drift
    if params.max_quality_drift is not None and drift is not None and drift > params.max_quality_drift:
        return Decision(RETRAIN, "quality-drift",
                        f"The serving model's test accuracy ({facts.champion_test_acc:.2f} %) trails {facts.reference} "
                        f"({facts.reference_test_acc:.2f} %) by {drift:.2f} points, more than the "
                        f"{params.max_quality_drift:g} allowed (retrain.max_quality_drift): the model is retrained "
                        "from scratch.", m)
    parts = []
    if fraction is not None:
        parts.append(f"{fraction:.2%} of the last full retrain's training samples erased"
                     + (f" (limit {limit:.1%})" if limit is not None else ""))
    if drift is not None:
        parts.append(f"quality drift {drift:.2f} points"
                     + (f" (limit {params.max_quality_drift:g})" if params.max_quality_drift is not None else ""))
    if unlearn_s is not None and retrain_s is not None:
        parts.append(f"unlearning predicted at {unlearn_s:.1f} s against {retrain_s:.1f} s to retrain")
    parts.append("the serving model holds no data of earlier erasures")
    return Decision(UNLEARN, "within-limits", "Unlearning suffices: " + "; ".join(parts) + ".", m)


def escalate(factor: float | None, first: Decision, gates: Mapping[str, Mapping[str, Any]],
             phases: Sequence[Mapping[str, Any]], version: str) -> tuple[Decision, dict[str, dict[str, Any]]] | None:
    """The unlearned model still shows membership: unlearn again with a larger budget of the same method(s)?

    Escalation happens once, only when the failed gates are the evidence gates (forgetting, privacy) and at
    least one of their *evidence* checks failed: a failed utility or cost gate would only get worse with a
    larger budget, so those go straight to a retrain. The budget is each phase's budget settings times ``factor``
    (``_scaled_budget``: ``forget_passes`` with its ``min_steps`` floor and ``max_steps`` cap, or ``epochs``);
    a method without one (SSD) cannot be escalated.

    Returns:
        (the escalation decision, per-method config overrides), or None when there is nothing to escalate.
    """
    failed = [name for name, v in gates.items() if not v.get("passed", True)]
    if factor is None or first.action != UNLEARN or first.rule == "escalation" or not failed:
        return None
    if any(name not in EVIDENCE_GATES for name in failed):
        return None
    evidence_failed = [c for name in failed for c in gates[name].get("checks", [])
                       if c["name"] in ("requests", "forget-share") and not c["passed"]]
    if not evidence_failed:
        return None
    overrides: dict[str, dict[str, Any]] = {}
    changes = []
    for phase in phases:
        stronger = _scaled_budget(phase.get("config") or {}, factor)
        if not stronger:
            return None
        overrides[phase["method"]] = {key: new for key, (_, new) in stronger.items()}
        changes.append(f"{phase['method']} " + ", ".join(f"{key} {old:g} → {new:g}" for key, (old, new) in stronger.items()))
    why = "; ".join(c["detail"] for c in evidence_failed)
    measures = {**first.measures, "failed_gates": failed, "rejected_version": version, "escalation_factor": factor,
                "escalated_budget": overrides}
    return Decision(UNLEARN, "escalation",
                    f"The membership evidence found leftover membership after unlearning (version {version}): {why}. "
                    f"The batch unlearned again from the serving model with {factor:g}x the budget "
                    f"({', '.join(changes)}; evidence.escalation_budget) before considering a retrain. "
                    f"(Before unlearning: {first.reason})", measures), overrides


BUDGET_KEYS = ("forget_passes", "min_steps", "max_steps")  # the step budget of forgetflow.methods.common


def _scaled_budget(config: Mapping[str, Any], factor: float) -> dict[str, tuple[float, float]]:
    """``{setting: (old, new)}``: a phase's budget settings times ``factor``; empty when it has none.

    Methods that count their work in passes over the forget set (``forget_passes``, most of them) scale it, and
    their ``min_steps`` floor and ``max_steps`` cap with it, so that a small batch, which runs at the floor,
    really gets ``factor`` times the steps. Methods that count epochs (SCRUB) scale ``epochs``. Whole-number
    settings are rounded up.
    """
    keys = BUDGET_KEYS if "forget_passes" in config else ("epochs",)
    out: dict[str, tuple[float, float]] = {}
    for key in keys:
        value = config.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = (value, math.ceil(value * factor) if isinstance(value, int) else round(float(value) * factor, 6))
    return out if any(k in out for k in ("forget_passes", "epochs")) else {}


def after_gate_failure(params: RetrainParams, first: Decision, failed_gates: Sequence[str],
                       version: str) -> Decision | None:
    """The unlearned model failed ``failed_gates``: the retrain decision, or None when policy says keep it."""
    if not failed_gates or first.action != UNLEARN or not params.on_gate_failure:
        return None
    measures = {**first.measures, "failed_gates": list(failed_gates), "rejected_version": version}
    return Decision(RETRAIN, "gate-failure",
                    f"The unlearned model (version {version}) failed the {', '.join(failed_gates)} gate(s) and "
                    "retrain.on_gate_failure is on, so the batch retrained from scratch without the erased samples "
                    f"instead. (Before that: {first.reason})", measures)


def plan_promotion(approval: str, gates_passed: bool, exact: bool, version: str,
                   failed_gates: Sequence[str] = ()) -> dict[str, Any]:
    """``promote``, ``await-approval`` or ``keep-champion``, with the reason in words.

    A retrained model (``exact``) never saw the erased samples: the gates are kept for information but do not
    block it, because the alternative is a champion that holds erased data.
    """
    if approval == "manual" and (gates_passed or exact):
        return {"action": "await-approval", "version": version,
                "reason": f"promotion.approval is manual: version {version} waits for a person "
                          f"(`forgetflow promote {version} --reason ...` or the promotion flow)."}
    if exact:
        note = "" if gates_passed else f" (gates {', '.join(failed_gates)} failed; informational for an exact retrain)"
        return {"action": "promote", "version": version,
                "reason": f"Version {version} was retrained from scratch without the erased samples: it is exact and "
                          f"replaces the champion{note}."}
    if gates_passed:
        return {"action": "promote", "version": version, "reason": f"Version {version} passed every enabled gate."}
    return {"action": "keep-champion", "version": version,
            "reason": f"Version {version} failed the {', '.join(failed_gates)} gate(s): the champion stays. It still "
                      "holds the samples this batch erased until a retrain replaces it; a person may promote "
                      f"version {version} anyway with `forgetflow promote {version} --override --reason ...`."}


def audit_verdict(params: AuditParams, retrain_test_acc: float, champion_test_acc: float,
                  held_batches: Sequence[str], champion_version: str) -> dict[str, Any]:
    """Whether an oracle audit found drift (or erased data in the champion) and what it does about it."""
    gap = retrain_test_acc - champion_test_acc
    drifted = gap > params.max_test_acc_gap
    reasons = []
    if drifted:
        reasons.append(f"the champion (version {champion_version}) trails a fresh retrain by {gap:.2f} points of test "
                       f"accuracy, more than the {params.max_test_acc_gap:g} allowed (audit.max_test_acc_gap)")
    if held_batches:
        reasons.append(f"the champion still holds data erased by {', '.join(held_batches[:3])}")
    replace = bool(reasons) and params.replace
    if not reasons:
        text = (f"No drift: the champion (version {champion_version}) is within {params.max_test_acc_gap:g} points of "
                f"a fresh retrain ({gap:+.2f}) and holds no erased data.")
    else:
        text = "; ".join(reasons).capitalize() + (
            ". The retrained model replaces it." if replace else ". audit.replace is off: nothing replaced.")
    return {"test_acc_gap": round(gap, 4), "drifted": drifted, "held_batches": list(held_batches),
            "replace": replace, "reason": text}
