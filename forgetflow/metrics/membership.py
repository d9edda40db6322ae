"""Per-sample membership attacks calibrated with reference models: LiRA and RMIA, and how attacks are reported.

Both attacks read one number per (model, sample): the logit confidence φ = z_y − logsumexp_{j≠y} z_j of the
true label (forgetflow/references.py computes it), for the target model and for every reference model, and a
:class:`~forgetflow.references.ReferenceView` saying which references trained on each sample (IN), which did
not (OUT) and which may be used at all. Scores are oriented alike: higher = more member-like.

**LiRA** (Carlini et al., "Membership inference attacks from first principles", IEEE S&P 2022). Fit a Gaussian
to the φ of the OUT references of each sample (offline) — and to its IN references too (online) — and ask how
likely the target's φ is under them.

* offline: the one-sided test of the paper, reported as a standard-normal score z; its p-value of
  membership is ``1 − Φ(z)`` (:func:`offline_pvalues`). The paper's released code uses the two-sided
  Gaussian log-density instead; we keep the paper's one-sided form (a model *more* confident than its OUT
  references is the member-like direction).
* online: the log-likelihood ratio log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²).
* variance: with few references each sample's own variance is a noisy estimate, so the paper fixes one
  variance for all samples. Ours is the *pooled within-sample* variance (deviations from each sample's own
  mean, n − 1 degrees of freedom per sample), not the spread of all values together as in the released code,
  which also counts how much the samples' means differ. ``variance="auto"`` uses each sample's own variance
  only when every sample has at least ``min_own`` usable references on the side in question.
* an option, measured and not the default: ``binned`` pools the variance within strata of the samples' mean μ
  (up to ``VARIANCE_BINS`` quantile bins of the scored samples, each with at least ``MIN_BIN_SAMPLES``). φ
  varies more from model to model for hard or atypical samples than for easy ones, so one variance
  over-states a hard non-member's z. Measured (docs/verification.md): on digits it lowered the share of
  never-seen mislabelled samples detected at 1 % FPR from 4.4 % to 3.1 %, but the evidence gates still failed
  the retrained oracle in 13 of 100 batches; on the memorising benchmark setting it cut LiRA's TPR at 1 % FPR
  from 13.8 % to 5.0 % and left the original's forget samples as detectable as the oracle's (4 % each), because
  memorised samples are exactly the hard ones. The default stays one pooled variance.
* our choice where the paper is silent: μ is the sample mean of only n (often 4) values, so a non-member's
  φ − μ̂ has variance σ²(1 + 1/n), not σ². We standardise by that predictive spread (and, with a per-sample
  variance, map the Student-t statistic to the normal scale), so that the offline p-value is calibrated for a
  non-member whatever n is. The paper's code uses the median for μ; we use the mean (the Gaussian fit).
* ``mode="auto"``: online when every scored sample has ≥ 2 usable IN and ≥ 2 usable OUT references, else
  offline for all of them — one mode per call, so that the scores of the samples in a call are comparable.
  Samples never trained on by any reference (test, validation) and erased samples have no usable IN
  references, so a call that contains them is offline.

**RMIA** (Zarifzadeh, Liu, Shokri, "Low-cost high-power membership inference attacks", ICML 2024). With
p(x|θ) = the true-label probability (= sigmoid(φ)) and p(x) its average over reference models,
LR(x, z) = (p(x|θ)/p(x)) / (p(z|θ)/p(z)) against population samples z the target never saw; the score of x
is the share of z with LR(x, z) > γ, in [0, 1]. p(x) online = ½(mean over usable IN + mean over usable OUT)
(the plain average over references that are half IN, half OUT); offline (only OUT references) the paper's
linear correction p(x) = ½((1 + a)·p_OUT(x) + (1 − a)). Population samples are never IN for any reference, so
p(z) always uses the offline correction (as the reference implementation does for its z). ``mode="auto"``
as for LiRA, with ≥ 1 IN and OUT reference each.

No maintained, pip-installable library implements both for a cross-check test: the privacy_meter project's
RMIA lives in its repository, while its PyPI package (privacy-meter 1.0.1, 2023) is the earlier API without
RMIA, and tensorflow-privacy's LiRA helper installs TensorFlow (hundreds of MB). The unit tests check ours
against closed forms on synthetic Gaussians and RMIA against a direct evaluation of its definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np
from scipy import special, stats

from forgetflow.errors import DataError
from forgetflow.references import Population, ReferenceInputs
from forgetflow.registry import Registry

if TYPE_CHECKING:  # only the types are needed here
    from forgetflow.config import ReferenceParams
    from forgetflow.references import ReferenceView

Mode = Literal["auto", "online", "offline"]
Variance = Literal["auto", "global", "binned", "per-sample"]
VARIANCE_BINS = 10     # binned variance: at most this many quantile strata of the samples' mean φ
MIN_BIN_SAMPLES = 100  # ... each holding at least this many scored samples (fewer samples: fewer strata)

DETECT_FPR = 0.01  # the false-positive rate at which a sample counts as "detected" (the field's convention)


# ---- reporting ------------------------------------------------------------------------------------
def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """ROC AUC of scores separating members (positives) from non-members; NaN when a side is empty."""
    from sklearn.metrics import roc_auc_score

    m, u = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    if len(m) == 0 or len(u) == 0:
        return float("nan")
    return float(roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(u))], np.r_[m, u]))


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """The highest true-positive rate on the ROC curve whose false-positive rate is at most ``fpr`` (a fraction).

    This is how LiRA and RMIA report low-FPR power. With m non-members, an FPR below 1/m can only be met by
    flagging nothing, so TPR at 0.1 % FPR needs well over 1,000 non-members to mean anything.
    """
    from sklearn.metrics import roc_curve

    m, u = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    if len(m) == 0 or len(u) == 0:
        return float("nan")
    fprs, tprs, _ = roc_curve(np.r_[np.ones(len(m)), np.zeros(len(u))], np.r_[m, u])
    return float(tprs[np.searchsorted(fprs, fpr, side="right") - 1])


def threshold_at_fpr(null_scores: np.ndarray, fpr: float = DETECT_FPR) -> float:
    """The score above which at most a share ``fpr`` of never-seen samples lie (their (1 − fpr) quantile)."""
    null = np.asarray(null_scores, float)
    if len(null) == 0:
        return float("nan")
    return float(np.quantile(null, 1.0 - fpr, method="higher"))


def detected_share(scores: np.ndarray, null_scores: np.ndarray, fpr: float = DETECT_FPR) -> float:
    """Percent of ``scores`` strictly above the threshold that never-seen samples exceed at rate ``fpr``."""
    s = np.asarray(scores, float)
    if len(s) == 0 or len(null_scores) == 0:
        return float("nan")
    return float(100.0 * np.mean(s > threshold_at_fpr(null_scores, fpr)))


def offline_pvalues(scores: np.ndarray) -> np.ndarray:
    """p-values of membership of offline-LiRA scores (standard-normal z): ``1 − Φ(z)``."""
    return stats.norm.sf(np.asarray(scores, float))


# ---- LiRA ------------------------------------------------------------------------------------------
def choose_mode(member: np.ndarray, usable: np.ndarray, mode: Mode, min_each: int) -> Literal["online", "offline"]:
    """``online``/``offline`` for a call: ``auto`` = online when every sample has ``min_each`` usable IN and OUT."""
    if mode != "auto":
        return mode
    n_in = (member & usable).sum(0)
    n_out = (~member & usable).sum(0)
    return "online" if n_in.size and n_in.min() >= min_each and n_out.min() >= min_each else "offline"


def _side(phi: np.ndarray, mask: np.ndarray, variance: Variance, min_own: int, side: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Per-sample mean, spread and count of the masked references' φ; ``own`` = per-sample spread used."""
    n = mask.sum(0).astype(float)
    if n.size and n.min() < 1:
        bad = int(np.argmin(n))
        raise DataError(f"sample at position {bad} has no usable {side} reference model")
    mu = np.where(mask, phi, 0.0).sum(0) / n
    dev2 = np.where(mask, (phi - mu) ** 2, 0.0).sum(0)
    own = variance == "per-sample" or (variance == "auto" and n.size and n.min() >= min_own)
    if own:
        if n.min() < 2:
            raise DataError(f"a per-sample {side} variance needs at least 2 usable {side} references per sample")
        sigma = np.sqrt(dev2 / (n - 1))
    else:
        dof = float((n - 1).sum())
        if dof <= 0:
            raise DataError(f"a shared {side} variance needs some sample with at least 2 usable {side} references")
        sigma = np.full(n.shape, np.sqrt(dev2.sum() / dof))
        if variance == "binned":
            sigma = _binned_sigma(mu, dev2, n, sigma)
    return mu, np.maximum(sigma, 1e-6), n, bool(own)


def _binned_sigma(mu: np.ndarray, dev2: np.ndarray, n: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """The pooled within-sample spread per quantile stratum of ``mu`` (the module docstring's ``binned``).

    A stratum without a degree of freedom keeps the overall pooled spread ``pooled``.
    """
    bins = min(VARIANCE_BINS, mu.size // MIN_BIN_SAMPLES)
    if bins < 2:
        return pooled
    edges = np.quantile(mu, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    stratum = np.searchsorted(edges, mu, side="right")
    dof = np.bincount(stratum, weights=n - 1, minlength=bins)
    ss = np.bincount(stratum, weights=dev2, minlength=bins)
    per_bin = np.where(dof > 0, np.sqrt(ss / np.maximum(dof, 1e-12)), pooled[0])
    return per_bin[stratum]


def _predictive_z(phi: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n: np.ndarray, own: bool) -> np.ndarray:
    """Standard-normal score of ``phi`` under the predictive distribution of a new draw of the references."""
    t = (phi - mu) / (sigma * np.sqrt(1.0 + 1.0 / n))
    if not own:
        return t
    # per-sample variance: Student t with n - 1 degrees of freedom, mapped to the normal scale
    return stats.norm.isf(stats.t.sf(t, n - 1))


def _predictive_logpdf(phi: np.ndarray, mu: np.ndarray, sigma: np.ndarray, n: np.ndarray, own: bool) -> np.ndarray:
    scale = sigma * np.sqrt(1.0 + 1.0 / n)
    if own:
        return stats.t.logpdf(phi, n - 1, loc=mu, scale=scale)
    return stats.norm.logpdf(phi, loc=mu, scale=scale)


def lira_scores(target_phi: np.ndarray, ref_phi: np.ndarray, member: np.ndarray, usable: np.ndarray,
                mode: Mode = "auto", variance: Variance = "auto", min_own: int = 16
                ) -> tuple[np.ndarray, Literal["online", "offline"]]:
    """LiRA scores of n samples from the target's φ (n,) and the references' φ, IN mask and usable mask (k, n).

    Args:
        target_phi: the target model's logit confidence on each sample.
        ref_phi: every reference model's logit confidence on each sample.
        member: True where the reference trained on the sample (IN).
        usable: False where a reference must be ignored for that sample (IN columns of erased samples).
        mode: ``online``, ``offline`` or ``auto`` (see the module docstring).
        variance: ``global`` (one pooled variance per side), ``binned`` (pooled per stratum of the mean),
            ``per-sample``, or ``auto`` (per-sample with ``min_own`` references, else global).
        min_own: ``auto`` uses per-sample variances only when every sample has this many usable references.

    Returns:
        (scores, mode used): offline scores are standard-normal z (p-value ``1 − Φ(z)``), online scores are
        log-likelihood ratios; higher = more member-like in both.
    """
    phi = np.asarray(target_phi, float)
    refs = np.asarray(ref_phi, float)
    member = np.asarray(member, bool)
    usable = np.asarray(usable, bool)
    if refs.shape != member.shape or refs.shape != usable.shape or refs.shape[1:] != phi.shape:
        raise ValueError(f"shapes differ: target {phi.shape}, references {refs.shape}, member {member.shape}, "
                         f"usable {usable.shape}")
    used = choose_mode(member, usable, mode, 2)
    mu_o, s_o, n_o, own_o = _side(refs, ~member & usable, variance, min_own, "OUT")
    if used == "offline":
        return _predictive_z(phi, mu_o, s_o, n_o, own_o), used
    mu_i, s_i, n_i, own_i = _side(refs, member & usable, variance, min_own, "IN")
    return (_predictive_logpdf(phi, mu_i, s_i, n_i, own_i) - _predictive_logpdf(phi, mu_o, s_o, n_o, own_o)), used


# ---- RMIA ------------------------------------------------------------------------------------------
def reference_probability(ref_phi: np.ndarray, member: np.ndarray, usable: np.ndarray, online: bool, a: float
                          ) -> np.ndarray:
    """p(x): the references' average true-label probability, online or with the offline correction ``a``."""
    p = special.expit(np.asarray(ref_phi, float))
    out = ~member & usable
    n_out = out.sum(0)
    if n_out.size and n_out.min() < 1:
        raise DataError(f"sample at position {int(np.argmin(n_out))} has no usable OUT reference model")
    p_out = np.where(out, p, 0.0).sum(0) / n_out
    if not online:
        return 0.5 * ((1.0 + a) * p_out + (1.0 - a))
    inside = member & usable
    p_in = np.where(inside, p, 0.0).sum(0) / np.maximum(inside.sum(0), 1)
    return 0.5 * (p_in + p_out)


def rmia_scores(target_phi: np.ndarray, ref_phi: np.ndarray, member: np.ndarray, usable: np.ndarray,
                population_target_phi: np.ndarray, population_ref_phi: np.ndarray, population_usable: np.ndarray,
                gamma: float = 1.0, a: float = 0.3, mode: Mode = "auto"
                ) -> tuple[np.ndarray, Literal["online", "offline"]]:
    """RMIA scores in [0, 1]: for each sample x, the share of population samples z with LR(x, z) > ``gamma``.

    Args:
        target_phi, ref_phi, member, usable: as for :func:`lira_scores`.
        population_target_phi: the target's φ on the population samples z (m,), which it never trained on.
        population_ref_phi: the references' φ on them (k, m); ``population_usable`` which may be used.
        gamma: the likelihood-ratio threshold γ (declared, not tuned on the data under test).
        a: the offline correction of p(x) from OUT references only (0 = no correction weight on p_OUT).
        mode: ``online``, ``offline`` or ``auto`` (online when every x has a usable IN and OUT reference).

    Returns:
        (scores, mode used).
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, not {gamma}")
    member = np.asarray(member, bool)
    usable = np.asarray(usable, bool)
    used = choose_mode(member, usable, mode, 1)
    p_x = reference_probability(ref_phi, member, usable, used == "online", a)
    zu = np.asarray(population_usable, bool)
    p_z = reference_probability(population_ref_phi, np.zeros_like(zu), zu, False, a)
    # log of p(.|θ)/p(.) ; p(.|θ) = sigmoid(φ) taken in log space so confident outputs keep their resolution
    log_ratio_x = -np.logaddexp(0.0, -np.asarray(target_phi, float)) - np.log(p_x)
    log_ratio_z = np.sort(-np.logaddexp(0.0, -np.asarray(population_target_phi, float)) - np.log(p_z))
    if len(log_ratio_z) == 0:
        raise DataError("RMIA needs population samples")
    # LR(x, z) > γ  <=>  log ratio_z < log ratio_x − log γ : count the population below, by binary search
    below = np.searchsorted(log_ratio_z, log_ratio_x - np.log(gamma), side="left")
    return below / len(log_ratio_z), used


# ---- attacks by name: one signature for the evidence and the MIA registry -------------------------
AttackFn = Callable[[np.ndarray, "ReferenceView", "ReferenceParams", "Population | None"], tuple[np.ndarray, str]]
ATTACKS: Registry[AttackFn] = Registry("membership attack")


def _lira(target_phi: np.ndarray, view: "ReferenceView", settings: "ReferenceParams",
          population: Population | None = None) -> tuple[np.ndarray, str]:
    return lira_scores(target_phi, view.phi, view.member, view.usable, settings.lira_mode, settings.lira_variance,
                       settings.lira_min_own)


def _rmia(target_phi: np.ndarray, view: "ReferenceView", settings: "ReferenceParams",
          population: Population | None = None) -> tuple[np.ndarray, str]:
    if population is None:
        raise DataError("RMIA needs population samples (the target's outputs on never-seen samples)")
    return rmia_scores(target_phi, view.phi, view.member, view.usable, population.target_phi, population.view.phi,
                       population.view.usable, settings.rmia_gamma, settings.rmia_a, settings.rmia_mode)


ATTACKS.add("lira", _lira)
ATTACKS.add("rmia", _rmia)


def attack_scores(name: str, target_phi: np.ndarray, view: "ReferenceView", settings: "ReferenceParams",
                  population: Population | None = None) -> tuple[np.ndarray, str]:
    """Scores (higher = more member-like) and the mode used, of the attack registered as ``name``."""
    return ATTACKS.get(name)(np.asarray(target_phi, float), view, settings, population)
