"""Metric functions against values computed by hand on small inputs."""

import math

import numpy as np
import pytest
import torch

from forgetflow.metrics import activation_distance, avg_gap, healed, js_divergence, kl_divergence, nomus
from forgetflow.metrics.mia import MIAInputs, balanced_auc, confidence, entropy, mufac_attack_accuracy, svc_efficacy
from forgetflow.training import Outputs


def test_avg_gap_both_conventions():
    unlearned = {"forget_acc": 90, "retain_acc": 99, "test_acc": 92, "mia_efficacy": 20}
    oracle = {"forget_acc": 92, "retain_acc": 98, "test_acc": 92, "mia_efficacy": 15}
    assert avg_gap(unlearned, oracle) == pytest.approx((2 + 1 + 0 + 5) / 4)
    assert avg_gap(unlearned, oracle, ("retain_acc", "forget_acc", "test_acc")) == pytest.approx(1.0)
    # the MU-Mis paper's CIFAR-100 row (Cheng et al., arXiv 2402.15109): avg gap over RA, FA, TA
    assert avg_gap({"retain_acc": 76.42, "forget_acc": 0, "test_acc": 75.64},
                   {"retain_acc": 76.52, "forget_acc": 0, "test_acc": 75.76},
                   ("retain_acc", "forget_acc", "test_acc")) == pytest.approx(0.0733, abs=1e-3)


def test_divergences_by_hand():
    p = torch.log(torch.tensor([[0.5, 0.5]]))
    q = torch.log(torch.tensor([[0.9, 0.1]]))
    kl = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_divergence(p, q) == pytest.approx(kl, rel=1e-5)
    m = [0.7, 0.3]
    js = 0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)) + 0.5 * (0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3))
    assert js_divergence(p, q) == pytest.approx(js, rel=1e-5)
    assert activation_distance(p, q) == pytest.approx(math.hypot(0.4, 0.4), rel=1e-5)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-7)


def test_nomus_matches_the_mufac_readme():
    # MUFAC README (ndb796/MachineUnlearning), Original: (0.5951 + 1 - 2 * 0.2136) / 2 = 0.5839
    # (the README's MIA column is |acc - 0.5|)
    assert nomus(0.5951, 0.5 + 0.2136) == pytest.approx(0.5839, abs=1e-4)


def test_healed_counts_clean_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    assert healed(Outputs(logits, torch.tensor([1, 1, 1])), torch.tensor([0, 1, 1])) == pytest.approx(200 / 3)


def test_confidence_and_entropy_by_hand():
    out = Outputs(torch.log(torch.tensor([[0.25, 0.75], [0.5, 0.5]])), torch.tensor([1, 0]))
    assert confidence(out) == pytest.approx([0.75, 0.5])
    assert entropy(out) == pytest.approx([-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), math.log(2)])


def test_loss_auc_by_hand():
    # members have lower loss than every non-member: perfect attack; identical distributions: 0.5
    assert balanced_auc(np.array([0.1, 0.2]), np.array([1.0, 2.0]), 0) == 1.0
    assert balanced_auc(np.array([1.0, 2.0]), np.array([0.1, 0.2]), 0) == 0.0
    assert balanced_auc(np.array([0.5, 0.5]), np.array([0.5, 0.5]), 0) == 0.5


def _out(conf_true: list[float]) -> Outputs:
    p = torch.tensor([[c, 1 - c] for c in conf_true])
    return Outputs(torch.log(p), torch.zeros(len(conf_true), dtype=torch.long))


def test_svc_efficacy_on_separable_shadows():
    members = _out([0.99] * 50)
    nonmembers = _out([0.55] * 50)
    # forget samples that look like members → predicted members → efficacy 0; like non-members → 100
    assert svc_efficacy(MIAInputs(_out([0.99] * 10), members, nonmembers)) == 0.0
    assert svc_efficacy(MIAInputs(_out([0.55] * 10), members, nonmembers)) == 100.0


def test_mufac_attack_is_chance_on_identical_losses_and_high_when_separable():
    same = np.full(100, 0.3)
    assert mufac_attack_accuracy(same, same.copy()) == pytest.approx(0.5, abs=0.1)
    assert mufac_attack_accuracy(np.full(100, 0.01), np.full(100, 3.0)) == 1.0
