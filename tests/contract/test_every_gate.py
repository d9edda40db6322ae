"""Every registered gate, checked the same way (the registry is the test list).

For each gate: params.yaml has its section (and no section exists without a gate); switched off it passes and
says so; on a hopeless candidate it fails; on a clean one it passes; its verdict carries the fields the
receipts, the report and the promotion re-check read.
"""

from __future__ import annotations

import numpy as np
import pytest

from forgetflow import evidence as E
from forgetflow.config import GateParams, Params
from forgetflow.gates import GATES, GateInputs, evaluate_gates, gate_names

EXPECTED_AT_LEAST = 4  # guard: utility, forgetting, privacy, cost
VERDICT_KEYS = {"passed", "enabled", "value", "threshold", "unit", "reference", "detail", "short", "can_fail", "power",
                "checks"}


def _evidence(shift: float) -> dict:
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(30)]
    ev = E.assess(rng.normal(size=30) + shift, ids, {f"r{j}": ids[3 * j:3 * j + 3] for j in range(10)},
                  rng.normal(size=2000), E.split_null(2000, 0), 0.05, 0.01)
    return {**ev.as_dict(), "attack": "lira", "k": 4}


CLEAN = GateInputs({"test_acc": 90.0, "forget_acc": 90.0, "mia_efficacy": 15.0, "mia_auc": 0.5}, {"test_acc": 90.0},
                   {"forget_acc": 90.0, "mia_efficacy": 15.0}, 1.0, 100.0, "a retrain", _evidence(0.0))
HOPELESS = GateInputs({"test_acc": 10.0, "forget_acc": 100.0, "mia_efficacy": 0.0, "mia_auc": 1.0}, {"test_acc": 90.0},
                      {"forget_acc": 80.0, "mia_efficacy": 20.0}, 1000.0, 1.0, "a retrain", _evidence(8.0))


def test_registry_guard_and_params_sections_match():
    assert len(GATES) >= EXPECTED_AT_LEAST
    assert set(gate_names()) == set(GateParams.model_fields)
    assert "gates" in Params.model_fields


@pytest.mark.parametrize("name", gate_names())
def test_gate_contract(name):
    spec = GATES.get(name)
    assert spec.meaning and spec.fn.__doc__, f"gate {name} needs a meaning and a docstring"
    switched_off = GateParams.model_validate({name: {"enabled": False}})
    v = evaluate_gates(HOPELESS, switched_off)[name]
    assert v["passed"] and not v["enabled"] and f"gates.{name}.enabled: false" in v["detail"]
    for inputs, should_pass in ((CLEAN, True), (HOPELESS, False)):
        v = evaluate_gates(inputs, GateParams())[name]
        assert VERDICT_KEYS <= set(v), f"gate {name}: verdict lacks {VERDICT_KEYS - set(v)}"
        assert v["passed"] is should_pass and v["enabled"] and v["checks"]
        assert all(c["passed"] is should_pass for c in v["checks"]) or not should_pass
