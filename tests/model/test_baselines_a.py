"""GA, Random Labels, l1-sparse and SalUn on digits full-class forgetting (digit 3).

The retrained oracle has forget accuracy 0; the original has 100. Each baseline, at a budget sized for this
tiny set, must bring forget accuracy to at most 20 % while keeping retain accuracy within a stated margin of
the original's (5 points; 10 for GA, which never sees the retain set). Beside that, each test checks what
makes the method itself: GA never needs the retain set, RL's labels are always wrong, l1-sparse forgets
*because of* the l1 term, SalUn moves only the salient weights.
"""

from __future__ import annotations

import pytest
import torch

from forgetflow.methods import METHODS, Needs, UnlearnData, data_for
from forgetflow.methods import salun
from forgetflow.models import clone
from forgetflow.runtime import RunContext
from forgetflow.training import outputs, random_wrong_labels

FORGET_CEILING = 20.0  # forget accuracy (%) a baseline must reach (original 100, oracle 0)
RETAIN_MARGIN = {  # points of retain accuracy a baseline may lose against the original
    "gradient-ascent": 10.0,  # nothing repairs what the ascent breaks: it never sees a retain sample
    "random-labels": 5.0,
    "l1-sparse": 5.0,
    "salun": 5.0,
}
# Budgets sized for ~1,200 digits training samples. GA is a knife-edge: on this original (retain 100 %),
# lr 1e-3 gives FA/RA 56/99.0 after 5 passes, 6.4/95.2 after 7 and 0/79.7 after 10; lr 1.5e-3 gives
# 19.2/96.7 after 5 and 0/86.7 after 7 (sweep of 2026-11-23). 7 passes at 1e-3 sit in the middle of the window.
# The others are given exact step counts (min_steps = max_steps): 19 steps = 2 passes over the 1,170 retain
# samples in batches of 128, 92 = 10 passes (the budgets these tests were sized with).
BUDGETS = {
    "gradient-ascent": {"forget_passes": 7, "lr": 1e-3},
    "random-labels": {"min_steps": 19, "max_steps": 19},
    "l1-sparse": {"min_steps": 92, "max_steps": 92, "lr": 0.05, "gamma": 1e-2},
    "salun": {"min_steps": 19, "max_steps": 19},
}


def _unlearn(name: str, setup, overrides: dict, seed: int = 0):
    spec = METHODS.get(name)
    s = setup.splits
    data = data_for(spec, s.forget, s.retain, s.num_classes, setup.recipe)
    cfg = spec.resolve(None, overrides)
    return spec.unlearn(clone(setup.original.model), data, cfg, RunContext.create(seed, "cpu"))


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_moves_forget_accuracy_toward_the_oracle_and_keeps_retain(name, digits_full_class):
    s = digits_full_class.splits
    assert outputs(digits_full_class.oracle.model, s.forget).accuracy == 0.0
    assert outputs(digits_full_class.original.model, s.forget).accuracy > 95.0
    model = _unlearn(name, digits_full_class, BUDGETS[name])
    assert outputs(model, s.forget).accuracy <= FORGET_CEILING
    original_retain = outputs(digits_full_class.original.model, s.retain).accuracy
    assert outputs(model, s.retain).accuracy >= original_retain - RETAIN_MARGIN[name]


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_kind_and_search_space(name):
    spec = METHODS.get(name)
    assert spec.kind == "baseline" and spec.search_space
    for key, values in spec.search_space.items():
        assert key in spec.config.model_fields and values


def test_gradient_ascent_needs_only_the_forget_set(digits_full_class):
    spec = METHODS.get("gradient-ascent")
    assert spec.needs == Needs.FORGET
    s = digits_full_class.splits
    data = UnlearnData(spec.needs, s.forget, s.num_classes, digits_full_class.recipe, method=spec.name)
    model = spec.unlearn(clone(digits_full_class.original.model), data, spec.resolve(None, BUDGETS[spec.name]),
                         RunContext.create(0, "cpu"))
    assert outputs(model, s.forget).accuracy <= FORGET_CEILING


def test_random_wrong_labels_are_never_the_true_label_and_cover_the_others():
    labels = torch.arange(10).repeat(500)
    wrong = random_wrong_labels(labels, 10, RunContext.create(0, "cpu"))
    assert not bool((wrong == labels).any())
    for c in range(10):
        assert set(wrong[labels == c].tolist()) == set(range(10)) - {c}


def test_l1_sparse_forgets_because_of_the_l1_term(digits_full_class):
    s = digits_full_class.splits
    with_l1 = _unlearn("l1-sparse", digits_full_class, BUDGETS["l1-sparse"])
    without = _unlearn("l1-sparse", digits_full_class, {**BUDGETS["l1-sparse"], "gamma": 0.0})
    assert outputs(without, s.forget).accuracy > outputs(with_l1, s.forget).accuracy + 50.0


def test_salun_moves_only_salient_weights(digits_full_class):
    ratio = 0.3
    original = digits_full_class.original.model
    masks = salun.saliency_mask(clone(original), digits_full_class.splits.forget, ratio, 256,
                                RunContext.create(0, "cpu"))
    total = sum(m.numel() for m in masks.values())
    assert abs(sum(int(m.sum()) for m in masks.values()) - ratio * total) <= 1
    model = _unlearn("salun", digits_full_class, {**BUDGETS["salun"], "mask_ratio": ratio})
    before = dict(original.named_parameters())
    moved = 0
    for name, p in model.named_parameters():
        outside = masks[name] == 0
        assert torch.equal(p.detach()[outside], before[name].detach()[outside]), f"{name} moved outside the mask"
        moved += int((p.detach() != before[name].detach()).sum())
    assert moved > 0.5 * ratio * total  # and most salient weights did move
