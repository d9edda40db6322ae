"""Every registry, checked the same way, and every entry of each (the registries are the test lists).

For each registry: the exact set of names (a guard: a list that silently shrinks or a new entry without its
test fails here), kebab-case keys, and an unknown name refused with a hint. Then each kind's contract:
a model builds, runs and survives its checkpoint; an MIA convention returns a finite score in its range,
the same twice; a scenario draws a non-empty, seeded forget set from the training split; a dataset source
yields pixels, labels and splits that agree. Methods have their own file (test_every_method.py), gates theirs
(test_every_gate.py); here both are checked only for their exact names.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetflow.data.sources import DATASETS, RawDataset, SourceSettings
from forgetflow.config import ReferenceParams
from forgetflow.errors import UnknownNameError
from forgetflow.gates import GATES
from forgetflow.ledger.reasons import REASONS
from forgetflow.methods import METHODS
from forgetflow.metrics.mia import MIAS, MIAInputs
from forgetflow.references import Population, ReferenceInputs, ReferenceView
from forgetflow.models import MODELS, build_model, load_checkpoint, save_checkpoint
from forgetflow.scenarios import SCENARIOS, make_task
from forgetflow.training import Outputs
from tests.contract.test_every_method import EXPECTED as EXPECTED_METHODS
from tests.unit.data.test_sources import _idx, _mufac_folder

REGISTRIES = {
    "methods": (METHODS, EXPECTED_METHODS),
    "MIA conventions": (MIAS, {"svc-efficacy", "entropy-logreg", "loss-auc", "mufac-unseen", "lira", "rmia"}),
    "scenarios": (SCENARIOS, {"random", "subject", "full-class", "corrupted"}),
    "models": (MODELS, {"small-cnn", "resnet18"}),
    "datasets": (DATASETS, {"fashion-mnist", "digits", "image-folder"}),
    "gates": (GATES, {"utility", "forgetting", "privacy", "cost"}),
}
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@pytest.mark.parametrize("kind", REGISTRIES)
def test_registry_holds_exactly_the_expected_names(kind):
    registry, expected = REGISTRIES[kind]
    assert set(registry.names()) == expected and len(registry) == len(expected)
    assert all(KEBAB.match(name) for name in registry.names())


@pytest.mark.parametrize("kind", REGISTRIES)
def test_unknown_name_is_refused_with_a_hint(kind):
    registry, _ = REGISTRIES[kind]
    name = registry.names()[0]
    with pytest.raises(UnknownNameError, match=f"Did you mean {re.escape(name)}"):
        registry.get(name + "x")


# ---- models -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_runs_and_round_trips_its_checkpoint(name, tmp_path):
    torch.manual_seed(0)
    size = 64 if name == "resnet18" else 8
    model = build_model(name, in_channels=1, num_classes=10, image_size=size).eval()
    x = torch.rand(3, 1, size, size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, 10) and torch.isfinite(y).all()
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.pt")).eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), y)


# ---- MIA conventions ----------------------------------------------------------------------------
def _outputs(rng: np.random.Generator, n: int, confident: float) -> Outputs:
    labels = torch.as_tensor(rng.integers(0, 10, n))
    logits = torch.as_tensor(rng.normal(0, 1, (n, 10)), dtype=torch.float32)
    logits[torch.arange(n), labels] += confident  # members: higher confidence on the true label
    return Outputs(logits=logits, labels=labels)


@pytest.mark.parametrize("name", MIAS.names())
def test_every_mia_convention_scores_in_its_range_and_repeats(name):
    rng = np.random.default_rng(0)
    inputs = MIAInputs(forget=_outputs(rng, 60, 4.0), retain=_outputs(rng, 200, 4.0), test=_outputs(rng, 200, 0.5),
                       unseen=_outputs(rng, 60, 0.5), max_shadow=200, seed=0)
    spec = MIAS.get(name)
    if spec.needs_references:  # per-sample attacks: without reference models they are skipped (nan)
        assert np.isnan(spec.fn(inputs))
        inputs = dataclasses.replace(inputs, references=_references(rng, 60, 200))
    score = spec.fn(inputs)
    assert np.isfinite(score) and score == spec.fn(inputs)
    assert 0.0 <= score <= (1.0 if name in ("loss-auc", "mufac-unseen") else 100.0)
    assert spec.key.startswith("lira_" if name == "lira" else "rmia_" if name == "rmia" else "mia_") and spec.convention
    assert len({MIAS.get(n).key for n in MIAS.names()}) == len(MIAS)  # each reports under its own metric key


def _references(rng: np.random.Generator, n_forget: int, n_test: int) -> ReferenceInputs:
    """Four reference models' φ on the forget and test samples, two OUT and usable for each sample."""

    def view(n: int, prefix: str) -> ReferenceView:
        usable = np.r_[np.zeros(2, bool), np.ones(2, bool)][:, None].repeat(n, 1)
        return ReferenceView(np.array([f"{prefix}{i}" for i in range(n)], dtype=object), rng.normal(0.5, 1.0, (4, n)),
                             np.zeros((4, n), bool), usable)

    population = view(300, "z")
    return ReferenceInputs(view(n_forget, "f"), view(n_test, "t"), Population(rng.normal(0.5, 1.0, 300), population),
                           ReferenceParams(k=4))


# ---- scenarios ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCENARIOS.names())
def test_every_scenario_draws_a_seeded_forget_set_from_training_samples(name, digits_version):
    task = make_task(name, digits_version, 0)
    train = set(task.version.rows("train")["sample_id"])
    assert task.forget_ids and set(task.forget_ids) <= train
    assert task.reason in REASONS and task.preset
    assert make_task(name, digits_version, 0).forget_ids == task.forget_ids


# ---- dataset sources ----------------------------------------------------------------------------
def _fashion_files(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for stem, shape in (("train-images-idx3-ubyte", (12, 28, 28)), ("train-labels-idx1-ubyte", (12,)),
                        ("t10k-images-idx3-ubyte", (4, 28, 28)), ("t10k-labels-idx1-ubyte", (4,))):
        _idx(root / f"{stem}.gz", rng.integers(0, 10 if "labels" in stem else 256, shape))
    return root


def _image_folder(root: Path) -> Path:
    _mufac_folder(root)
    return root


RAW = {"fashion-mnist": _fashion_files, "digits": lambda root: None, "image-folder": _image_folder}


def test_every_dataset_has_a_raw_fixture():
    assert set(RAW) == set(DATASETS.names())


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_source_yields_consistent_samples(name, tmp_path):
    raw = DATASETS.get(name)(SourceSettings(raw=RAW[name](tmp_path / "raw"), seed=0, image_size=16))
    assert isinstance(raw, RawDataset) and raw.images.dtype == np.uint8 and raw.images.ndim == 4
    n = len(raw.labels)
    assert n > 0 and raw.images.shape[0] == len(raw.split) == n
    assert set(raw.split) <= {"train", "test", "unseen"} and "train" in set(raw.split)
    assert 0 <= raw.labels.min() and raw.labels.max() < len(raw.classes)
