"""Per-sample membership in benchmarks: how much a setting memorises, and how far each model is from the oracle.

Two uses of the reference models of a benchmark setting (forgetflow/references.py, attacks in
forgetflow/metrics/membership.py):

* :func:`memorisation` — does the setting's original memorise its training samples? Members (the pool the
  original trained on) against the same number of non-members no model trained on (the test split), with
  LiRA (offline) and RMIA (offline) calibrated by the setting's references, beside the population loss
  attack; and, in the references' own protocol, one reference model at a time as the target (its IN half
  of the pool against its OUT half, the other K − 1 references calibrating), where online LiRA and RMIA
  apply (every sample has IN and OUT references). Reported as the field does: ROC AUC, TPR at 1 % and
  0.1 % FPR.
* :func:`membership_columns` — the per-sample columns of every benchmark row (U-LiRA-style, Hayes et al. 2024):
  the share of forget samples detected as members at 1 % FPR, the threshold taken from never-seen test
  samples under the same model; the oracle's share is the target (with a Clopper–Pearson 95 % interval
  in the tables); the per-sample distance of a model's forget scores to the oracle's (mean absolute
  difference, and the ROC AUC of forget-after vs forget-under-oracle: 0.5 = the same distribution).

Choices the issue leaves open, and why:

* **Forget samples are scored as never-seen samples** (their IN references unusable, as
  ``ReferenceContext.inputs`` does for the MIA registry): the null hypothesis of unlearning is "this model
  treats x like a sample it never saw", so a forget sample's score is exchangeable with a test sample's
  under the oracle. That makes the attacks offline on forget sets whatever K is.
* **Why no online attack on the original.** Online LiRA needs IN references for the non-members too; the
  test split has none, and every pool sample is a member of the original. The reference-as-target rows
  are where online attacks are measured, on models trained on half the pool.
* **Corrupted scenarios.** The references are trained on the clean pool; a corrupted forget sample (a changed
  label or a trigger patch) is rescored by every reference checkpoint under its corrupted form, and only
  its OUT references (which never saw the sample at all) calibrate it.
* **Balanced members and non-members** in :func:`memorisation`: the larger side is subsampled with the seed,
  so an AUC or TPR never leans on class imbalance; TPR at 0.1 % FPR needs over 1,000 non-members to mean more
  than "nothing flagged", which the table states with its counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from forgetflow.errors import DataError
from forgetflow.metrics.membership import (DETECT_FPR, Population, attack_scores, lira_scores, rmia_scores, roc_auc,
                                           threshold_at_fpr, tpr_at_fpr)
from forgetflow.references import ReferenceContext, ReferenceSet, ReferenceView, logit_confidence

if TYPE_CHECKING:
    from torch import nn

    from forgetflow.config import ReferenceParams
    from forgetflow.data.samples import SampleSet
    from forgetflow.data.splits import Splits
    from forgetflow.data.version import DatasetVersion
    from forgetflow.training import Outputs

ATTACKS = ("lira", "rmia")


# ---- per-sample scores of one model on a benchmark's forget and test sets ----------------------------
@dataclass(frozen=True)
class SampleScores:
    """One attack's scores of one model: forget samples (in forget-set order) and never-seen test samples."""

    forget: np.ndarray
    test: np.ndarray
    mode: str

    @property
    def threshold(self) -> float:
        return threshold_at_fpr(self.test, DETECT_FPR)

    @property
    def detected(self) -> int:
        return int(np.sum(self.forget > self.threshold))


@dataclass(frozen=True)
class BenchReferences:
    """A benchmark's reference context and, where the task changed forget samples, their rescored φ."""

    context: ReferenceContext
    forget_view: ReferenceView
    test_view: ReferenceView

    @classmethod
    def for_splits(cls, refs: ReferenceSet, settings: "ReferenceParams", splits: "Splits", altered: tuple[str, ...] = (),
                   folder: Path | None = None, device: torch.device | str = "cpu", out_only: tuple[str, ...] = ()
                   ) -> "BenchReferences":
        """The views of a task's forget and test sets.

        Args:
            refs, settings: the setting's reference set and the attack settings.
            splits: the task's sets (forget samples become OUT-only, like never-seen samples).
            altered: samples whose label or pixels the task changed after the references were trained
                (corrupted scenarios); those among the forget samples are rescored by the checkpoints in ``folder``.
            out_only: samples erased earlier (sequential batches): only their OUT references are used.
        """
        ctx = ReferenceContext(refs, settings, tuple(sorted(set(out_only))))
        forget_ids = splits.forget.ids
        forget_view = refs.view(forget_ids, set(ctx.out_only) | {str(s) for s in forget_ids})
        changed = np.isin(np.asarray(forget_ids, dtype=object), np.asarray(list(altered), dtype=object))
        if changed.any():
            if folder is None:
                raise DataError("rescoring altered forget samples needs the reference checkpoints' folder")
            forget_view = _rescored(refs, forget_view, splits.forget, np.flatnonzero(changed), Path(folder), device)
        return cls(ctx, forget_view, refs.view(splits.test.ids))

    def population(self, model: "nn.Module", splits: "Splits", device: torch.device | str = "cpu") -> Population | None:
        return self.context.population(model, splits.val, device)

    def scores(self, model: "nn.Module", forget: "Outputs", test: "Outputs", splits: "Splits",
               device: torch.device | str = "cpu") -> dict[str, SampleScores]:
        """LiRA and RMIA scores of ``model`` (its outputs on the forget and test sets given), one call per attack."""
        phi = np.concatenate([logit_confidence(forget.logits, forget.labels), logit_confidence(test.logits, test.labels)])
        view = ReferenceView.concat(self.forget_view, self.test_view)
        population = self.population(model, splits, device)
        n = len(forget.labels)
        out = {}
        for attack in ATTACKS:
            if attack == "rmia" and population is None:
                continue
            s, mode = attack_scores(attack, phi, view, self.context.settings, population)
            out[attack] = SampleScores(s[:n], s[n:], mode)
        return out


def _rescored(refs: ReferenceSet, view: ReferenceView, samples: "SampleSet", which: np.ndarray, folder: Path,
              device: torch.device | str) -> ReferenceView:
    """The view with φ of the samples at positions ``which`` recomputed by every reference checkpoint."""
    from forgetflow.models import load_checkpoint
    from forgetflow.training import outputs

    sub = samples.subset(which)
    phi = view.phi.copy()
    for j in range(refs.k):
        path = folder / f"ref-{j}.pt"
        if not path.exists():
            raise DataError(f"{path}: reference checkpoint missing (needed to rescore altered forget samples)")
        out = outputs(load_checkpoint(path, device), sub, device=device)
        phi[j, which] = logit_confidence(out.logits, out.labels)
    return replace(view, phi=phi)


# ---- the columns of a benchmark row -----------------------------------------------------------------
def membership_columns(scores: dict[str, SampleScores], oracle: dict[str, SampleScores] | None) -> dict[str, Any]:
    """Detected share (and count) at 1 % FPR per attack and, against the oracle's scores, the per-sample distance.

    Keys: ``<attack>_detected`` (% of forget samples), ``<attack>_detected_count``, ``<attack>_mode``,
    ``<attack>_dist`` (mean |score − oracle score| over forget samples), ``<attack>_auc_vs_oracle`` (ROC AUC of
    this model's forget scores against the oracle's: 0.5 = indistinguishable, > 0.5 = more member-like).
    Private keys (``_<attack>_forget``, ``_<attack>_threshold``) carry the scores for the plots.
    """
    row: dict[str, Any] = {}
    for attack, s in scores.items():
        n = len(s.forget)
        row[f"{attack}_detected"] = 100.0 * s.detected / n if n else float("nan")
        row[f"{attack}_detected_count"] = s.detected
        row[f"{attack}_mode"] = s.mode
        row[f"_{attack}_forget"] = s.forget.tolist()
        row[f"_{attack}_threshold"] = s.threshold
        if oracle is not None and attack in oracle:
            o = oracle[attack].forget
            row[f"{attack}_dist"] = float(np.mean(np.abs(s.forget - o))) if n else float("nan")
            row[f"{attack}_auc_vs_oracle"] = roc_auc(s.forget, o)
    return row


def clopper_pearson(count: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a share, in percent."""
    if n <= 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(count), int(n)).proportion_ci(confidence_level=level, method="exact")
    return 100.0 * ci.low, 100.0 * ci.high


# ---- how much a setting memorises --------------------------------------------------------------------
def _balanced(members: np.ndarray, nonmembers: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-size seeded subsamples (positions) of two index arrays."""
    n = min(len(members), len(nonmembers))
    rng = np.random.default_rng([seed, 0xBA1])
    return np.sort(rng.permutation(members)[:n]), np.sort(rng.permutation(nonmembers)[:n])


def _figures(name: str, target: str, member_scores: np.ndarray, nonmember_scores: np.ndarray, **extra: Any
             ) -> dict[str, Any]:
    return {"attack": name, "target": target, "members": len(member_scores), "non_members": len(nonmember_scores),
            "auc": roc_auc(member_scores, nonmember_scores),
            "tpr_1": 100.0 * tpr_at_fpr(member_scores, nonmember_scores, 0.01),
            "tpr_01": 100.0 * tpr_at_fpr(member_scores, nonmember_scores, 0.001), **extra}


def memorisation(model: "nn.Module", version: "DatasetVersion", refs: ReferenceSet, settings: "ReferenceParams",
                 device: torch.device | str = "cpu", seed: int = 0, batch_size: int = 1024) -> list[dict[str, Any]]:
    """Attack figures (AUC, TPR at 1 % and 0.1 % FPR) of the original and of the references as targets.

    Args:
        model: the setting's original, trained on the whole training split (the pool) of ``version``.
        version: the setting's dataset version (the one ``refs`` were trained on).
        refs: the setting's reference set.
        settings: the attack settings (γ and a of RMIA, LiRA's variance; declared in params.yaml).
        seed: seed of the balanced subsamples and of RMIA's population draw.

    Returns:
        One row per (attack, target): attack, target, members, non_members, auc, tpr_1, tpr_01 (percent).
    """
    from forgetflow.training import outputs

    if refs.fingerprint != version.fingerprint:
        raise ValueError("the reference set was trained on another dataset version")
    ids = refs.ids
    train_pos = np.flatnonzero(refs.split == "train")
    test_pos = np.flatnonzero(refs.split == "test")
    mem_pos, non_pos = _balanced(train_pos, test_pos, seed)
    pos = np.concatenate([mem_pos, non_pos])
    table = version.table.reset_index(drop=True)
    index = pd.Index(table["sample_id"])
    samples = version.sample_set(table.iloc[index.get_indexer(ids[pos])])
    out = outputs(model, samples, batch_size, device)
    phi = logit_confidence(out.logits, out.labels)
    n = len(mem_pos)
    view = refs.view(ids[pos])
    ctx = ReferenceContext(refs, settings)
    population = ctx.population(model, version.sample_set(split="val"), device, batch_size)
    rows = []
    z, _ = lira_scores(phi, view.phi, view.member, view.usable, "offline", settings.lira_variance, settings.lira_min_own)
    rows.append(_figures("LiRA offline", "original", z[:n], z[n:]))
    if population is not None:
        r, _ = rmia_scores(phi, view.phi, view.member, view.usable, population.target_phi, population.view.phi,
                           population.view.usable, settings.rmia_gamma, settings.rmia_a, "offline")
        rows.append(_figures("RMIA offline", "original", r[:n], r[n:]))
    loss = out.loss.numpy()
    rows.append(_figures("loss threshold (population)", "original", -loss[:n], -loss[n:]))
    rows.extend(_reference_targets(refs, settings, seed))
    return rows


def _reference_targets(refs: ReferenceSet, settings: "ReferenceParams", seed: int) -> list[dict[str, Any]]:
    """LiRA and RMIA, online and offline, with each reference in turn as the target (the others calibrate).

    Members: the target's IN half of the pool; non-members: its OUT half (never trained on by the target,
    trained on by half of the other references, which online attacks need). Mean over the K targets.
    """
    k = refs.k
    train_pos = np.flatnonzero(refs.split == "train")
    val_ids = refs.ids[refs.split == "val"]
    pop_ids = ReferenceContext(refs, settings).population_ids(val_ids) if len(val_ids) else np.array([], dtype=object)
    pop_view = refs.view(pop_ids) if len(pop_ids) else None
    per: dict[str, list[dict[str, Any]]] = {}
    for j in range(k):
        others = [i for i in range(k) if i != j]
        mem, non = _balanced(train_pos[refs.member[j, train_pos]], train_pos[~refs.member[j, train_pos]], seed + j)
        pos = np.concatenate([mem, non])
        n = len(mem)
        view = refs.view(refs.ids[pos]).models(others)
        target = refs.phi[j, pos].astype(float)
        for mode in ("online", "offline"):
            z, _ = lira_scores(target, view.phi, view.member, view.usable, mode, settings.lira_variance,
                               settings.lira_min_own)
            per.setdefault(f"LiRA {mode}", []).append(_figures(f"LiRA {mode}", "reference", z[:n], z[n:]))
            if pop_view is not None:
                pv = pop_view.models(others)
                r, _ = rmia_scores(target, view.phi, view.member, view.usable, refs.phi[j, refs.positions(pop_ids)],
                                   pv.phi, pv.usable, settings.rmia_gamma, settings.rmia_a, mode)
                per.setdefault(f"RMIA {mode}", []).append(_figures(f"RMIA {mode}", "reference", r[:n], r[n:]))
    rows = []
    for name, items in per.items():
        row = {"attack": name, "target": f"each of {k} references (mean)", "members": items[0]["members"],
               "non_members": items[0]["non_members"]}
        for key in ("auc", "tpr_1", "tpr_01"):
            vals = np.array([it[key] for it in items], float)
            row[key] = float(np.mean(vals))
            row[f"{key}_std"] = float(np.std(vals))
        rows.append(row)
    return rows
