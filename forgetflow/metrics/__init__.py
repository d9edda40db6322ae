"""Evaluation: accuracies, the named MIA conventions, gaps to the oracle, divergences, REM and MUFAC scores.

Units: accuracies, MIA efficacy / member rates and gaps are in percent points; ``mia_auc`` and the MUFAC
attack accuracy are in [0, 1]; NoMUS is in [0, 1]; divergences are in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.samples import SampleSet
from forgetflow.data.splits import Splits
from forgetflow.metrics.mia import MIAS, MIAInputs, run_all
from forgetflow.training import Outputs, outputs

if TYPE_CHECKING:
    from forgetflow.references import ReferenceContext

SALUN_GAP_KEYS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")  # |ΔUA| = |ΔFA|
MUMIS_GAP_KEYS = ("retain_acc", "forget_acc", "test_acc")


def avg_gap(metrics: Mapping[str, float], oracle: Mapping[str, float], keys: tuple[str, ...] = SALUN_GAP_KEYS) -> float:
    """Mean |metric - oracle metric| over ``keys`` (SalUn's four by default; MU-Mis's three with MUMIS_GAP_KEYS)."""
    return float(np.mean([abs(float(metrics[k]) - float(oracle[k])) for k in keys]))


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean over samples of KL(p || q) between softmax outputs (nats)."""
    if len(p_logits) == 0:
        return float("nan")
    logp = F.log_softmax(p_logits.float(), 1)
    logq = F.log_softmax(q_logits.float(), 1)
    return float((logp.exp() * (logp - logq)).sum(1).mean())


def js_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean over samples of the Jensen-Shannon divergence between softmax outputs (nats)."""
    if len(p_logits) == 0:
        return float("nan")
    p = F.softmax(p_logits.float(), 1)
    q = F.softmax(q_logits.float(), 1)
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum(1)  # noqa: E731
    return float((0.5 * kl(p, m) + 0.5 * kl(q, m)).mean())


def activation_distance(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """Mean L2 distance between softmax outputs (Bad-Teacher / SSD's activation distance)."""
    if len(p_logits) == 0:
        return float("nan")
    return float((F.softmax(p_logits.float(), 1) - F.softmax(q_logits.float(), 1)).norm(dim=1).mean())


def nomus(test_acc_fraction: float, mia_accuracy: float, weight: float = 0.5) -> float:
    """MUFAC's NoMUS = w * test acc + (1 - w) * (1 - 2 |MIA acc - 0.5|), all in [0, 1]."""
    return weight * test_acc_fraction + (1 - weight) * (1 - 2 * abs(mia_accuracy - 0.5))


def healed(model_outputs: Outputs, clean_labels: torch.Tensor) -> float:
    """REM's Healed: accuracy (percent) on all corrupted samples scored against their clean labels."""
    if len(clean_labels) == 0:
        return float("nan")
    return 100.0 * float((model_outputs.logits.argmax(1) == clean_labels).float().mean())


@dataclass
class Evaluation:
    """Metrics of one model plus the raw outputs needed for comparisons (divergence, histograms)."""

    metrics: dict[str, float]
    forget: Outputs
    test: Outputs


def evaluate_model(
    model: nn.Module,
    splits: Splits,
    device: torch.device | str = "cpu",
    batch_size: int = 1024,
    max_shadow: int = 5000,
    seed: int = 0,
    mias: list[str] | None = None,
    references: "ReferenceContext | None" = None,
) -> Evaluation:
    """Forget/retain/test accuracy and every MIA convention (named by metric key) for one model.

    With ``references`` (a usable reference set; forgetflow/references.py) the per-sample conventions
    ``lira`` and ``rmia`` run too; without, they are skipped.
    """
    out = {name: outputs(model, s, batch_size, device) for name, s in
           (("forget", splits.forget), ("retain", splits.retain), ("test", splits.test))}
    unseen = outputs(model, splits.unseen, batch_size, device) if splits.unseen is not None else None
    metrics = {
        "forget_acc": out["forget"].accuracy,
        "retain_acc": out["retain"].accuracy,
        "test_acc": out["test"].accuracy,
    }
    ref_inputs = references.inputs(model, splits, device, batch_size) if references is not None else None
    metrics.update(run_all(MIAInputs(out["forget"], out["retain"], out["test"], unseen, max_shadow, seed, ref_inputs),
                           mias))
    if unseen is not None and not math.isnan(metrics.get("mia_unseen_acc", float("nan"))):
        metrics["nomus"] = nomus(metrics["test_acc"] / 100.0, metrics["mia_unseen_acc"])
    return Evaluation(metrics=metrics, forget=out["forget"], test=out["test"])


def compare_to_oracle(candidate: Evaluation, oracle: Evaluation) -> dict[str, float]:
    """Gaps (both published conventions) and output divergences of a candidate against the oracle."""
    return {
        "avg_gap": avg_gap(candidate.metrics, oracle.metrics, SALUN_GAP_KEYS),
        "avg_gap_mumis": avg_gap(candidate.metrics, oracle.metrics, MUMIS_GAP_KEYS),
        "kl_forget_to_oracle": kl_divergence(candidate.forget.logits, oracle.forget.logits),
        "js_forget_to_oracle": js_divergence(candidate.forget.logits, oracle.forget.logits),
        "js_test_to_oracle": js_divergence(candidate.test.logits, oracle.test.logits),
    }


def sample_accuracy(model: nn.Module, samples: SampleSet, device: torch.device | str = "cpu") -> float:
    """Accuracy in percent on one set (a convenience for tests and scenarios)."""
    return outputs(model, samples, device=device).accuracy


__all__ = [
    "MIAS", "Evaluation", "avg_gap", "compare_to_oracle", "evaluate_model", "healed", "js_divergence",
    "kl_divergence", "activation_distance", "nomus", "sample_accuracy", "SALUN_GAP_KEYS", "MUMIS_GAP_KEYS",
]
