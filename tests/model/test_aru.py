"""ARU on the tiny digits setup: the attack stays inside its budget and moves the loss the way its sign says,
the mask resets exactly ceil(rho * #filters) eligible filters and touches nothing else before fine-tuning,
and the whole method moves the forget loss toward the oracle's where plain fine-tuning does not."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from forgetflow.data.samples import to_float
from forgetflow.methods import METHODS, data_for
from forgetflow.methods import aru
from forgetflow.models import clone
from forgetflow.runtime import RunContext
from forgetflow.training import outputs

SPEC = METHODS.get("aru")
CONVS = ("conv1", "conv2", "conv3")  # the small CNN's convolutions; conv1 is excluded by default


def _data(setup):
    s = setup.splits
    return data_for(SPEC, s.forget, s.retain, s.num_classes, setup.recipe)


def _changed_rows(before: torch.Tensor, after: torch.Tensor) -> set[int]:
    return {int(i) for i in (before != after).flatten(1).any(1).nonzero().flatten()}


def _ceil(ratio: float, count: int) -> int:
    return math.ceil(Fraction(str(ratio)) * count)


def test_registered_as_paper_method_needing_forget_and_retain():
    assert SPEC.kind == "paper"
    assert SPEC.needs.describe() == "forget+retain"
    assert set(SPEC.search_space) >= {"mask_ratio"}


@pytest.mark.parametrize("sign", ["maximise", "minimise"])
def test_attack_stays_within_epsilon_and_moves_the_loss_its_way(sign, digits_random):
    model = clone(digits_random.original.model).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    forget = digits_random.splits.forget
    cfg = SPEC.resolve(None, {"attack": sign, "epsilon": 8 / 255, "step_size": 2 / 255, "steps": 10})
    delta = aru.attack(model, forget, cfg, RunContext.create(0, "cpu"))
    x, y = to_float(forget.images), forget.labels
    assert delta.shape == x.shape
    assert float(delta.abs().max()) <= cfg.epsilon + 1e-6
    assert float((x + delta).min()) >= 0.0 and float((x + delta).max()) <= 1.0
    assert float(delta.abs().max()) > 0.5 * cfg.epsilon  # the noise is not empty
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y).item()
        noisy = F.cross_entropy(model(x + delta), y).item()
    if sign == "maximise":
        assert noisy > 2 * clean, (clean, noisy)
    else:
        assert noisy < clean, (clean, noisy)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items()), "the attack changed the model"


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.2, 0.3])
def test_global_mask_resets_exactly_ceil_rho_filters_and_nothing_else(ratio, digits_random):
    before = digits_random.original.model.state_dict()
    cfg = SPEC.resolve(None, {"mask_ratio": ratio, "forget_passes": 0})
    after = SPEC.unlearn(clone(digits_random.original.model), _data(digits_random), cfg,
                         RunContext.create(0, "cpu")).state_dict()
    eligible = sum(before[f"{c}.weight"].shape[0] for c in CONVS[1:])
    changed = {c: _changed_rows(before[f"{c}.weight"], after[f"{c}.weight"]) for c in CONVS}
    assert not changed["conv1"], "the first conv is excluded by default"
    assert sum(len(v) for v in changed.values()) == _ceil(ratio, eligible)
    for key in before:  # every tensor outside the eligible convs and their BNs is bit-identical
        if not key.startswith(("conv2.", "conv3.", "bn2.", "bn3.")):
            assert torch.equal(before[key], after[key]), key
    for conv, bn in (("conv2", "bn2"), ("conv3", "bn3")):
        rows = sorted(changed[conv])
        keep = [i for i in range(before[f"{conv}.weight"].shape[0]) if i not in changed[conv]]
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(before[f"{bn}.{name}"][keep], after[f"{bn}.{name}"][keep])
        assert torch.equal(after[f"{bn}.weight"][rows], torch.ones(len(rows)))
        assert torch.equal(after[f"{bn}.bias"][rows], torch.zeros(len(rows)))
        assert torch.equal(after[f"{bn}.running_mean"][rows], torch.zeros(len(rows)))
        assert torch.equal(after[f"{bn}.running_var"][rows], torch.ones(len(rows)))
        fan_in = before[f"{conv}.weight"][0].numel()  # PyTorch's default init bound for the small CNN
        if rows:
            assert float(after[f"{conv}.weight"][rows].abs().max()) <= 1 / math.sqrt(fan_in) + 1e-7


def test_per_layer_mask_and_bn_keep(digits_random):
    before = digits_random.original.model.state_dict()
    cfg = SPEC.resolve(None, {"mask_ratio": 0.2, "mask_scope": "per-layer", "bn": "keep", "forget_passes": 0,
                              "exclude_first_conv": False})
    after = SPEC.unlearn(clone(digits_random.original.model), _data(digits_random), cfg,
                         RunContext.create(0, "cpu")).state_dict()
    for conv in CONVS:
        n = before[f"{conv}.weight"].shape[0]
        assert len(_changed_rows(before[f"{conv}.weight"], after[f"{conv}.weight"])) == _ceil(0.2, n), conv
    for key in before:
        if key.startswith("bn") or key.startswith("fc"):
            assert torch.equal(before[key], after[key]), f"{key} changed although bn='keep'"


def test_select_filters_takes_the_highest_scores():
    scores = {"a": torch.tensor([0.0, 3.0, 1.0]), "b": torch.tensor([2.0, -1.0, 5.0, 4.0])}
    glob = aru.select_filters(scores, SPEC.resolve(None, {"mask_ratio": 0.4}))  # ceil(0.4 * 7) = 3
    assert glob == {"a": [1], "b": [2, 3]}
    per = aru.select_filters(scores, SPEC.resolve(None, {"mask_ratio": 0.4, "mask_scope": "per-layer"}))
    assert per == {"a": [1, 2], "b": [2, 3]}
    assert aru.mask_size(0.1, 110) == 11  # 0.1 * 110 is 11.000000000000002 in floating point


@pytest.mark.parametrize("score", ["saliency", "activation-shift"])
def test_scores_are_z_normalised_per_layer(score, digits_random):
    model = clone(digits_random.original.model).eval()
    cfg = SPEC.resolve(None, {"score": score, "contrast_retain": 64 if score == "saliency" else 0})
    run = RunContext.create(0, "cpu")
    data = _data(digits_random)
    layers = aru.eligible_layers(model, cfg)
    assert [layer.name for layer in layers] == ["conv2", "conv3"]
    assert [layer.bn is model.bn2 for layer in layers] == [True, False]
    delta = aru.attack(model, data.forget, cfg, run)
    scores = aru.score_filters(model, layers, data.forget, delta, cfg, run, data.retain)
    for layer in layers:
        s = scores[layer.name]
        assert s.shape == (layer.filters,) and torch.isfinite(s).all()
        assert abs(float(s.mean())) < 1e-5 and abs(float(s.std()) - 1) < 1e-4


def test_moves_forget_loss_toward_the_oracle_where_finetuning_alone_does_not(digits_random):
    s = digits_random.splits
    loss = lambda m: float(outputs(m, s.forget).loss.mean())  # noqa: E731
    original, oracle = loss(digits_random.original.model), loss(digits_random.oracle.model)
    assert oracle > 5 * original  # the oracle never saw the forget samples: the gap to close is real
    tune = {"min_steps": 28, "max_steps": 28}  # 28 fine-tuning steps: about 3 passes over the digits retain set
    cfg = SPEC.resolve(None, {"mask_ratio": 0.3, **tune})
    model = SPEC.unlearn(clone(digits_random.original.model), _data(digits_random), cfg, RunContext.create(0, "cpu"))
    ft = METHODS.get("finetune")
    tuned = ft.unlearn(clone(digits_random.original.model), data_for(ft, s.forget, s.retain, s.num_classes,
                                                                       digits_random.recipe),
                       ft.resolve(None, {**tune, "lr": cfg.lr}), RunContext.create(0, "cpu"))
    closed = 1 - abs(loss(model) - oracle) / abs(original - oracle)  # share of the forget-loss gap closed
    ft_closed = 1 - abs(loss(tuned) - oracle) / abs(original - oracle)
    assert closed >= 1 / 3, closed
    assert ft_closed < closed / 3, (ft_closed, closed)
    # utility margin: retain and test accuracy within 3 points of the original's
    assert outputs(model, s.retain).accuracy >= outputs(digits_random.original.model, s.retain).accuracy - 3.0
    assert outputs(model, s.test).accuracy >= outputs(digits_random.original.model, s.test).accuracy - 3.0
