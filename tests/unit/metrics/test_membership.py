"""LiRA, RMIA and the low-FPR report against closed forms on synthetic score distributions."""

import numpy as np
import pytest
import torch
from scipy import special, stats

from forgetflow.errors import DataError
from forgetflow.metrics.membership import (
    choose_mode, detected_share, lira_scores, offline_pvalues, reference_probability, rmia_scores, roc_auc,
    threshold_at_fpr, tpr_at_fpr,
)
from forgetflow.references import logit_confidence

SPREAD = np.array([-1.0, -1.0, 1.0, 1.0])  # four references around a sample's mean: mean 0, unbiased var 4/3


# ---- φ ---------------------------------------------------------------------------------------------
def test_logit_confidence_is_log_odds_of_the_true_label():
    torch.manual_seed(0)
    logits = torch.randn(50, 10) * 3
    labels = torch.randint(0, 10, (50,))
    p = torch.softmax(logits.double(), 1).gather(1, labels[:, None]).squeeze(1).numpy()
    assert logit_confidence(logits, labels) == pytest.approx(np.log(p / (1 - p)), rel=1e-9, abs=1e-9)


def test_logit_confidence_stays_finite_where_softmax_saturates():
    logits = torch.tensor([[200.0, 0.0, 0.0], [-200.0, 0.0, 0.0]])
    phi = logit_confidence(logits, torch.tensor([0, 0]))
    # 1 - p_y underflows to 0 in float32/float64 here; the stable form does not
    assert phi == pytest.approx([200.0 - np.log(2.0), -200.0 - np.log(2.0)])


# ---- reporting -------------------------------------------------------------------------------------
def test_auc_and_tpr_at_low_fpr_match_gaussian_closed_forms():
    rng = np.random.default_rng(0)
    members, non = rng.normal(2.0, 1.0, 200_000), rng.normal(0.0, 1.0, 200_000)
    assert roc_auc(members, non) == pytest.approx(stats.norm.cdf(2.0 / np.sqrt(2.0)), abs=0.003)
    for fpr in (0.01, 0.001):
        expected = stats.norm.sf(stats.norm.isf(fpr) - 2.0)  # P(member > the (1 - fpr) quantile of N(0, 1))
        assert tpr_at_fpr(members, non, fpr) == pytest.approx(expected, abs=0.01)


def test_tpr_at_fpr_takes_the_best_point_not_above_the_fpr():
    non = np.arange(100.0)
    members = np.array([98.5, 99.5, 150.0, 10.0])
    # flagging scores >= 98.5 flags one non-member (99: FPR 1 %) and three members
    assert tpr_at_fpr(members, non, 0.01) == pytest.approx(0.75)
    assert tpr_at_fpr(members, non, 0.005) == pytest.approx(0.5)   # no false positive: above 99 only
    assert threshold_at_fpr(non, 0.01) == 99.0
    assert detected_share(np.array([99.5, 50.0, 120.0]), non, 0.01) == pytest.approx(200 / 3)


# ---- LiRA ------------------------------------------------------------------------------------------
def _refs(means: np.ndarray, scale: float) -> np.ndarray:
    """(4, n): each sample's references at its mean ± scale."""
    return means[None, :] + scale * SPREAD[:, None]


def test_offline_lira_is_the_predictive_z_score_with_a_pooled_variance():
    mu = np.array([-2.0, 0.0, 3.0])
    refs = _refs(mu, 0.5)
    target = mu + np.array([1.0, -0.5, 2.0])
    scores, mode = lira_scores(target, refs, np.zeros_like(refs, bool), np.ones_like(refs, bool), "offline", "global")
    sigma = np.sqrt(0.25 * 4 / 3)   # pooled: every sample's unbiased variance is 0.25 * 4/3
    assert mode == "offline"
    assert scores == pytest.approx((target - mu) / (sigma * np.sqrt(1 + 1 / 4)))
    assert offline_pvalues(scores) == pytest.approx(1 - stats.norm.cdf(scores))


def test_online_lira_is_the_gaussian_log_likelihood_ratio():
    mu_out, mu_in = np.array([0.0, 1.0]), np.array([2.0, 4.0])
    refs = np.concatenate([_refs(mu_in, 0.3), _refs(mu_out, 0.6)])
    member = np.r_[np.ones(4, bool), np.zeros(4, bool)][:, None].repeat(2, 1)
    target = np.array([1.5, 1.2])
    scores, mode = lira_scores(target, refs, member, np.ones_like(member), "online", "global")
    s_in, s_out = np.sqrt(0.09 * 4 / 3 * 1.25), np.sqrt(0.36 * 4 / 3 * 1.25)
    expected = stats.norm.logpdf(target, mu_in, s_in) - stats.norm.logpdf(target, mu_out, s_out)
    assert mode == "online"
    assert scores == pytest.approx(expected)


def test_offline_pvalues_of_non_members_are_uniform_with_four_references():
    rng = np.random.default_rng(1)
    n = 40_000
    mu = rng.normal(0, 3, n)                       # samples differ a lot in difficulty
    refs = mu + rng.normal(0, 1.0, (4, n))         # four OUT references each
    target = mu + rng.normal(0, 1.0, n)            # a model that never saw them: one more OUT draw
    scores, _ = lira_scores(target, refs, np.zeros((4, n), bool), np.ones((4, n), bool), "auto", "auto")
    p = offline_pvalues(scores)
    for level in (0.01, 0.05, 0.5):
        assert np.mean(p < level) == pytest.approx(level, abs=max(0.003, level * 0.08))


def test_online_beats_offline_when_the_in_distribution_is_informative():
    rng = np.random.default_rng(2)
    n = 4000
    mu = rng.normal(0, 2, n)
    out_refs = mu + rng.normal(0, 1.0, (4, n))
    in_refs = mu + 1.0 + rng.normal(0, 0.05, (4, n))   # training on x pins its score tightly
    refs = np.concatenate([in_refs, out_refs])
    member = np.r_[np.ones(4, bool), np.zeros(4, bool)][:, None].repeat(n, 1)
    is_member = rng.random(n) < 0.5
    target = np.where(is_member, mu + 1.0 + rng.normal(0, 0.05, n), mu + rng.normal(0, 1.0, n))
    usable = np.ones_like(member)
    online, mode = lira_scores(target, refs, member, usable, "auto")
    offline, _ = lira_scores(target, refs, member, usable, "offline")
    assert mode == "online"
    auc_on, auc_off = roc_auc(online[is_member], online[~is_member]), roc_auc(offline[is_member], offline[~is_member])
    assert auc_on > 0.97
    assert auc_on > auc_off + 0.1
    assert (tpr_at_fpr(online[is_member], online[~is_member], 0.01)
            > tpr_at_fpr(offline[is_member], offline[~is_member], 0.01) + 0.1)


def test_auto_mode_needs_usable_in_and_out_references_for_every_sample():
    member = np.r_[np.ones(2, bool), np.zeros(2, bool)][:, None].repeat(3, 1)
    usable = np.ones_like(member)
    assert choose_mode(member, usable, "auto", 2) == "online"
    usable[0, 1] = False       # sample 1 has one usable IN reference left
    assert choose_mode(member, usable, "auto", 2) == "offline"
    assert choose_mode(member, usable, "online", 2) == "online"


def test_auto_variance_uses_each_samples_own_only_with_enough_references():
    rng = np.random.default_rng(3)
    refs = rng.normal(0, 1, (4, 5)) * np.array([0.1, 1, 1, 1, 10])   # very different spreads
    target = np.full(5, 1.0)
    none = np.zeros_like(refs, bool)
    ones = np.ones_like(refs, bool)
    shared, _ = lira_scores(target, refs, none, ones, "offline", "auto", min_own=16)
    pooled, _ = lira_scores(target, refs, none, ones, "offline", "global")
    own, _ = lira_scores(target, refs, none, ones, "offline", "auto", min_own=4)
    assert shared == pytest.approx(pooled)
    explicit, _ = lira_scores(target, refs, none, ones, "offline", "per-sample")
    assert own == pytest.approx(explicit)
    assert not np.allclose(own, pooled)


def test_a_sample_without_usable_out_references_is_an_error():
    refs = np.zeros((2, 2))
    member = np.array([[True, False], [False, False]])
    usable = np.array([[True, True], [False, True]])   # sample 0: IN model usable, its only OUT model not
    with pytest.raises(DataError, match="position 0 has no usable OUT"):
        lira_scores(np.zeros(2), refs, member, usable, "offline", "global")


# ---- RMIA ------------------------------------------------------------------------------------------
def _rmia_by_definition(target, refs, member, z_target, z_refs, gamma, a, online):
    """The paper's score computed literally: for each x, the share of z with LR(x, z) > gamma."""
    p = special.expit(refs)
    p_out = np.array([p[~member[:, i], i].mean() for i in range(p.shape[1])])
    if online:
        p_in = np.array([p[member[:, i], i].mean() for i in range(p.shape[1])])
        px = 0.5 * (p_in + p_out)
    else:
        px = 0.5 * ((1 + a) * p_out + 1 - a)
    pz = 0.5 * ((1 + a) * special.expit(z_refs).mean(0) + 1 - a)
    ratio_x = special.expit(target) / px
    ratio_z = special.expit(z_target) / pz
    return np.array([np.mean(rx / ratio_z > gamma) for rx in ratio_x])


@pytest.mark.parametrize("online", [False, True])
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_rmia_equals_its_definition(online, gamma):
    rng = np.random.default_rng(4)
    k, n, m = 4, 300, 500
    refs, z_refs = rng.normal(1, 2, (k, n)), rng.normal(1, 2, (k, m))
    member = np.r_[np.ones(2, bool), np.zeros(2, bool)][:, None].repeat(n, 1)
    target, z_target = rng.normal(1.5, 2, n), rng.normal(1, 2, m)
    scores, mode = rmia_scores(target, refs, member, np.ones_like(member), z_target, z_refs, np.ones((k, m), bool),
                               gamma, 0.3, "online" if online else "offline")
    assert mode == ("online" if online else "offline")
    assert scores == pytest.approx(_rmia_by_definition(target, refs, member, z_target, z_refs, gamma, 0.3, online))


def test_rmia_orders_by_the_target_to_reference_ratio():
    refs = np.zeros((2, 3))                   # p(x|ref) = 0.5 for every x
    z_refs = np.zeros((2, 200))
    z_target = np.random.default_rng(5).normal(0, 1, 200)
    target = np.array([-1.0, 0.0, 2.0])       # the target's confidence rises with the index
    none, ones = np.zeros((2, 3), bool), np.ones((2, 3), bool)
    s1, _ = rmia_scores(target, refs, none, ones, z_target, z_refs, np.ones((2, 200), bool), 1.0, 0.3, "offline")
    s2, _ = rmia_scores(target, refs, none, ones, z_target, z_refs, np.ones((2, 200), bool), 2.0, 0.3, "offline")
    assert np.all(np.diff(s1) > 0)
    assert np.all((s1 >= 0) & (s1 <= 1))
    assert np.all(s2 <= s1) and s2.sum() < s1.sum()   # a stricter gamma never raises a score
    # the same target confidence counts for less when the references were confident there too
    easy, _ = rmia_scores(np.array([2.0]), np.full((2, 1), 3.0), none[:, :1], ones[:, :1], z_target, z_refs,
                          np.ones((2, 200), bool), 1.0, 0.3, "offline")
    assert easy[0] < s1[2]


def test_rmia_offline_correction_with_a_one_is_the_out_average():
    refs = np.random.default_rng(6).normal(0, 1, (4, 10))
    member = np.zeros((4, 10), bool)
    px = reference_probability(refs, member, np.ones_like(member), False, 1.0)
    assert px == pytest.approx(special.expit(refs).mean(0))


def test_rmia_scores_of_non_members_are_near_uniform_and_members_stand_out():
    rng = np.random.default_rng(7)
    k, n, m = 4, 4000, 2000
    def draw(size):
        mu = rng.normal(1, 2, size)
        return mu, mu + rng.normal(0, 0.7, (k, size))
    mu_x, refs = draw(n)
    mu_z, z_refs = draw(m)
    is_member = rng.random(n) < 0.5
    target = mu_x + rng.normal(0, 0.7, n) + np.where(is_member, 2.0, 0.0)
    z_target = mu_z + rng.normal(0, 0.7, m)
    none, ones = np.zeros((k, n), bool), np.ones((k, n), bool)
    scores, _ = rmia_scores(target, refs, none, ones, z_target, z_refs, np.ones((k, m), bool), 1.0, 0.3, "offline")
    assert scores[~is_member].mean() == pytest.approx(0.5, abs=0.03)
    assert roc_auc(scores[is_member], scores[~is_member]) > 0.85


def test_binned_variance_keeps_hard_non_members_at_the_nominal_rate():
    # easy samples (high mean, spread 0.5) and hard ones (low mean, spread 2.0), 2 OUT references each;
    # the targets are non-members drawn like a new reference: each offline z should exceed 2.326 1 % of the time
    rng = np.random.default_rng(0)
    n_easy, n_hard = 4000, 1000
    mu = np.r_[rng.normal(4.0, 0.5, n_easy), rng.normal(-1.0, 0.5, n_hard)]
    spread = np.r_[np.full(n_easy, 0.5), np.full(n_hard, 2.0)]
    refs = mu + spread * rng.normal(size=(2, mu.size))
    target = mu + spread * rng.normal(size=mu.size)
    out, ones = np.zeros_like(refs, bool), np.ones_like(refs, bool)
    hard = slice(n_easy, None)
    pooled, _ = lira_scores(target, refs, out, ones, "offline", "global")
    binned, _ = lira_scores(target, refs, out, ones, "offline", "binned")
    assert (pooled[hard] > 2.326).mean() > 0.08  # one variance for all: hard non-members look like members
    assert (binned[hard] > 2.326).mean() < 0.025  # per stratum of the mean: near the nominal 1 %
    assert (binned > 2.326).mean() == pytest.approx(0.01, abs=0.006)
    auto, _ = lira_scores(target, refs, out, ones, "offline", "auto")
    assert np.array_equal(auto, pooled)  # auto with 2 references a side: one pooled variance (the default)
    few, _ = lira_scores(target[:150], refs[:, :150], out[:, :150], ones[:, :150], "offline", "binned")
    assert np.array_equal(few, lira_scores(target[:150], refs[:, :150], out[:, :150], ones[:, :150], "offline",
                                           "global")[0])  # too few samples for two strata: the pooled variance
