"""The unlearn-or-retrain rules, the promotion plan and the audit verdict, on hand-made facts."""

from forgetflow.config import AuditParams, RetrainParams
from forgetflow.policy import Facts, after_gate_failure, audit_verdict, decide, plan_promotion


def facts(**kw) -> Facts:
    base = dict(champion_version="3", held_batches=[], root_version="1", root_train_samples=1000, erased_since_root=20,
                batch_samples=10, champion_test_acc=90.0, reference_test_acc=91.0, reference="the original's")
    base.update(kw)
    return Facts(**base)


def test_within_limits_unlearns_and_says_why():
    d = decide(RetrainParams(max_forgotten_fraction=0.1, max_quality_drift=3.0), facts())
    assert (d.action, d.rule) == ("unlearn", "within-limits")
    assert "3.00%" in d.reason and d.measures["forgotten_fraction"] == 0.03 and d.measures["quality_drift"] == 1.0


def test_forgotten_fraction_over_the_limit_retrains():
    d = decide(RetrainParams(max_forgotten_fraction=0.02), facts())
    assert (d.action, d.rule) == ("retrain", "forgotten-fraction")
    assert "retrain.max_forgotten_fraction" in d.reason and "version 1" in d.reason


def test_quality_drift_over_the_limit_retrains():
    d = decide(RetrainParams(max_quality_drift=0.5), facts())
    assert (d.action, d.rule) == ("retrain", "quality-drift") and "1.00 points" in d.reason


def test_null_limits_never_trigger():
    d = decide(RetrainParams(max_forgotten_fraction=None, max_quality_drift=None), facts(erased_since_root=999))
    assert d.action == "unlearn"


def test_a_champion_holding_erased_data_forces_a_retrain_before_any_limit():
    d = decide(RetrainParams(max_forgotten_fraction=0.9), facts(held_batches=["b1"]))
    assert (d.action, d.rule) == ("retrain", "lineage") and "b1" in d.reason


def test_forced_actions():
    assert decide(RetrainParams(), facts(), forced="retrain").rule == "forced"
    assert decide(RetrainParams(max_forgotten_fraction=0.01), facts(), forced="unlearn").action == "unlearn"


def test_gate_failure_turns_into_a_retrain_only_when_configured():
    first = decide(RetrainParams(), facts())
    retry = after_gate_failure(RetrainParams(on_gate_failure=True), first, ["privacy"], "4")
    assert retry.action == "retrain" and retry.rule == "gate-failure" and "version 4" in retry.reason
    assert retry.measures["failed_gates"] == ["privacy"]
    assert after_gate_failure(RetrainParams(on_gate_failure=False), first, ["privacy"], "4") is None
    assert after_gate_failure(RetrainParams(), first, [], "4") is None


def test_promotion_plan():
    assert plan_promotion("auto", True, False, "5")["action"] == "promote"
    assert plan_promotion("auto", False, False, "5", ["utility"])["action"] == "keep-champion"
    assert plan_promotion("auto", False, True, "5", ["cost"])["action"] == "promote"  # exact retrain
    waiting = plan_promotion("manual", True, False, "5")
    assert waiting["action"] == "await-approval" and "forgetflow promote 5" in waiting["reason"]
    assert plan_promotion("manual", False, False, "5", ["utility"])["action"] == "keep-champion"


def test_audit_verdict():
    ok = audit_verdict(AuditParams(max_test_acc_gap=2.0), 91.0, 90.0, [], "3")
    assert not ok["drifted"] and not ok["replace"] and "No drift" in ok["reason"]
    drifted = audit_verdict(AuditParams(max_test_acc_gap=0.5), 91.0, 90.0, [], "3")
    assert drifted["drifted"] and drifted["replace"] and drifted["test_acc_gap"] == 1.0
    held = audit_verdict(AuditParams(replace=False), 90.0, 90.0, ["b2"], "3")
    assert held["replace"] is False and "b2" in held["reason"] and "audit.replace is off" in held["reason"]


def _gates(**failed_checks):
    """Gate verdicts where the named gates failed on the named checks."""
    out = {}
    for name in ("utility", "forgetting", "privacy", "cost"):
        checks = failed_checks.get(name)
        out[name] = {"passed": not checks, "checks": [{"name": c, "passed": False, "detail": f"{c} failed"}
                                                      for c in (checks or [])]}
    return out


PHASES = [{"method": "rem", "config": {"forget_passes": 30.0, "rounds": 5}},
          {"method": "aru", "config": {"forget_passes": 1.0, "min_steps": 20, "max_steps": None}}]


def test_evidence_failure_escalates_the_budget_once_and_says_why():
    from forgetflow.policy import escalate

    first = decide(RetrainParams(), facts())
    escalated = escalate(2.0, first, _gates(forgetting=["requests"]), PHASES, "4")
    assert escalated is not None
    decision, overrides = escalated
    assert (decision.action, decision.rule) == ("unlearn", "escalation")
    # the floor scales with the passes (a small batch runs at the floor); rounds and an unset cap stay
    assert overrides == {"rem": {"forget_passes": 60.0}, "aru": {"forget_passes": 2.0, "min_steps": 40}}
    assert "requests failed" in decision.reason and "version 4" in decision.reason
    assert "rem forget_passes 30 → 60" in decision.reason and "aru forget_passes 1 → 2, min_steps 20 → 40" in decision.reason
    assert decision.measures["failed_gates"] == ["forgetting"]
    assert escalate(2.0, decision, _gates(forgetting=["requests"]), PHASES, "5") is None  # only once
    # and then a failure retrains, naming the escalation in its reason
    retry = after_gate_failure(RetrainParams(), decision, ["forgetting"], "5")
    assert retry.action == "retrain" and "escalation" in retry.reason.lower()


def test_no_escalation_when_a_larger_budget_cannot_help_or_is_off():
    from forgetflow.policy import escalate

    first = decide(RetrainParams(), facts())
    assert escalate(2.0, first, _gates(forgetting=["requests"], utility=["test-acc-drop"]), PHASES, "4") is None
    assert escalate(2.0, first, _gates(forgetting=["forget-acc-vs-oracle"]), PHASES, "4") is None  # not the evidence
    assert escalate(None, first, _gates(privacy=["forget-share"]), PHASES, "4") is None  # switched off
    assert escalate(2.0, first, _gates(privacy=["forget-share"]), [{"method": "ssd", "config": {"alpha": 10.0}}],
                    "4") is None
    scrub = escalate(1.5, first, _gates(privacy=["forget-share"]), [{"method": "scrub", "config": {"epochs": 3}}], "4")
    assert scrub is not None and scrub[1] == {"scrub": {"epochs": 5}}  # epoch methods: whole epochs, rounded up
    assert escalate(2.0, first, _gates(), PHASES, "4") is None  # nothing failed
    assert escalate(2.0, decide(RetrainParams(), facts(), forced="retrain"), _gates(privacy=["forget-share"]),
                    PHASES, "4") is None


def test_a_predicted_unlearning_no_cheaper_than_retraining_retrains():
    d = decide(RetrainParams(), facts(predicted_unlearn_seconds=50.0, predicted_retrain_seconds=40.0))
    assert (d.action, d.rule) == ("retrain", "cost") and "50.0 s" in d.reason and "40.0 s" in d.reason
    cheap = decide(RetrainParams(), facts(predicted_unlearn_seconds=4.0, predicted_retrain_seconds=40.0))
    assert cheap.action == "unlearn" and "predicted at 4.0 s" in cheap.reason
    assert cheap.measures["predicted_retrain_seconds"] == 40.0
