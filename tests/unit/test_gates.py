from forgetflow.config import GateParams
from forgetflow.gates import all_passed, evaluate_gates

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
