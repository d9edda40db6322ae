"""Membership evidence after unlearning: per forgotten sample, per request and per batch.

The question a privacy officer asks about one request is "does the new model still treat this person's
samples like training data?". Every forgotten sample gets a membership score from a per-example attack
(LiRA or RMIA with the reference models, ``forgetflow/metrics/membership.py``; higher = more member-like), and
the scores of never-seen samples (held-out test samples) under the *same* model form the null: "this model
treats x like a sample it never saw". docs/verification.md explains the procedure in words; here is the
arithmetic.

* **p-value of a sample** (conformal): ``(1 + #{null >= s}) / (1 + m)`` against all ``m`` null scores. It is
  valid (never below its nominal level) whenever the forget scores are exchangeable with the null scores,
  which is what a model that never saw the forget samples gives (the retrained oracle).
* **a request**: Fisher's combination of its samples' p-values, ``-2 Σ ln p ~ χ²(2n)`` (Fisher 1932).
* **the batch**: the null is split (seeded) into a calibration half and a floor half. The detection threshold
  is the conformal ``1 - fpr`` quantile of the calibration half (its ``⌈(1 - fpr)(m_c + 1)⌉``-th smallest score);
  a sample is detected when its score is above it. The forget set's detected share is compared with the floor
  half's share under the same threshold by a one-sided Fisher exact test (a binomial test conditioned on the
  total number of detections). Our choice where the contract says "binomial test against the 1 % floor": the
  threshold is itself estimated from a finite sample, so its true false-positive rate is only about ``fpr``;
  conditioning on the measured floor keeps the test exact whatever that rate is (with a known 1 % floor, a
  large batch would fail the oracle more often than α). Both shares carry Clopper–Pearson intervals.
* **multiple testing**: Holm's step-down procedure at α over the family {each request} ∪ {the batch test}, so a
  model that never saw the forget set fails any of them with probability at most α (family-wise error rate).
  A request whose Holm-adjusted p-value is at most α is *still detectable*.
* **power**, at Holm's first-step level α / M (what a single leftover membership must beat when nothing else
  is detected): per request, the largest per-sample p-value ``q`` such that a request whose samples all have
  p-values ``q`` is detected; for the batch, the smallest detected share caught with the configured power
  (80 % by default). A test that cannot reject at all on this batch (too few samples, too small a null) is
  reported as such (``can_fail: false``), never as a silent pass.

Known limits, stated rather than hidden: the samples of a request are scored against one shared null, so
their p-values are slightly positively dependent and Fisher's combination is then a little liberal; the
calibration benchmark (benchmarks/evidence_calibration.py) measures the oracle's pass rate with it. A
subject's samples that are not exchangeable with test samples (e.g. mislabelled ones) score *lower* under a
model that never saw them, which makes their test conservative, not liberal.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from scipy import stats

from forgetflow.errors import DataError

if TYPE_CHECKING:
    from torch import nn

    from forgetflow.config import EvidenceParams
    from forgetflow.data.samples import SampleSet
    from forgetflow.references import ReferenceContext, ReferenceSet

DETECTABLE = "still detectable"
NOT_DETECTABLE = "not detectable"


# ---- statistics with known answers --------------------------------------------------------------------
def empirical_pvalues(scores: Sequence[float] | np.ndarray, null: Sequence[float] | np.ndarray) -> np.ndarray:
    """Conformal p-values of ``scores`` against ``null`` (higher score = more member-like).

    Args:
        scores: the scores to test.
        null: scores of samples known not to be members, under the same model and attack.

    Returns:
        ``(1 + #{null >= s}) / (1 + m)`` for every score ``s``.

    Raises:
        DataError: the null is empty or a score is not finite.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = np.sort(np.asarray(null, dtype=np.float64))
    if len(n) == 0:
        raise DataError("membership evidence: the never-seen (null) sample is empty")
    if not (np.isfinite(s).all() and np.isfinite(n).all()):
        raise DataError("membership evidence: an attack score is not finite (NaN or infinite)")
    at_least = len(n) - np.searchsorted(n, s, side="left")
    return (1.0 + at_least) / (1.0 + len(n))


def fisher_combine(pvalues: Sequence[float] | np.ndarray) -> float:
    """Fisher's combined p-value of independent p-values: ``P(χ²(2n) >= -2 Σ ln p)``."""
    p = np.asarray(pvalues, dtype=np.float64)
    if len(p) == 0:
        raise DataError("Fisher's combination needs at least one p-value")
    if ((p <= 0) | (p > 1)).any():
        raise DataError("Fisher's combination: p-values must lie in (0, 1]")
    return float(stats.chi2.sf(-2.0 * np.log(p).sum(), 2 * len(p)))


def holm(pvalues: Sequence[float] | np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down procedure: (adjusted p-values, rejected) in the input order.

    The adjusted p-value of the i-th smallest is ``max_{j<=i} min(1, (M - j + 1) p_(j))``; a hypothesis is
    rejected when its adjusted p-value is at most ``alpha``. The family-wise error rate is at most ``alpha``
    under any dependence between the tests.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted_sorted = np.maximum.accumulate(scaled)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted, adjusted <= alpha


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval for a share ``k / n``."""
    if n <= 0:
        return (0.0, 1.0)
    tail = (1.0 - confidence) / 2.0
    lo = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return lo, hi


def binomial_sf(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``."""
    return float(stats.binom.sf(k - 1, n, p))


def binomial_power(n: int, p0: float, p1: float, level: float) -> float:
    """Power of the exact one-sided binomial test of ``H0: share <= p0`` at ``level`` when the share is ``p1``.

    The test rejects when the count reaches the smallest ``c`` with ``P(X >= c | p0) <= level``; 0 when no such
    ``c <= n`` exists (the test cannot reject on ``n`` samples).
    """
    c = _binomial_critical(n, p0, level)
    return 0.0 if c > n else binomial_sf(c, n, p1)


def _binomial_critical(n: int, p0: float, level: float) -> int:
    counts = np.arange(n + 2)
    tails = stats.binom.sf(counts - 1, n, p0)
    ok = np.flatnonzero(tails <= level)
    return int(ok[0]) if len(ok) else n + 1


def share_test(k_forget: int, n_forget: int, k_floor: int, n_floor: int) -> float:
    """One-sided Fisher exact test: are forget samples detected more often than never-seen ones?

    The p-value of seeing at least ``k_forget`` of the ``k_forget + k_floor`` detections among the forget
    samples when detection does not depend on the group (hypergeometric).
    """
    if k_forget <= 0:
        return 1.0
    return float(stats.hypergeom.sf(k_forget - 1, n_forget + n_floor, k_forget + k_floor, n_forget))


def share_test_power(n_forget: int, n_floor: int, floor_rate: float, share: float, level: float) -> float:
    """Power of :func:`share_test` at ``level`` when never-seen samples are detected at ``floor_rate`` and
    forget samples at ``share`` (both counts binomial)."""
    weights, critical = _share_critical(n_forget, n_floor, floor_rate, level)
    return _power(weights, critical, n_forget, share)


def min_detectable_share(n_forget: int, n_floor: int, floor_rate: float, level: float,
                         power: float = 0.8) -> float | None:
    """The smallest forget detected share :func:`share_test` catches with ``power`` at ``level``.

    None when even a batch whose every sample is detected would be caught with less than ``power``.
    """
    if n_forget <= 0:
        return None
    weights, critical = _share_critical(n_forget, n_floor, floor_rate, level)
    if _power(weights, critical, n_forget, 1.0) < power:
        return None
    lo, hi = floor_rate, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _power(weights, critical, n_forget, mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def _share_critical(n_forget: int, n_floor: int, floor_rate: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """For every plausible floor count ``k_h`` (its binomial weight, > 1e-12), the smallest forget count the
    share test rejects at ``level`` (``n_forget + 1`` = none). The p-value falls as the forget count grows with
    ``k_h`` fixed, so a vectorised bisection over the forget count finds it."""
    kh = np.arange(n_floor + 1)
    weights = stats.binom.pmf(kh, n_floor, floor_rate)
    keep = weights > 1e-12
    kh, weights = kh[keep], weights[keep]
    lo = np.ones_like(kh)
    hi = np.full_like(kh, n_forget + 1)
    while (lo < hi).any():
        active = lo < hi
        mid = np.where(active, (lo + hi) // 2, 1)
        ok = stats.hypergeom.sf(mid - 1, n_forget + n_floor, mid + kh, n_forget) <= level
        hi = np.where(active & ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)
    return weights, lo


def _power(weights: np.ndarray, critical: np.ndarray, n_forget: int, share: float) -> float:
    reachable = critical <= n_forget
    if not reachable.any():
        return 0.0
    tails = stats.binom.sf(critical[reachable] - 1, n_forget, share)
    return float(min(1.0, (weights[reachable] * tails).sum()))


def max_detectable_sample_p(samples: int, null_size: int, level: float) -> float | None:
    """The largest per-sample p-value ``q`` such that a request whose ``samples`` p-values all equal ``q`` has
    a Fisher p-value at most ``level``; None when even the smallest possible p-value, ``1 / (1 + m)``, is not
    enough (the request cannot be detected with this null).

    Closed form: ``-2 n ln q >= χ²_{2n}`` quantile at ``1 - level``, i.e. ``q = exp(-χ²_{2n}(1 - level) / 2n)``.
    """
    q = math.exp(-float(stats.chi2.isf(level, 2 * samples)) / (2 * samples))
    return q if q >= 1.0 / (1.0 + null_size) else None


def conformal_threshold(calibration: Sequence[float] | np.ndarray, fpr: float) -> float:
    """The ``⌈(1 - fpr)(m + 1)⌉``-th smallest calibration score: a never-seen sample exceeds it with
    probability at most ``fpr``. ``+inf`` when the calibration sample is too small for that rate."""
    c = np.sort(np.asarray(calibration, dtype=np.float64))
    rank = math.ceil((1.0 - fpr) * (len(c) + 1))
    return float("inf") if rank > len(c) else float(c[rank - 1])


def split_null(null_size: int, seed: int) -> np.ndarray:
    """A seeded half of the null for calibrating the threshold (True) and the other half for the floor."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(null_size, dtype=bool)
    mask[rng.permutation(null_size)[: null_size // 2]] = True
    return mask


# ---- one model's evidence ---------------------------------------------------------------------------
@dataclass
class ModelEvidence:
    """The membership evidence about one batch under one model (after unlearning, before, or the oracle)."""

    alpha: float
    fpr: float
    power: float
    sample_ids: list[str]
    scores: np.ndarray
    p_values: np.ndarray
    detected: np.ndarray
    threshold: float
    null_size: int
    requests: list[dict[str, Any]]
    batch: dict[str, Any]
    family_size: int
    notes: list[str] = field(default_factory=list)

    @property
    def detectable_requests(self) -> list[str]:
        """Requests whose samples the model still treats as members (Holm-rejected at α)."""
        return [r["request_id"] for r in self.requests if r["verdict"] == DETECTABLE]

    @property
    def forgetting_passed(self) -> bool:
        return not self.detectable_requests

    @property
    def privacy_passed(self) -> bool:
        return not self.batch["distinguishable"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, at full precision (a re-check from the stored numbers decides exactly as the batch did)."""
        return {
            "alpha": self.alpha, "fpr": self.fpr, "power": self.power, "family_size": self.family_size,
            "first_step_level": self.alpha / self.family_size, "threshold": _num(self.threshold),
            "null_size": self.null_size,
            "samples": [{"sample_id": s, "score": _num(v), "p_value": _num(p), "detected": bool(d)}
                        for s, v, p, d in zip(self.sample_ids, self.scores, self.p_values, self.detected)],
            "requests": self.requests, "batch": self.batch,
            "detectable_requests": self.detectable_requests,
            "forgetting_passed": self.forgetting_passed, "privacy_passed": self.privacy_passed, "notes": self.notes,
        }


def assess(forget_scores: Sequence[float] | np.ndarray, sample_ids: Sequence[str], requests: Mapping[str, Sequence[str]],
           null_scores: Sequence[float] | np.ndarray, calibration: np.ndarray, alpha: float, fpr: float,
           power: float = 0.8) -> ModelEvidence:
    """Per-sample p-values, per-request Fisher tests and the batch share test, Holm-corrected together.

    Args:
        forget_scores: attack score of every forget sample (same order as ``sample_ids``).
        sample_ids: the forget samples.
        requests: request id -> its sample ids (each must be among ``sample_ids``).
        null_scores: scores of never-seen samples under the same model.
        calibration: bool mask over ``null_scores``: True = calibration half, False = floor half.
        alpha: family-wise error rate.
        fpr: detection rate of a never-seen sample the threshold aims at.
        power: the power at which the smallest detectable effect is stated.

    Raises:
        DataError: inconsistent inputs (a request's sample not in the batch, sizes that differ).
    """
    scores = np.asarray(forget_scores, dtype=np.float64)
    null = np.asarray(null_scores, dtype=np.float64)
    ids = list(sample_ids)
    if len(scores) != len(ids):
        raise DataError(f"membership evidence: {len(scores)} scores for {len(ids)} forget samples")
    if len(calibration) != len(null):
        raise DataError(f"membership evidence: calibration mask of {len(calibration)} for a null of {len(null)}")
    if not requests:
        raise DataError("membership evidence: the batch has no request")
    p = empirical_pvalues(scores, null)
    position = {s: i for i, s in enumerate(ids)}
    unknown = sorted({s for members in requests.values() for s in members} - set(position))
    if unknown:
        raise DataError(f"membership evidence: request samples not in the forget set: {', '.join(unknown[:5])}")

    threshold = conformal_threshold(null[calibration], fpr)
    detected = scores > threshold
    floor = null[~calibration]
    k_f, n_f = int(detected.sum()), len(scores)
    k_h, n_h = int((floor > threshold).sum()), len(floor)
    batch_p = share_test(k_f, n_f, k_h, n_h)

    names = sorted(requests)
    combined = [fisher_combine(p[[position[s] for s in requests[r]]]) for r in names]
    family = len(names) + 1
    adjusted, rejected = holm(np.array(combined + [batch_p]), alpha)
    level = alpha / family
    confidence = 1.0 - alpha
    rows = []
    for i, rid in enumerate(names):
        members = list(requests[rid])
        idx = [position[s] for s in members]
        q = max_detectable_sample_p(len(members), len(null), level)  # the request test's power
        rows.append({
            "request_id": rid, "samples": len(members), "sample_ids": members,
            "scores": [_num(v) for v in scores[idx]], "p_values": [_num(v) for v in p[idx]],
            "p_value": _num(combined[i]), "adjusted_p": _num(adjusted[i]),
            "verdict": DETECTABLE if rejected[i] else NOT_DETECTABLE,
            "can_fail": q is not None, "max_detectable_sample_p": _num(q),
        })
    floor_rate = fpr if math.isfinite(threshold) else 0.0
    smallest = min_detectable_share(n_f, n_h, floor_rate, level, power) if math.isfinite(threshold) else None
    batch = {
        "detected": k_f, "samples": n_f, "share": _num(k_f / n_f), "ci": [_num(v) for v in clopper_pearson(k_f, n_f, confidence)],
        "floor": {"detected": k_h, "samples": n_h, "share": _num(k_h / n_h if n_h else float("nan")),
                  "ci": [_num(v) for v in clopper_pearson(k_h, n_h, confidence)]},
        "confidence": confidence, "p_value": _num(batch_p), "adjusted_p": _num(adjusted[-1]),
        "distinguishable": bool(rejected[-1]), "min_detectable_share": _num(smallest),
        "can_fail": bool(math.isfinite(threshold) and share_test_power(n_f, n_h, floor_rate, 1.0, level) > 0.0),
    }
    notes = []
    if not math.isfinite(threshold):
        notes.append(f"the calibration half of the null ({int(calibration.sum())} samples) is too small for a "
                     f"{fpr:.1%} threshold: the batch test cannot fail; raise evidence.null_samples")
    elif smallest is None:
        notes.append(f"with {n_f} forget sample(s) the batch test cannot reach {power:.0%} power even if every sample "
                     "were detected")
    blind = [r["request_id"] for r in rows if not r["can_fail"]]
    if blind:
        notes.append(f"{len(blind)} request(s) cannot be detected on their own with a null of {len(null)} samples "
                     f"(the smallest possible p-value is above α/M = {level:.2g}): "
                     f"{', '.join(blind[:5])}{' ...' if len(blind) > 5 else ''}")
    return ModelEvidence(alpha, fpr, power, ids, scores, p, detected, threshold, len(null), rows, batch, family, notes)


def combine(after: ModelEvidence, before: ModelEvidence | None = None,
            oracle: ModelEvidence | None = None) -> list[dict[str, Any]]:
    """One row per request: the new model's verdict next to the serving model's before unlearning (and the
    oracle's), with the plain statement when the original already showed no detectable membership."""
    by_before = {r["request_id"]: r for r in (before.requests if before else [])}
    by_oracle = {r["request_id"]: r for r in (oracle.requests if oracle else [])}
    rows = []
    for r in after.requests:
        b = by_before.get(r["request_id"])
        o = by_oracle.get(r["request_id"])
        row = {k: r[k] for k in ("request_id", "samples", "p_value", "adjusted_p", "verdict", "can_fail",
                                 "max_detectable_sample_p")}
        row["scores"] = r["scores"]
        if b is not None:
            row.update({"before_p_value": b["p_value"], "before_adjusted_p": b["adjusted_p"],
                        "before_verdict": b["verdict"], "memorised_before": b["verdict"] == DETECTABLE})
            row["statement"] = statement(r, b)
        if o is not None:
            row.update({"oracle_p_value": o["p_value"], "oracle_verdict": o["verdict"]})
        rows.append(row)
    return rows


def statement(after: Mapping[str, Any], before: Mapping[str, Any] | None) -> str:
    """A request's evidence in one sentence a privacy officer can check against the numbers."""
    if not after.get("can_fail", True):
        return ("Undecidable: with this null sample even the most member-like scores could not make the request "
                "detectable; raise evidence.null_samples.")
    if after["verdict"] == DETECTABLE:
        return (f"Still detectable after unlearning (adjusted p = {after['adjusted_p']:.3g}): the new model treats "
                "these samples like training data.")
    if before is not None and before["verdict"] != DETECTABLE:
        return ("Not detectable after unlearning; the original model already treated these samples like unseen "
                f"data (adjusted p before = {before['adjusted_p']:.3g}): there was no detectable memorisation to remove.")
    if before is not None:
        return (f"Detectable before unlearning (adjusted p = {before['adjusted_p']:.3g}), not detectable after "
                f"(adjusted p = {after['adjusted_p']:.3g}).")
    return f"Not detectable after unlearning (adjusted p = {after['adjusted_p']:.3g})."


def _num(value: float | None) -> float | None:
    """A float as a JSON-safe number at full precision (NaN and infinities → None), so that a re-check from the
    stored record decides exactly as the batch did."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


# ---- scoring models and the stored record ------------------------------------------------------------
ROLES = ("after", "before", "oracle")  # the unlearned candidate, the serving model before it, the retrained oracle


@dataclass(frozen=True)
class NullSample:
    """The never-seen samples scored as the null, and which of them calibrate the detection threshold."""

    samples: "SampleSet"
    calibration: np.ndarray


def null_sample(test: "SampleSet", size: int, seed: int) -> NullSample:
    """A seeded choice of at most ``size`` test samples (in id order), split in a calibration and a floor half."""
    n = min(size, len(test))
    if n < 2:
        raise DataError(f"membership evidence needs never-seen samples; the test split has {len(test)}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(test), n, replace=False))
    order = np.argsort(test.ids[chosen], kind="stable")
    return NullSample(test.subset(chosen[order]), split_null(n, seed + 1))


def reference_sha256(refs: "ReferenceSet") -> str:
    """Content hash of a reference set: its sample ids, membership and every reference's φ."""
    h = hashlib.sha256()
    h.update("\n".join(str(s) for s in refs.ids).encode())
    h.update(np.ascontiguousarray(refs.member).tobytes())
    h.update(np.ascontiguousarray(refs.phi.astype(np.float32)).tobytes())
    return h.hexdigest()


def score_model(model: "nn.Module", forget: "SampleSet", null: "SampleSet", context: "ReferenceContext", attack: str,
                val: "SampleSet | None" = None, device: Any = "cpu", batch_size: int = 1024
                ) -> tuple[np.ndarray, np.ndarray, str]:
    """One model's attack scores on the forget samples and the null, in one call (one attack mode for both).

    The forget samples are scored with their OUT references only (they are being erased), exactly like the
    never-seen null samples; the references' φ were computed when they were trained, so this runs only the
    target model. Returns (forget scores, null scores, the attack's mode).
    """
    from forgetflow.data.samples import SampleSet
    from forgetflow.metrics.membership import attack_scores
    from forgetflow.references import ReferenceView, logit_confidence
    from forgetflow.training import outputs

    both = SampleSet.concat(forget, null)
    out = outputs(model, both, batch_size, device)
    phi = logit_confidence(out.logits, out.labels)
    out_only = set(context.out_only) | {str(s) for s in forget.ids}
    view = ReferenceView.concat(context.refs.view(forget.ids, out_only), context.refs.view(null.ids, context.out_only))
    population = context.population(model, val, device, batch_size) if attack == "rmia" else None
    scores, mode = attack_scores(attack, phi, view, context.settings, population)
    n = len(forget)
    return scores[:n], scores[n:], str(mode)


@dataclass
class EvidenceRecord:
    """Everything measured for a batch's evidence: scores per model, the null, the references, the timings.

    The record is what gets stored (``evidence.json``) and what a re-check reads: :meth:`assess` decides from
    it with the α and FPR of the day, so a verdict can always be recomputed from stored numbers.
    """

    attack: str
    mode: str
    k: int
    reference: dict[str, Any]
    requests: dict[str, list[str]]
    forget_ids: list[str]
    null_ids: list[str]
    calibration: np.ndarray
    scores: dict[str, dict[str, np.ndarray]]  # role -> {"forget": (n,), "null": (m,)}
    seconds: dict[str, float]

    def assess(self, params: "EvidenceParams") -> dict[str, ModelEvidence]:
        """The evidence of every scored model at ``params``' α, FPR and power."""
        return {role: assess(s["forget"], self.forget_ids, self.requests, s["null"], self.calibration, params.alpha,
                             params.fpr, params.power) for role, s in self.scores.items()}

    def to_json(self) -> dict[str, Any]:
        return {"attack": self.attack, "mode": self.mode, "k": self.k, "reference": self.reference,
                "requests": self.requests, "forget_ids": self.forget_ids, "null_ids": self.null_ids,
                "calibration": [bool(c) for c in self.calibration], "seconds": self.seconds,
                "scores": {role: {side: [float(v) for v in arr] for side, arr in s.items()}
                           for role, s in self.scores.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "EvidenceRecord":
        try:
            return cls(data["attack"], data["mode"], int(data["k"]), dict(data["reference"]),
                       {r: list(v) for r, v in data["requests"].items()}, list(data["forget_ids"]),
                       list(data["null_ids"]), np.asarray(data["calibration"], dtype=bool),
                       {role: {side: np.asarray(v, dtype=np.float64) for side, v in s.items()}
                        for role, s in data["scores"].items()}, dict(data["seconds"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not an evidence record ({type(exc).__name__}: {exc})") from exc


def measure(models: Mapping[str, "nn.Module"], forget: "SampleSet", requests: Mapping[str, Sequence[str]],
            null: NullSample, context: "ReferenceContext", attack: str, val: "SampleSet | None" = None,
            device: Any = "cpu", batch_size: int = 1024) -> EvidenceRecord:
    """Score every model of ``models`` (roles from :data:`ROLES`) and keep what a decision needs.

    ``seconds[role]`` is the wall time of scoring that model (its forward pass on the forget set and the null,
    and the attack over K references): the verification cost of a batch is ``seconds["after"]``.
    """
    scores: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    mode = ""
    for role, model in models.items():
        if role not in ROLES:
            raise DataError(f"membership evidence: unknown model role {role!r} (known: {', '.join(ROLES)})")
        start = time.perf_counter()
        f, n, mode = score_model(model, forget, null.samples, context, attack, val, device, batch_size)
        seconds[role] = time.perf_counter() - start
        scores[role] = {"forget": f, "null": n}
    refs = context.refs
    reference = {"key": refs.key, "sha256": reference_sha256(refs), "seed": refs.seed, "k": refs.k,
                 "dataset": refs.dataset, "version": refs.version, "fingerprint": refs.fingerprint,
                 "erased_since": len(context.out_only)}
    return EvidenceRecord(attack, mode, refs.k, reference, {r: list(v) for r, v in requests.items()},
                          [str(s) for s in forget.ids], [str(s) for s in null.samples.ids], null.calibration, scores,
                          seconds)


def summarise(record: EvidenceRecord, assessed: Mapping[str, ModelEvidence]) -> dict[str, Any]:
    """The batch result's ``evidence``: per-request rows (after, before, oracle), the batch shares, the notes."""
    after = assessed["after"]
    oracle = assessed.get("oracle")
    batch = dict(after.batch)
    for role in ("before", "oracle"):
        if role in assessed:
            b = assessed[role].batch
            batch[role] = {k: b[k] for k in ("detected", "samples", "share", "ci", "p_value", "adjusted_p",
                                             "distinguishable")}
    return {
        "attack": record.attack, "mode": record.mode, "k": record.k, "reference": record.reference,
        "alpha": after.alpha, "fpr": after.fpr, "power": after.power, "family_size": after.family_size,
        "null_size": after.null_size, "threshold": _num(after.threshold),
        "requests": combine(after, assessed.get("before"), oracle), "batch": batch,
        "detectable_requests": after.detectable_requests, "forgetting_passed": after.forgetting_passed,
        "privacy_passed": after.privacy_passed, "notes": after.notes,
        "seconds": {role: round(v, 4) for role, v in record.seconds.items()},
    }


def gate_input(record: EvidenceRecord, assessed: Mapping[str, ModelEvidence]) -> dict[str, Any]:
    """What the forgetting and privacy gates read: the candidate's evidence, the attack, K, the oracle's share."""
    out = {**assessed["after"].as_dict(), "attack": record.attack, "k": record.k, "mode": record.mode}
    if "oracle" in assessed:
        out["oracle_share"] = assessed["oracle"].batch["share"]
    return out


# ---- receipts -------------------------------------------------------------------------------------------
def receipt_entries(record: EvidenceRecord, assessed: Mapping[str, ModelEvidence]) -> dict[str, dict[str, Any]]:
    """Per request, the evidence its receipt carries: attack, K, the reference set's hash and split seed, the
    scores and p-values of its samples, the combined and Holm-adjusted p-values, the verdict at α, and the
    family of p-values Holm corrected over, so that :func:`check_receipt` can recompute the verdict."""
    after = assessed["after"]
    before = {r["request_id"]: r for r in assessed["before"].requests} if "before" in assessed else {}
    family = [r["p_value"] for r in after.requests] + [after.batch["p_value"]]
    out = {}
    for i, r in enumerate(after.requests):
        b = before.get(r["request_id"])
        out[r["request_id"]] = {
            "attack": record.attack, "mode": record.mode, "k": record.k, "reference_key": record.reference["key"],
            "reference_sha256": record.reference["sha256"], "reference_seed": record.reference["seed"],
            "alpha": after.alpha, "fpr": after.fpr, "null_size": after.null_size,
            "sample_ids": r["sample_ids"], "scores": r["scores"], "p_values": r["p_values"],
            "p_value": r["p_value"], "adjusted_p": r["adjusted_p"], "verdict": r["verdict"], "can_fail": r["can_fail"],
            "family_p_values": family, "family_index": i,
            "before": None if b is None else {"p_value": b["p_value"], "adjusted_p": b["adjusted_p"],
                                              "verdict": b["verdict"]},
            "statement": statement(r, b),
        }
    return out


def check_receipt(doc: Mapping[str, Any]) -> list[str]:
    """Recompute a receipt's evidence verdict from its own numbers; every inconsistency is one line.

    Fisher's combination of the per-sample p-values must give the request's p-value, which must sit at its
    place in the family; Holm over the family must give the adjusted p-value; the verdict must be what the
    adjusted p-value and α say. A receipt without evidence has nothing to check.
    """
    ev = doc.get("evidence")
    if not ev:
        return []
    try:
        alpha = float(ev["alpha"])
        family = np.asarray(ev["family_p_values"], dtype=np.float64)
        index = int(ev["family_index"])
        p_value, adjusted_p = float(ev["p_value"]), float(ev["adjusted_p"])
        combined = fisher_combine(ev["p_values"])
        adjusted = holm(family, alpha)[0][index]
    except (KeyError, TypeError, ValueError, IndexError, DataError) as exc:
        return [f"evidence is malformed ({type(exc).__name__}: {exc})"]
    problems = []
    if not math.isclose(combined, p_value, rel_tol=1e-9, abs_tol=1e-300):
        problems.append(f"evidence: the samples' p-values combine to {combined:.6g}, the receipt says {p_value:.6g}")
    if not math.isclose(family[index], p_value, rel_tol=1e-12, abs_tol=1e-300):
        problems.append("evidence: the request's p-value is not the one Holm corrected")
    if not math.isclose(adjusted, adjusted_p, rel_tol=1e-9, abs_tol=1e-300):
        problems.append(f"evidence: Holm gives an adjusted p-value of {adjusted:.6g}, the receipt says {adjusted_p:.6g}")
    expected = DETECTABLE if adjusted <= alpha else NOT_DETECTABLE
    if ev.get("verdict") != expected:
        problems.append(f"evidence: verdict {ev.get('verdict')!r} contradicts its numbers (adjusted p {adjusted:.4g} "
                        f"{'≤' if adjusted <= alpha else '>'} α {alpha:g}: {expected})")
    return problems


def write_record(path: Path, record: EvidenceRecord, extra: Mapping[str, Any] | None = None) -> Path:
    """Store a record (with readable extras such as the batch summary) as JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**(extra or {}), "record": record.to_json()}, indent=1))
    tmp.replace(path)
    return path


def read_record(path: Path) -> EvidenceRecord | None:
    """A stored record, or None when the file does not exist."""
    if not path.exists():
        return None
    return EvidenceRecord.from_json(json.loads(path.read_text())["record"])


def check_receipt_record(doc: Mapping[str, Any], root: Path) -> list[str]:
    """A receipt's evidence against the batch's stored record (``evidence.record``, relative to ``root``),
    decided again at the α and FPR the receipt states: the verdict and numbers must be the record's."""
    ev = doc.get("evidence")
    if not ev:
        return []
    rel = ev.get("record")
    try:
        record = read_record(root / rel) if rel else None
    except (OSError, ValueError, DataError) as exc:
        return [f"evidence: the batch's evidence record {rel} is unreadable ({exc})"]
    if record is None:
        return [f"evidence: the batch's evidence record {rel} is missing"]
    from forgetflow.config import EvidenceParams

    try:
        settings = EvidenceParams(alpha=ev["alpha"], fpr=ev["fpr"])
    except Exception as exc:  # noqa: BLE001 - a receipt with impossible settings is the finding
        return [f"evidence: alpha/fpr of the receipt are not valid settings ({exc})"]
    stored = receipt_entries(record, record.assess(settings)).get((doc.get("request") or {}).get("request_id"))
    if stored is None:
        return [f"evidence: the stored record {rel} has no entry for this request"]
    return [f"evidence: {key} {ev.get(key)!r} differs from the batch's stored record ({stored[key]!r})"
            for key in ("verdict", "p_value", "adjusted_p", "reference_sha256", "attack", "k") if stored[key] != ev.get(key)]
