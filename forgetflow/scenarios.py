"""Forgetting scenarios for benchmarks and tuning, found by name in ``SCENARIOS``.

A scenario turns a prepared dataset version into a ``ScenarioTask``: the version to train the original on
(corrupted-data scenarios alter it *before* training), the forget ids, the request reason it stands for,
and what its metrics need (the clean labels of corrupted samples, the forgotten class).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from forgetflow.data.version import DatasetVersion, content_hashes, table_fingerprint
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


# ---- corrupted data (REM's task space: Schoepf et al., arXiv 2505.17730, and its official code) -------
REGULARITIES = ("random-swap", "inter-class", "backdoor")
PATCH = 3  # side of the backdoor trigger, bottom-right corner
POISON_LABEL = 0  # label every triggered sample is given


@register_scenario("corrupted")
def corrupted(
    version: DatasetVersion,
    seed: int,
    regularity: str = "random-swap",
    discovery: float = 1.0,
    size: int | None = None,
    pair: tuple[int, int] | list[int] | None = None,
) -> ScenarioTask:
    """Corrupt ``size`` training samples *before* training; the forget set is the discovered fraction of them.

    ``regularity`` (REM's three kinds): ``random-swap`` gives each chosen sample the label ``(y + r) % K`` with
    ``r`` uniform in 1..K-1; ``inter-class`` relabels ``size/2`` samples of class A as B and ``size/2`` of B as
    A (``pair``; default (0, 6), T-shirt/top and shirt on Fashion-MNIST, the pair its classifiers confuse
    most, as the paper's cat/dog is on CIFAR-10); ``backdoor`` sets a 3x3 bottom-right patch to the
    dataset's maximum pixel value and the label to 0 (samples drawn from every class, as the official code
    does). ``size`` defaults to 1,000 (the paper's), capped at 8 % of the training split (digits: ~100).
    ``discovery`` in (0, 1] is the fraction of corrupted samples that were found: a seeded random subset of
    the corrupted ids becomes the forget set; undiscovered ones stay in the retain set.

    The returned task's version is an in-memory copy (nothing written) with the stored labels / pixels
    changed, content hashes recomputed for changed pixels and a fingerprint of its own, so originals and
    oracles trained on it are cached apart from the clean ones. The corruption depends on ``seed``,
    ``regularity``, ``size`` and ``pair`` only, so one original serves every discovery rate.
    """
    if regularity not in REGULARITIES:
        raise ConfigError(f"scenario corrupted: regularity must be one of {', '.join(REGULARITIES)}, not {regularity!r}")
    if not 0.0 < float(discovery) <= 1.0:
        raise ConfigError(f"scenario corrupted: discovery must be in (0, 1], not {discovery}")
    table = version.table.reset_index(drop=True)
    train_pos = np.flatnonzero((table["split"] == "train").to_numpy())
    k = version.num_classes
    n = int(size) if size is not None else min(1000, max(2, int(round(0.08 * len(train_pos)))))
    if not 1 <= n <= len(train_pos):
        raise ConfigError(f"scenario corrupted: size must be in 1..{len(train_pos)}, not {n}")
    rng = np.random.default_rng([seed, 0x5EED])  # corruption stream: independent of the discovery rate
    labels = table["label"].to_numpy(dtype=np.int64).copy()
    images = version.images
    details: dict[str, Any] = {"regularity": regularity, "discovery": float(discovery), "size": n}

    if regularity == "random-swap":
        chosen = np.sort(rng.choice(train_pos, size=n, replace=False))
        labels[chosen] = (labels[chosen] + rng.integers(1, k, size=n)) % k
    elif regularity == "inter-class":
        a, b = (int(c) for c in (pair if pair is not None else ((0, 6) if k > 6 else (0, 1))))
        if a == b or not (0 <= a < k and 0 <= b < k):
            raise ConfigError(f"scenario corrupted: pair must be two different classes in 0..{k - 1}, not {a}, {b}")
        if n % 2:
            raise ConfigError(f"scenario corrupted: inter-class needs an even size (half from each class), not {n}")
        picks = []
        for src, dst in ((a, b), (b, a)):
            pool = train_pos[labels[train_pos] == src]
            if len(pool) < n // 2:
                raise ConfigError(f"scenario corrupted: class {src} has {len(pool)} training samples, {n // 2} needed")
            pick = rng.choice(pool, size=n // 2, replace=False)
            picks.append((pick, dst))
        for pick, dst in picks:
            labels[pick] = dst
        chosen = np.sort(np.concatenate([p for p, _ in picks]))
        details["pair"] = [a, b]
    else:  # backdoor
        chosen = np.sort(rng.choice(train_pos, size=n, replace=False))
        peak = images[train_pos].max()
        images = images.copy()
        images[chosen, :, -PATCH:, -PATCH:] = peak
        labels[chosen] = POISON_LABEL
        details["trigger"] = {"patch": PATCH, "corner": "bottom-right", "value": int(peak), "label": POISON_LABEL}

    clean = {str(table.at[p, "sample_id"]): int(table.at[p, "label"]) for p in chosen}
    table = table.copy()
    table["label"] = labels
    if regularity == "backdoor":
        table.loc[chosen, "content_hash"] = content_hashes(images[chosen]).astype(str)
    meta = dict(version.meta)
    meta["corruption"] = {"scenario": "corrupted", "seed": seed, **{k_: v for k_, v in details.items() if k_ != "discovery"}}
    meta["fingerprint"] = table_fingerprint(table)
    corrupted_version = DatasetVersion(meta=meta, table=table, erased=version.erased.copy(), root=None, _images=images)

    corrupted_ids = sorted(clean)
    found = np.random.default_rng([seed, 0xD15C]).permutation(np.array(corrupted_ids, dtype=object))
    n_found = max(1, int(round(float(discovery) * n)))
    forget_ids = sorted(str(s) for s in found[:n_found])
    reason = "poisoned" if regularity == "backdoor" else "mislabelled"
    return ScenarioTask("corrupted", corrupted_version, forget_ids, reason, details, corrupted_ids=corrupted_ids,
                        clean_labels=clean, preset="corrupted", extra_metrics=_corruption_metrics(corrupted_ids, clean,
                                                                                                 forget_ids))


def _corruption_metrics(corrupted_ids: list[str], clean: dict[str, int], forget_ids: list[str]):
    """REM's scores of a model (Healed and Utility, as the REM paper defines them), in percent points.

    ``healed``: accuracy on every corrupted training sample (discovered or not; triggers kept on the image)
    against its clean label; ``healed_undiscovered``: the same on the undiscovered ones only (NaN at
    discovery 1); ``utility``: clean test accuracy; ``utility_x_healed``: utility x healed / 100.
    """
    wanted = set(corrupted_ids)
    hidden = wanted - set(forget_ids)

    def metrics(model: Any, splits: Any, device: Any) -> dict[str, float]:
        import torch

        from forgetflow.metrics import healed
        from forgetflow.training import Outputs, outputs

        train = splits.train
        samples = train.subset(np.flatnonzero([str(sid) in wanted for sid in train.ids]))
        truth = torch.as_tensor([clean[str(sid)] for sid in samples.ids], dtype=torch.long)
        out = outputs(model, samples, device=device)
        score = healed(out, truth)
        is_hidden = torch.as_tensor([str(sid) in hidden for sid in samples.ids], dtype=torch.bool)
        hidden_score = (healed(Outputs(out.logits[is_hidden], out.labels[is_hidden]), truth[is_hidden])
                        if bool(is_hidden.any()) else float("nan"))
        utility = outputs(model, splits.test, device=device).accuracy
        return {"healed": score, "healed_undiscovered": hidden_score, "utility": utility,
                "utility_x_healed": utility * score / 100.0}

    return metrics


# the grid a scenario's benchmark (and a grid search) covers when no --grid is given
DEFAULT_GRIDS = {"corrupted": {"regularity": ["random-swap", "inter-class", "backdoor"], "discovery": [0.1, 0.5, 1.0]}}


def grid_cells(scenario: str, options: dict[str, Any], grid: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """Every option combination of the grid (the scenario's default grid when none is given), over ``options``."""
    grid = grid if grid else DEFAULT_GRIDS.get(scenario, {})
    if not grid:
        return [dict(options)]
    keys = list(grid)
    return [{**options, **dict(zip(keys, values))} for values in itertools.product(*(grid[k] for k in keys))]
