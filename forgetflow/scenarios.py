"""Forgetting scenarios for benchmarks and tuning, found by name in ``SCENARIOS``.

A scenario turns a prepared dataset version into a ``ScenarioTask``: the version to train the original on
(corrupted-data scenarios alter it *before* training), the forget ids, the request reason it stands for,
and what its metrics need (the clean labels of corrupted samples, the forgotten class).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from forgetflow.data.version import DatasetVersion
from forgetflow.errors import ConfigError
from forgetflow.registry import Registry


@dataclass
class ScenarioTask:
    """One concrete forgetting task."""

    scenario: str
    version: DatasetVersion
    forget_ids: list[str]
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    corrupted_ids: list[str] = field(default_factory=list)  # every corrupted training sample (found or not)
    clean_labels: dict[str, int] = field(default_factory=dict)  # sample_id -> clean label, for Healed
    preset: str = ""  # the preset family whose tuned defaults apply
    # scenario-specific metrics of a model, e.g. REM's Healed or MUFAC's NoMUS: fn(model, splits, device)
    extra_metrics: Callable[..., dict[str, float]] | None = None

    def __post_init__(self) -> None:
        if not self.preset:
            self.preset = self.scenario


ScenarioFn = Callable[..., ScenarioTask]
SCENARIOS: Registry[ScenarioFn] = Registry("scenario")

# Which preset family a request reason maps to when the batch flow picks defaults.
REASON_PRESET = {"privacy": "subject", "other": "subject", "mislabelled": "corrupted", "poisoned": "corrupted"}


def register_scenario(name: str) -> Callable[[ScenarioFn], ScenarioFn]:
    def deco(fn: ScenarioFn) -> ScenarioFn:
        SCENARIOS.add(name, fn)
        return fn

    return deco


def make_task(name: str, version: DatasetVersion, seed: int, **options: Any) -> ScenarioTask:
    """Build scenario ``name`` on ``version`` with ``seed`` (options are scenario-specific)."""
    try:
        return SCENARIOS.get(name)(version, seed, **options)
    except TypeError as exc:
        raise ConfigError(f"scenario {name!r}: {exc}") from exc


@register_scenario("random")
def random_subset(version: DatasetVersion, seed: int, fraction: float = 0.1) -> ScenarioTask:
    """A random ``fraction`` of the training samples."""
    train = version.rows("train")
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(train))))
    ids = sorted(rng.choice(train["sample_id"].to_numpy(dtype=object), size=n, replace=False))
    return ScenarioTask("random", version, list(ids), "privacy", {"fraction": fraction})


@register_scenario("subject")
def subject_level(version: DatasetVersion, seed: int, fraction: float = 0.01) -> ScenarioTask:
    """All samples of a random ``fraction`` of the data subjects (at least one subject)."""
    subjects = version.subjects()
    rng = np.random.default_rng(seed)
    k = max(1, int(round(fraction * len(subjects))))
    chosen = set(rng.choice(np.array(subjects, dtype=object), size=k, replace=False))
    train = version.rows("train")
    ids = sorted(train.loc[train["subject_id"].isin(chosen), "sample_id"])
    return ScenarioTask("subject", version, ids, "privacy", {"fraction": fraction, "subjects": sorted(chosen)},
                        extra_metrics=_nomus_metrics)


def _nomus_metrics(model: Any, splits: Any, device: Any) -> dict[str, float]:
    """MUFAC's NoMUS for subject-level forgetting: the forget-vs-unseen attack, with the test split standing in
    for unseen identities where the dataset has no unseen split (Fashion-MNIST, digits)."""
    from forgetflow.metrics import nomus
    from forgetflow.metrics.mia import mufac_attack_accuracy
    from forgetflow.training import outputs

    unseen = splits.unseen if splits.unseen is not None else splits.test
    f, u, t = (outputs(model, s, device=device) for s in (splits.forget, unseen, splits.test))
    acc = mufac_attack_accuracy(f.loss.numpy(), u.loss.numpy())
    return {"mia_unseen_acc": acc, "nomus": nomus(t.accuracy / 100.0, acc)}


@register_scenario("full-class")
def full_class(version: DatasetVersion, seed: int, label: int | None = None) -> ScenarioTask:
    """Every training sample of one class (``label``, or one drawn with the seed)."""
    rng = np.random.default_rng(seed)
    cls = int(rng.integers(version.num_classes)) if label is None else int(label)
    if not 0 <= cls < version.num_classes:
        raise ConfigError(f"scenario full-class: label {cls} outside 0..{version.num_classes - 1}")
    train = version.rows("train")
    ids = sorted(train.loc[train["label"] == cls, "sample_id"])
    return ScenarioTask("full-class", version, ids, "privacy", {"label": cls})
