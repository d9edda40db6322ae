"""MU-Mis on the tiny digits setup: its input gradients are the exact per-sample ones, the irrelevant class is
never the label and is redrawn, the stop rule needs a real dip before a rise counts, it never reads the retain
set (even when one is handed over), and it removes a whole class while keeping most of the retain accuracy."""

from __future__ import annotations

import pytest
import torch

from forgetflow.data.samples import Batch
from forgetflow.methods import METHODS, Needs, UnlearnData
from forgetflow.methods import mu_mis
from forgetflow.models import clone, same_architecture
from forgetflow.runtime import RunContext
from forgetflow.training import accuracy

SPEC = METHODS.get("mu-mis")
# digits' forget class has 125 samples: batches of 32, a check every step, a cap of 6 steps (1.5 passes).
# Measured on this setup: the irrelevant-class sensitivity never dips (1.0, 1.007, 1.05, ... 1.27 at step 6,
# then it explodes to NaN by step 13), so the faithful stop rule never fires and the cap ends the run, with
# the class gone (forget accuracy 0) and retain accuracy 99.9.
FULL_CLASS = {"lr": 1e-4, "batch_size": 32, "forget_passes": 1.5, "check_every": 1, "delta": 1.0}


class RaisingSet:
    """A retain set that fails on any use."""

    def __getattr__(self, item: str):
        raise AssertionError(f"MU-Mis touched the retain set (.{item})")

    def __len__(self) -> int:
        raise AssertionError("MU-Mis took len() of the retain set")


def _run(setup, overrides: dict, seed: int = 0, retain=None, needs: Needs = Needs.FORGET):
    s = setup.splits
    data = UnlearnData(needs, s.forget, s.num_classes, setup.recipe, retain=retain, method="mu-mis")
    log: list[tuple[str, float, int]] = []
    run = RunContext.create(seed, "cpu", report=lambda k, v, step: log.append((k, v, step)))
    model = SPEC.unlearn(clone(setup.original.model), data, SPEC.resolve(None, overrides), run)
    return model, log


def test_registered_as_retain_free_paper_method():
    assert SPEC.kind == "paper"
    assert SPEC.needs == Needs.FORGET
    assert {"lr", "delta"} <= set(SPEC.search_space)


def test_batched_input_gradients_equal_per_sample_gradients(digits_random):
    model = clone(digits_random.original.model).eval()
    x, y = digits_random.splits.forget.head(16).tensors()
    batch = Batch(x, y, torch.arange(16))
    g_t, g_o = mu_mis._input_gradients(model, batch, 10, RunContext.create(0, "cpu"))
    others = mu_mis.irrelevant_classes(y, 10, RunContext.create(0, "cpu"))  # the same draw as above
    for i in range(16):
        xi = x[i : i + 1].clone().requires_grad_(True)
        z = model(xi)
        gi_t = torch.autograd.grad(z[0, y[i]], xi)[0].flatten()
        gi_o = torch.autograd.grad(model(xi)[0, others[i]], xi)[0].flatten()
        torch.testing.assert_close(g_t[i], gi_t, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(g_o[i], gi_o, rtol=1e-4, atol=1e-6)
    assert g_t.requires_grad and g_o.requires_grad  # graph kept for the double backward


def test_irrelevant_class_is_never_the_label_and_is_redrawn():
    run = RunContext.create(0, "cpu")
    y = torch.arange(10).repeat(200)
    first, second = mu_mis.irrelevant_classes(y, 10, run), mu_mis.irrelevant_classes(y, 10, run)
    assert not (first == y).any() and not (second == y).any()
    assert set(first[y == 4].tolist()) == set(range(10)) - {4}  # all nine other classes occur
    assert (first != second).float().mean() > 0.5


@pytest.mark.parametrize(
    "delta, sequence, fires_at",
    [
        (0.9, [0.95, 0.85, 0.88, 0.92, 0.95], 3),  # dips below 0.9, recovers past it at 0.92
        (0.9, [0.95, 0.97, 1.2], None),  # never below the level: no crossing
        (1.0, [0.9, 0.8, 0.99, 1.01], 3),  # dip, then back beyond its start
        (1.0, [1.01, 1.2, 1.5], None),  # a rise from the first step is no dip-and-rise: never at step 1
        (1.0, [0.995, 1.01], None),  # half a percent down is not a real dip (min_dip 2 %)
        (1.1, [1.05, 1.2], None),  # the plain ratio test would fire here at step 1
        (1.1, [1.0, 0.95, 1.05, 1.12], 3),  # dip, rise, then past 1.1
        (1.1, [0.9, 1.05], None),  # dipped, but not yet beyond delta
    ],
)
def test_stop_rule_needs_a_dip_then_a_rise_past_delta(delta, sequence, fires_at):
    rule = mu_mis.StopRule(s0=1.0, delta=delta, min_dip=0.02)
    fired = [i for i, s in enumerate(sequence) if rule.update(s)]
    assert (fired[0] if fired else None) == fires_at


def test_delta_one_does_not_stop_at_the_first_step_of_a_real_run(digits_full_class):
    """The plain ratio rule stopped this run at step 1 (s_1 / s_0 = 1.007 > 1); the faithful rule does not."""
    _, log = _run(digits_full_class, FULL_CLASS)
    ratios = [v for k, v, step in log if k == "unlearn/s_ratio" and step > 0]
    assert ratios[0] > 1.0  # the plain ratio test would have fired here
    stops = {k: v for k, v, _ in log}
    assert stops["unlearn/stop_step"] == 6 and stops["unlearn/stopped_by_rule"] == 0.0


def test_never_reads_the_retain_set_even_when_handed_one(digits_full_class):
    model, log = _run(digits_full_class, FULL_CLASS, retain=RaisingSet(), needs=Needs.FORGET | Needs.RETAIN)
    assert same_architecture(model, digits_full_class.original.model)
    assert any(k == "unlearn/stop_step" for k, _, _ in log)


def test_full_class_forget_accuracy_falls_and_retain_accuracy_holds(digits_full_class):
    s = digits_full_class.splits
    original = digits_full_class.original.model
    model, log = _run(digits_full_class, FULL_CLASS)
    assert accuracy(original, s.forget) > 95.0
    assert accuracy(model, s.forget) <= 10.0  # the oracle's forget accuracy is 0
    assert accuracy(model, s.retain) >= accuracy(original, s.retain) - 10.0
    assert same_architecture(model, original)
    assert not any(m.training for m in model.modules())  # BN statistics were never updated


def test_bn_running_statistics_are_untouched(digits_full_class):
    before = {k: v.clone() for k, v in digits_full_class.original.model.state_dict().items() if "running" in k}
    model, _ = _run(digits_full_class, FULL_CLASS)
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def test_check_every_zero_means_once_per_epoch(digits_full_class):
    _, log = _run(digits_full_class, {"lr": 1e-5, "batch_size": 32, "forget_passes": 3, "check_every": 0, "delta": 100.0})
    steps = [step for k, _, step in log if k == "unlearn/s_ratio" and step > 0]
    assert steps == [4, 8, 12]  # 125 forget samples / 32 per batch = 4 steps per epoch, 3 epochs
