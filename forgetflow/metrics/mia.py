"""Membership-inference attacks, each under the name of the convention it follows (docs/reports.md names them in words).

* ``svc-efficacy`` — SalUn's "MIA-Efficacy": an RBF SVC (C=3, gamma='auto') on the true-label softmax
  confidence, fitted on shadow members = the first n retain samples vs non-members = the first n test
  samples; efficacy = % of forget samples predicted *non-member*. Higher = more forgetting; the target is
  the retrained oracle's value. Our one deviation: n is capped (``evaluate.mia_max_shadow``) so the SVC fit
  stays in seconds on a CPU; SalUn uses n = |D_test|.
* ``entropy-logreg`` — SSD / Bad-Teacher: logistic regression (class_weight='balanced') on the softmax
  entropy, retain (member) vs test (non-member); reported = % of forget samples predicted *member*.
* ``loss-auc`` — a loss-threshold attack, forget (members) vs test (non-members): ROC AUC of the negated
  per-sample loss on equal-size, seeded subsamples. 0.5 = indistinguishable.
* ``mufac-unseen`` — MUFAC/MUCAC: logistic regression on the per-sample loss, forget vs unseen, 10-fold
  stratified shuffle split; reports the attack accuracy (the forgetting score is |acc - 0.5|).
* ``lira`` / ``rmia`` — per-sample attacks calibrated with reference models (forgetflow/metrics/membership.py:
  LiRA, Carlini et al. 2022; RMIA, Zarifzadeh et al. 2024): % of forget samples whose score exceeds the
  threshold that never-seen test samples exceed at 1 % FPR under the same model. They run only when
  ``MIAInputs.references`` is given (a reference set exists); otherwise they are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from forgetflow.metrics.membership import DETECT_FPR, ReferenceInputs, attack_scores, detected_share
from forgetflow.registry import Registry
from forgetflow.training import Outputs


@dataclass(frozen=True)
class MIAInputs:
    """Model outputs on the sets an attack may use."""

    forget: Outputs
    retain: Outputs
    test: Outputs
    unseen: Outputs | None = None
    max_shadow: int = 5000
    seed: int = 0
    references: ReferenceInputs | None = None


@dataclass(frozen=True)
class MIASpec:
    name: str
    key: str  # the metric key it reports under
    convention: str
    fn: Callable[[MIAInputs], float]
    needs_references: bool = False


MIAS: Registry[MIASpec] = Registry("MIA convention")


def _register(name: str, key: str, convention: str, needs_references: bool = False
              ) -> Callable[[Callable[[MIAInputs], float]], Callable[[MIAInputs], float]]:
    def deco(fn: Callable[[MIAInputs], float]) -> Callable[[MIAInputs], float]:
        MIAS.add(name, MIASpec(name, key, convention, fn, needs_references))
        return fn

    return deco


def confidence(out: Outputs) -> np.ndarray:
    """Softmax probability of the true label, per sample."""
    return out.probs.gather(1, out.labels[:, None]).squeeze(1).numpy()


def entropy(out: Outputs) -> np.ndarray:
    """Entropy of the softmax output, per sample (natural log)."""
    p = out.probs.clamp_min(1e-12)
    return (-(p * p.log()).sum(1)).numpy()


@_register("svc-efficacy", "mia_efficacy", "SalUn MIA-Efficacy: SVC on true-label confidence, retain vs test shadows; % forget predicted non-member")
def svc_efficacy(inp: MIAInputs) -> float:
    from sklearn.svm import SVC

    n = min(len(inp.retain.labels), len(inp.test.labels), inp.max_shadow)
    if n == 0 or len(inp.forget.labels) == 0:
        return float("nan")
    x = np.concatenate([confidence(inp.retain)[:n], confidence(inp.test)[:n]])[:, None]
    y = np.concatenate([np.ones(n), np.zeros(n)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    pred = clf.predict(confidence(inp.forget)[:, None])
    return float(100.0 * (1.0 - pred.mean()))


@_register("entropy-logreg", "mia_entropy", "SSD MIA: logistic regression on output entropy, retain vs test; % forget predicted member")
def entropy_logreg(inp: MIAInputs) -> float:
    from sklearn.linear_model import LogisticRegression

    if len(inp.forget.labels) == 0:
        return float("nan")
    x = np.concatenate([entropy(inp.retain), entropy(inp.test)])[:, None]
    y = np.concatenate([np.ones(len(inp.retain.labels)), np.zeros(len(inp.test.labels))])
    clf = LogisticRegression(class_weight="balanced")
    clf.fit(x, y)
    return float(100.0 * clf.predict(entropy(inp.forget)[:, None]).mean())


@_register("loss-auc", "mia_auc", "loss-threshold attack, forget (member) vs test (non-member): ROC AUC of -loss; 0.5 = chance")
def loss_auc(inp: MIAInputs) -> float:
    return balanced_auc(inp.forget.loss.numpy(), inp.test.loss.numpy(), inp.seed)


def balanced_auc(member_loss: np.ndarray, nonmember_loss: np.ndarray, seed: int) -> float:
    """AUC of ``-loss`` separating members from non-members on equal-size seeded subsamples."""
    from sklearn.metrics import roc_auc_score

    n = min(len(member_loss), len(nonmember_loss))
    if n == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    m = rng.permutation(member_loss)[:n]
    u = rng.permutation(nonmember_loss)[:n]
    y = np.concatenate([np.ones(n), np.zeros(n)])
    return float(roc_auc_score(y, -np.concatenate([m, u])))


@_register("mufac-unseen", "mia_unseen_acc", "MUFAC MIA: logistic regression on loss, forget vs unseen, 10 stratified shuffle splits; attack accuracy")
def mufac_unseen(inp: MIAInputs) -> float:
    if inp.unseen is None:
        return float("nan")
    return mufac_attack_accuracy(inp.forget.loss.numpy(), inp.unseen.loss.numpy())


def mufac_attack_accuracy(forget_loss: np.ndarray, unseen_loss: np.ndarray) -> float:
    """The MUFAC notebook's attack: shuffle forget losses (seed 42), truncate to |unseen|, 10-split CV accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.RandomState(42)
    f = forget_loss.copy()
    rng.shuffle(f)
    n = min(len(f), len(unseen_loss))
    if n < 5:
        return float("nan")
    f, u = f[:n], unseen_loss[:n]
    x = np.concatenate([u, f])[:, None]
    y = np.concatenate([np.zeros(n), np.ones(n)])
    cv = StratifiedShuffleSplit(n_splits=10, random_state=0)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


@_register("lira", "lira_detected", "LiRA (Carlini et al. 2022) with the reference models: % forget samples above "
                                    "the 1 %-FPR threshold of never-seen test samples", needs_references=True)
def lira_detected(inp: MIAInputs) -> float:
    return _detected("lira", inp)


@_register("rmia", "rmia_detected", "RMIA (Zarifzadeh et al. 2024) with the reference models: % forget samples above "
                                    "the 1 %-FPR threshold of never-seen test samples", needs_references=True)
def rmia_detected(inp: MIAInputs) -> float:
    return _detected("rmia", inp)


def _detected(attack: str, inp: MIAInputs) -> float:
    """Score forget and test samples in one call (one mode for both), then the forget share detected at 1 % FPR."""
    from forgetflow.references import ReferenceView, logit_confidence

    refs = inp.references
    if refs is None or len(inp.forget.labels) == 0 or len(inp.test.labels) == 0:
        return float("nan")
    if attack == "rmia" and refs.population is None:
        return float("nan")
    phi = np.concatenate([logit_confidence(inp.forget.logits, inp.forget.labels),
                          logit_confidence(inp.test.logits, inp.test.labels)])
    scores, _ = attack_scores(attack, phi, ReferenceView.concat(refs.forget, refs.test), refs.settings, refs.population)
    n = len(inp.forget.labels)
    return detected_share(scores[:n], scores[n:], DETECT_FPR)


def run_all(inp: MIAInputs, names: list[str] | None = None) -> dict[str, float]:
    """Every (or the named) MIA convention's value under its metric key (those that cannot run are skipped)."""
    out: dict[str, float] = {}
    for name in names or MIAS.names():
        spec = MIAS.get(name)
        if spec.name == "mufac-unseen" and inp.unseen is None:
            continue
        if spec.needs_references and inp.references is None:
            continue
        out[spec.key] = spec.fn(inp)
    return out

