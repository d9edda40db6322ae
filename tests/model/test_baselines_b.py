"""SCRUB, SSD, Bad Teacher and Retrain on digits, plus the hand-checked pieces that make each method itself.

Behaviour is checked on full-class forgetting (digit 3): the retrained oracle has forget accuracy 0 and the
original 100. Each baseline, at a budget stated below for ~1,200 training samples, must move forget
accuracy toward 0 (below its stated ceiling) while keeping retain accuracy within RETAIN_MARGIN points of
the original's. Beside that: SCRUB's KL term against a hand computation and the sign of its max steps;
SSD's importance, selection and dampening on hand-made arrays; Bad Teacher's incompetent teacher is
seeded from the run; Retrain is training from scratch with the same seed, weight for weight.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from forgetflow.data.samples import SampleSet
from forgetflow.methods import METHODS, data_for
from forgetflow.methods import scrub, ssd
from forgetflow.models import arch_of, build_model, clone
from forgetflow.runtime import RunContext
from forgetflow.training import outputs, train_model

RETAIN_MARGIN = 5.0  # points of retain accuracy a baseline may lose against the original

# name -> (overrides sized for digits, forget-accuracy ceiling in %)
BUDGETS = {
    # Five epochs instead of three: one digits retain pass is only 10 batches, so the min phases are short.
    "scrub": ({"epochs": 5}, 5.0),
    # The paper's alpha = 10 selects almost nothing in a width-8 CNN (digits) and alpha 7 already breaks
    # it; alpha = 8 is the stated setting here. SSD takes no gradient step, so it only dents the class.
    "ssd": ({"alpha": 8.0}, 75.0),
    # One pass over 125 forget + 351 retain samples (the authors' 30 %: 2.808 per forget sample) is two Adam
    # steps; ten passes (19 steps) at lr 1e-3 instead. Bad Teacher imitates a random model on the forget set,
    # so its target is chance, not 0.
    "bad-teacher": ({"forget_passes": 10, "retain_per_forget": 2.808, "min_steps": 1, "lr": 1e-3}, 20.0),
    "retrain": ({}, 0.0),
}


def _scratch(setup) -> nn.Module:
    arch, config = arch_of(setup.original.model)
    return build_model(arch, **config)


def _unlearn(name: str, setup, overrides: dict, seed: int = 0) -> nn.Module:
    spec = METHODS.get(name)
    s = setup.splits
    data = data_for(spec, s.forget, s.retain, s.num_classes, setup.recipe)
    return spec.unlearn(clone(setup.original.model), data, spec.resolve(None, overrides), RunContext.create(seed, "cpu"))


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_moves_forget_accuracy_toward_the_oracle_and_keeps_retain(name, digits_full_class):
    s = digits_full_class.splits
    assert outputs(digits_full_class.oracle.model, s.forget).accuracy == 0.0
    assert outputs(digits_full_class.original.model, s.forget).accuracy > 95.0
    overrides, ceiling = BUDGETS[name]
    model = _unlearn(name, digits_full_class, overrides, seed=1)
    assert outputs(model, s.forget).accuracy <= ceiling
    original_retain = outputs(digits_full_class.original.model, s.retain).accuracy
    assert outputs(model, s.retain).accuracy >= original_retain - RETAIN_MARGIN


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_kind_and_search_space(name):
    spec = METHODS.get(name)
    if name == "retrain":
        assert spec.kind == "reference"
        return
    assert spec.kind == "baseline" and spec.search_space
    for key, values in spec.search_space.items():
        assert key in spec.config.model_fields and values


# ---- SCRUB -------------------------------------------------------------------------------------------
def test_scrub_kl_matches_a_hand_computation():
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, -4.0, 4.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [2.0, 2.0, -2.0]])
    t = 4.0

    def softmax(row):
        e = [math.exp(v / t) for v in row]
        return [v / sum(e) for v in e]

    per_row = []
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p, q = softmax(t_row), softmax(s_row)
        per_row.append(sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q)))
    expected = t * t * sum(per_row) / len(per_row)  # T^2 * batch mean of KL(teacher || student)
    assert scrub.scrub_kl(student, teacher, t).item() == pytest.approx(expected, rel=1e-5)
    assert scrub.scrub_kl(teacher, teacher, t).item() == pytest.approx(0.0, abs=1e-6)


def test_scrub_max_steps_push_the_forget_set_away_from_the_teacher(digits_random):
    """With alpha = gamma = 0 the min phase has no loss term, so only the max steps move the student."""
    original = digits_random.original.model
    model = _unlearn("scrub", digits_random, {"epochs": 1, "msteps": 1, "alpha": 0.0, "gamma": 0.0, "lr": 1e-3})
    s = digits_random.splits

    def kl(samples):
        return scrub.scrub_kl(outputs(model, samples).logits, outputs(original, samples).logits, 4.0).item()

    assert kl(s.forget) > 1e-3
    assert kl(s.forget) > kl(s.retain)


# ---- SSD ---------------------------------------------------------------------------------------------
def test_ssd_selects_and_dampens_exactly_as_the_equations_say():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        layer.bias.copy_(torch.tensor([7.0, 8.0]))
    forget = {"weight": torch.tensor([[10.0, 1.0, 0.0], [5.0, 0.3, 2.0]]), "bias": torch.tensor([1.0, 4.0])}
    train = {"weight": torch.tensor([[0.5, 1.0, 0.0], [1.0, 0.01, 0.2]]), "bias": torch.tensor([0.0, 4.0])}
    # alpha = 2: selected where forget > 2 * train -> w[0,0], w[1,0], w[1,1], w[1,2], b[0] (train 0, forget 1).
    # lambda = 3: beta = min(3 * train / forget, 1) -> 0.15, 0.6, min(0.1, 1), 0.3, 0 (b[0] is zeroed).
    selected = ssd.dampen(layer, forget, train, alpha=2.0, lam=3.0)
    assert selected == 5
    expected_w = torch.tensor([[1.0 * 0.15, 2.0, 3.0], [4.0 * 0.6, 5.0 * 0.1, 6.0 * 0.3]])
    torch.testing.assert_close(layer.weight.data, expected_w)
    torch.testing.assert_close(layer.bias.data, torch.tensor([0.0, 8.0]))
    # A large lambda would raise parameters; beta is capped at 1 so selected ones stay unchanged.
    before = layer.weight.data.clone()
    assert ssd.dampen(layer, forget, train, alpha=2.0, lam=1000.0) == 5
    torch.testing.assert_close(layer.weight.data, before)


def test_ssd_importance_is_the_mean_over_batches_of_the_squared_batch_gradient():
    layer = nn.Linear(2, 2, bias=False)
    nn.init.zeros_(layer.weight)  # uniform softmax: dCE/dW = (p - onehot(y)) x^T with p = (0.5, 0.5)
    samples = SampleSet(torch.tensor([[1.0, 2.0], [2.0, 0.0]]), torch.tensor([0, 1]),
                        np.array(["a", "b"]), torch.tensor([0, 1]))
    run = RunContext.create(0, "cpu")
    # Per sample: g_a = [[-0.5, -1], [0.5, 1]], g_b = [[1, 0], [-1, 0]].
    one = ssd.importance(layer, samples, batch_size=1, run=run)["weight"]
    torch.testing.assert_close(one, torch.tensor([[0.625, 0.5], [0.625, 0.5]]))  # (g_a^2 + g_b^2) / 2
    two = ssd.importance(layer, samples, batch_size=2, run=run)["weight"]
    torch.testing.assert_close(two, torch.tensor([[0.0625, 0.25], [0.0625, 0.25]]))  # ((g_a + g_b) / 2)^2


def test_ssd_without_selection_leaves_the_model_unchanged(digits_random):
    model = _unlearn("ssd", digits_random, {"alpha": 1e6})
    for k, v in digits_random.original.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


# ---- Bad Teacher -------------------------------------------------------------------------------------
def test_bad_teacher_depends_on_the_run_seed(digits_full_class):
    a = _unlearn("bad-teacher", digits_full_class, {"forget_passes": 2, "min_steps": 1}, seed=1).state_dict()
    b = _unlearn("bad-teacher", digits_full_class, {"forget_passes": 2, "min_steps": 1}, seed=2).state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


# ---- Retrain -----------------------------------------------------------------------------------------
def test_retrain_equals_training_from_scratch_with_the_same_seed(digits_full_class):
    setup = digits_full_class
    model = _unlearn("retrain", setup, {}, seed=5)
    run = RunContext.create(5, "cpu")  # seeds the global generator the layer constructors draw from
    reference = train_model(_scratch(setup), setup.splits.retain, setup.recipe, run)
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not torch.equal(model.state_dict()["fc2.weight"], setup.original.model.state_dict()["fc2.weight"])


def test_retrain_with_the_oracle_seed_is_the_oracle(digits_full_class):
    model = _unlearn("retrain", digits_full_class, {}, seed=digits_full_class.seed)
    for k, v in digits_full_class.oracle.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_retrain_epochs_override(digits_full_class):
    setup = digits_full_class
    model = _unlearn("retrain", setup, {"epochs": 2}, seed=5)
    run = RunContext.create(5, "cpu")
    short = dataclasses.replace(setup.recipe, epochs=2)
    reference = train_model(_scratch(setup), setup.splits.retain, short, run)
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
