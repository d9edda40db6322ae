from forgetflow.config import GateParams
from forgetflow.gates import all_passed, evaluate_gates, failed, summary

CHAMP = {"test_acc": 91.0}
ORACLE = {"forget_acc": 90.0, "mia_efficacy": 15.0}


def test_all_pass_with_oracle():
    v = evaluate_gates({"test_acc": 90.5, "forget_acc": 92.0, "mia_efficacy": 10.0}, CHAMP, ORACLE, 3.0, 100.0,
                       GateParams(max_test_acc_drop=1, max_forget_acc_gap=3, max_mia_gap=6, max_time_ratio=0.05))
    assert all_passed(v) and v["cost"]["value"] == 0.03


def test_each_gate_can_fail():
    g = GateParams(max_test_acc_drop=1, max_forget_acc_gap=1, max_mia_gap=1, max_time_ratio=0.01)
    v = evaluate_gates({"test_acc": 85.0, "forget_acc": 99.0, "mia_efficacy": 0.0}, CHAMP, ORACLE, 3.0, 100.0, g)
    assert {k for k, x in v.items() if not x["passed"]} == {"utility", "forgetting", "privacy", "cost"}


def test_oracle_free_gates():
    g = GateParams(max_forget_acc_gap=2, max_mia_gap=5)
    v = evaluate_gates({"test_acc": 90.0, "forget_acc": 95.0, "mia_auc": 0.56}, CHAMP, None, 1.0, None, g)
    assert not v["forgetting"]["passed"] and "no oracle" in v["forgetting"]["detail"]
    assert not v["privacy"]["passed"] and v["cost"]["passed"]


def test_switched_off_gates_never_block_and_say_so():
    g = GateParams(utility=False, forgetting=False, privacy=False, cost=False)
    v = evaluate_gates({"test_acc": 10.0, "forget_acc": 99.0, "mia_efficacy": 0.0}, CHAMP, ORACLE, 99.0, 1.0, g)
    assert all_passed(v) and all(not x["enabled"] for x in v.values())
    assert "gates.privacy: false" in v["privacy"]["detail"]


def test_oracle_free_references_can_be_chosen_with_an_oracle():
    g = GateParams(forgetting_reference="test", privacy_reference="chance", max_forget_acc_gap=1, max_mia_gap=5)
    v = evaluate_gates({"test_acc": 90.0, "forget_acc": 90.5, "mia_auc": 0.52, "mia_efficacy": 0.0}, CHAMP, ORACLE,
                       1.0, 10.0, g)
    assert v["forgetting"]["reference"] == "test" and v["forgetting"]["passed"]
    assert v["privacy"]["reference"] == "chance" and v["privacy"]["value"] == 2.0


def test_oracle_reference_without_oracle_metrics_fails_clearly():
    v = evaluate_gates({"test_acc": 90.0, "forget_acc": 90.0, "mia_auc": 0.5}, CHAMP, None, 1.0, 10.0,
                       GateParams(forgetting_reference="oracle"))
    assert not v["forgetting"]["passed"] and "not measured" in v["forgetting"]["detail"]


def test_utility_floor():
    g = GateParams(max_test_acc_drop=5, min_test_acc=95)
    v = evaluate_gates({"test_acc": 90.0, "forget_acc": 90.0, "mia_efficacy": 15.0}, CHAMP, ORACLE, 1.0, 100.0, g)
    assert not v["utility"]["passed"] and "NOT met" in v["utility"]["detail"]
    assert failed(v) == ["utility"] and "utility FAIL" in summary(v)


def test_a_gate_that_needs_an_oracle_needs_one_in_params():
    import pytest

    from forgetflow.config import validate_params
    from forgetflow.errors import ConfigError

    with pytest.raises(ConfigError, match="gates.privacy_reference is oracle but evaluate.oracle is false"):
        validate_params({"gates": {"privacy_reference": "oracle"}, "evaluate": {"oracle": False}})
