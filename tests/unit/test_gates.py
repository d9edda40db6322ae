"""The gates on hand-made facts: each reference, each way to fail, and the statements a gate must make."""

import numpy as np
import pytest

from forgetflow import evidence as E
from forgetflow.config import GateParams, validate_params
from forgetflow.errors import ConfigError
from forgetflow.gates import GateInputs, all_passed, evaluate_gates, failed, summary

CHAMP = {"test_acc": 91.0}
ORACLE = {"forget_acc": 90.0, "mia_efficacy": 15.0}


def params(**sections) -> GateParams:
    return GateParams.model_validate(sections)


def evidence(shift: float = 0.0, requests: int = 4, per_request: int = 3, null: int = 2000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ids = [f"s{i:02d}" for i in range(requests * per_request)]
    req = {f"r{j}": ids[j * per_request:(j + 1) * per_request] for j in range(requests)}
    ev = E.assess(rng.normal(size=len(ids)) + shift, ids, req, rng.normal(size=null), E.split_null(null, seed), 0.05,
                  0.01)
    return {**ev.as_dict(), "attack": "lira", "k": 8}


def test_all_pass_with_oracle_and_evidence():
    v = evaluate_gates(GateInputs({"test_acc": 90.5, "forget_acc": 92.0, "mia_efficacy": 10.0}, CHAMP, ORACLE, 3.0,
                                  100.0, "the original's training", evidence()),
                       params(utility={"max_test_acc_drop": 1}, forgetting={"max_forget_acc_gap": 3},
                              privacy={"max_mia_gap": 6}, cost={"max_time_ratio": 0.05}))
    assert all_passed(v) and v["cost"]["value"] == 0.03
    assert v["forgetting"]["reference"] == "evidence+oracle" and len(v["forgetting"]["checks"]) == 2
    assert "0 of 4 request(s) still detectable (lira, K=8" in v["forgetting"]["detail"]
    assert "with 80% power" in v["privacy"]["power"] and "the original's training" in v["cost"]["detail"]


def test_each_gate_can_fail():
    g = params(utility={"max_test_acc_drop": 1}, forgetting={"max_forget_acc_gap": 1}, privacy={"max_mia_gap": 1},
               cost={"max_time_ratio": 0.01})
    v = evaluate_gates(GateInputs({"test_acc": 85.0, "forget_acc": 99.0, "mia_efficacy": 0.0}, CHAMP, ORACLE, 3.0,
                                  100.0), g)
    assert failed(v) == ["utility", "forgetting", "privacy", "cost"]


def test_memorised_requests_fail_the_evidence_gates_without_an_oracle():
    v = evaluate_gates(GateInputs({"test_acc": 91.0, "forget_acc": 90.0}, CHAMP, None, 1.0, 100.0, "", evidence(5.0)),
                       GateParams())
    assert failed(v) == ["forgetting", "privacy"]
    assert v["forgetting"]["reference"] == "evidence" and "4 of 4 request(s) still detectable: r0, r1" in v["forgetting"]["detail"]
    assert "forgetting FAIL (4/4 requests detectable)" in summary(v)


def test_an_oracle_gap_fails_the_gate_even_when_the_evidence_passes():
    v = evaluate_gates(GateInputs({"test_acc": 91.0, "forget_acc": 99.0, "mia_efficacy": 15.0}, CHAMP, ORACLE, 1.0,
                                  100.0, "", evidence()), params(forgetting={"max_forget_acc_gap": 3}))
    checks = {c["name"]: c["passed"] for c in v["forgetting"]["checks"]}
    assert checks == {"requests": True, "forget-acc-vs-oracle": False} and not v["forgetting"]["passed"]


def test_oracle_free_heuristics_when_there_is_neither_evidence_nor_oracle():
    g = params(forgetting={"max_forget_acc_gap": 2}, privacy={"max_mia_gap": 5})
    v = evaluate_gates(GateInputs({"test_acc": 90.0, "forget_acc": 95.0, "mia_auc": 0.56}, CHAMP), g)
    assert v["forgetting"]["reference"] == "test" and not v["forgetting"]["passed"]
    assert "no oracle, no evidence" in v["forgetting"]["detail"]
    assert v["privacy"]["reference"] == "chance" and not v["privacy"]["passed"]


def test_a_gate_that_cannot_fail_says_so():
    # 1 forget sample and a null of 30 (1/31 > α/2): neither the request nor the batch test can reject anything
    rng = np.random.default_rng(0)
    ev = E.assess([0.0], ["a"], {"r": ["a"]}, rng.normal(size=30), E.split_null(30, 0), 0.05, 0.01)
    v = evaluate_gates(GateInputs({"test_acc": 91.0}, CHAMP, None, 1.0, None, "", {**ev.as_dict(), "attack": "lira"}),
                       GateParams())
    for name in ("forgetting", "privacy", "cost"):
        assert v[name]["passed"] and not v[name]["can_fail"]
    assert v["forgetting"]["detail"].startswith("THIS TEST CANNOT FAIL")
    assert "cannot be detected with this null" in v["forgetting"]["power"]
    assert "privacy ok (" in summary(v) and "cannot fail" in summary(v)


def test_switched_off_gates_never_block_and_say_so():
    g = params(utility={"enabled": False}, forgetting={"enabled": False}, privacy={"enabled": False},
               cost={"enabled": False})
    v = evaluate_gates(GateInputs({"test_acc": 10.0, "forget_acc": 99.0}, CHAMP, ORACLE, 99.0, 1.0, "", evidence(9.0)), g)
    assert all_passed(v) and all(not x["enabled"] for x in v.values())
    assert "gates.privacy.enabled: false" in v["privacy"]["detail"] and summary(v).count(" off") == 4


def test_a_named_reference_is_used_alone():
    g = params(forgetting={"reference": "test", "max_forget_acc_gap": 1}, privacy={"reference": "chance", "max_mia_gap": 5})
    v = evaluate_gates(GateInputs({"test_acc": 90.0, "forget_acc": 90.5, "mia_auc": 0.52, "mia_efficacy": 0.0}, CHAMP,
                                  ORACLE, 1.0, 10.0, "", evidence(9.0)), g)
    assert v["forgetting"]["reference"] == "test" and v["forgetting"]["passed"]
    assert v["privacy"]["reference"] == "chance" and v["privacy"]["value"] == 2.0


def test_a_missing_reference_fails_clearly():
    v = evaluate_gates(GateInputs({"test_acc": 90.0, "forget_acc": 90.0}, CHAMP, None, 1.0, 10.0),
                       params(forgetting={"reference": "oracle"}, privacy={"reference": "evidence"}))
    assert not v["forgetting"]["passed"] and "oracle's forget accuracy was not measured" in v["forgetting"]["detail"]
    assert not v["privacy"]["passed"] and "membership evidence was not measured" in v["privacy"]["detail"]


def test_utility_floor():
    v = evaluate_gates(GateInputs({"test_acc": 90.0, "forget_acc": 90.0}, CHAMP, None, 1.0, 100.0, "", evidence()),
                       params(utility={"max_test_acc_drop": 5, "min_test_acc": 95}))
    assert not v["utility"]["passed"] and "NOT met" in v["utility"]["detail"]
    assert failed(v) == ["utility"] and "utility FAIL" in summary(v)


def test_references_must_be_measurable_in_params():
    with pytest.raises(ConfigError, match="gates.privacy.reference is oracle but evaluate.oracle is false"):
        validate_params({"gates": {"privacy": {"reference": "oracle"}}, "evaluate": {"oracle": False}})
    with pytest.raises(ConfigError, match="gates.forgetting.reference is evidence but evidence.enabled is false"):
        validate_params({"gates": {"forgetting": {"reference": "evidence"}}, "evidence": {"enabled": False}})
    with pytest.raises(ConfigError, match="gates.max_time_ratio"):  # the flat layout of before is an error, by name
        validate_params({"gates": {"max_time_ratio": 0.5}})
