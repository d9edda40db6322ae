"""A method that blows up is stopped at the method boundary: it raises a one-line error naming itself, the
benchmark records the row as diverged instead of stopping, and a hyper-parameter search skips the trial."""

from __future__ import annotations

import pytest

from forgetflow import bench, tuning
from forgetflow.errors import MethodDivergedError
from forgetflow.methods import METHODS, data_for
from forgetflow.models import clone
from forgetflow.runtime import RunContext

BLOW_UP = {"lr": 1e6, "forget_passes": 3}  # gradient ascent at this step size overflows to inf / NaN


def test_non_finite_weights_raise_a_named_error(digits_random):
    spec = METHODS.get("gradient-ascent")
    s = digits_random.splits
    data = data_for(spec, s.forget, s.retain, s.num_classes, digits_random.recipe)
    with pytest.raises(MethodDivergedError, match="gradient-ascent.*diverged"):
        spec.unlearn(clone(digits_random.original.model), data, spec.resolve(None, BLOW_UP), RunContext.create(0, "cpu"))


def test_benchmark_row_says_diverged(digits_random):
    row = bench.run_method(digits_random, "gradient-ascent", BLOW_UP)
    assert "diverged" in row and "forget_acc" not in row


def test_search_skips_diverged_trials(digits_random):
    result = tuning.search(digits_random, "gradient-ascent", space={"lr": [1e6, 1e-3], "forget_passes": [1.0]})
    by_lr = {t["config"]["lr"]: t for t in result["trials"]}
    assert by_lr[1e6]["diverged"] and by_lr[1e6]["rejected"]
    assert result["best"]["config"]["lr"] == 1e-3
    with pytest.raises(MethodDivergedError, match="every trial"):
        tuning.search(digits_random, "gradient-ascent", space={"lr": [1e6], "forget_passes": [3]})
