"""Reference sets without training: the IN/OUT assignment, views, storage, finding a usable set, the MIA entries."""

from pathlib import Path

import numpy as np
import pytest
import torch

from forgetflow.config import ReferenceParams
from forgetflow.data import DatasetVersion
from forgetflow.errors import ConfigError, DataError
from forgetflow.metrics.membership import Population, ReferenceInputs
from forgetflow.metrics.mia import MIAS, MIAInputs, run_all
from forgetflow.references import ReferenceSet, ReferenceView, assign_members, find_usable, halves
from forgetflow.training import Outputs, Recipe

RECIPE = Recipe(epochs=1, batch_size=8, lr=0.1, momentum=0.9, weight_decay=0.0)
ARCH = ("small-cnn", {"width": 8})


def test_every_training_sample_is_in_for_exactly_half_the_references():
    ids = [f"s{i}" for i in range(4000)]
    member = assign_members(ids, 8, seed=3)
    assert member.shape == (8, 4000)
    assert (member.sum(0) == 4).all()
    assert np.abs(member.sum(1) - 2000).max() < 150          # each model trains on about half
    assert np.array_equal(member, assign_members(ids, 8, seed=3))
    assert not np.array_equal(member, assign_members(ids, 8, seed=4))
    # a sample's assignment depends on its id only, not on the order or the other samples
    assert np.array_equal(assign_members(ids[::-1], 8, 3), member[:, ::-1])
    assert np.array_equal(assign_members(ids[:10], 8, 3), member[:, :10])
    # pairs of models share about a quarter of the samples: the halves are not all alike
    overlap = (member[0] & member[1]).mean()
    assert 0.2 < overlap < 0.35


@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_k_must_be_even(k):
    with pytest.raises(ConfigError, match="even"):
        halves(["a", "b"], k, 0)


def test_params_refuse_an_odd_k():
    with pytest.raises(ValueError, match="k must be even"):
        ReferenceParams(k=5)


def _synthetic_set(version: DatasetVersion, k: int = 4, seed: int = 0, arch=ARCH, recipe=RECIPE) -> ReferenceSet:
    ids = version.table["sample_id"].to_numpy(dtype=object)
    split = version.table["split"].to_numpy(dtype=object)
    train = split == "train"
    member = np.zeros((k, len(ids)), bool)
    member[:, train] = assign_members(ids[train], k, seed)
    half = member.copy()
    half[:, ~train] = halves(ids[~train], k, seed)
    phi = np.random.default_rng(version.version).normal(0, 1, (k, len(ids))).astype(np.float32)
    from dataclasses import asdict

    from forgetflow.references import reference_key

    key = reference_key(version.fingerprint, arch[0], arch[1], recipe, k, seed)
    return ReferenceSet(key=key, k=k, seed=seed, dataset=version.meta["dataset"], version=version.version,
                        fingerprint=version.fingerprint, arch=arch[0], arch_config=arch[1], recipe=asdict(recipe),
                        ids=ids, split=split, label=version.table["label"].to_numpy(dtype=np.int64), member=member,
                        half=half, phi=phi, seconds=np.ones(k))


def test_set_round_trips_and_views_say_which_references_may_be_used(digits_version, tmp_path):
    refs = _synthetic_set(digits_version)
    refs.write(tmp_path / refs.key)
    loaded = ReferenceSet.load(tmp_path / refs.key)
    assert np.array_equal(loaded.phi, refs.phi) and np.array_equal(loaded.member, refs.member)
    assert list(loaded.ids) == list(refs.ids) and loaded.summary() == refs.summary()

    train = digits_version.rows("train")["sample_id"].tolist()
    test = digits_version.rows("test")["sample_id"].tolist()
    view = loaded.view(train[:3] + test[:2], out_only=[train[1]])
    assert view.phi.shape == (4, 5)
    assert view.n_in.tolist() == [2, 0, 2, 0, 0]       # the erased sample and test samples: no IN reference
    assert view.n_out.tolist() == [2, 2, 2, 2, 2]      # every sample: exactly k/2 OUT references
    assert not view.member[:, 3:].any()
    assert np.array_equal(view.phi, refs.phi[:, refs.positions(view.ids)])
    with pytest.raises(DataError, match="2 sample\\(s\\) not in reference set .*: nope-1, nope-2"):
        loaded.view([train[0], "nope-1", "nope-2"])


def test_an_incomplete_set_does_not_load(tmp_path):
    (tmp_path / "refs-x").mkdir()
    with pytest.raises(DataError, match="not a complete reference set"):
        ReferenceSet.load(tmp_path / "refs-x")


def test_the_newest_compatible_set_serves_a_later_version(digits_version, tmp_path: Path):
    v1 = digits_version
    erased = v1.rows("train")["sample_id"].tolist()[:5]
    v2 = v1.without(erased, "batch-1")
    root = tmp_path / "references"
    assert find_usable(root, v2, *ARCH, RECIPE, 4, 0) is None
    old = _synthetic_set(v1)
    old.write(root / old.key)
    other_recipe = _synthetic_set(v1, recipe=Recipe(epochs=2, batch_size=8, lr=0.1, momentum=0.9, weight_decay=0.0))
    other_recipe.write(root / other_recipe.key)

    found = find_usable(root, v2, *ARCH, RECIPE, 4, 0)
    assert found is not None and found.refs.key == old.key
    assert found.out_only == tuple(sorted(erased)) and not found.current
    assert find_usable(root, v2, *ARCH, RECIPE, 4, 1) is None      # another seed
    assert find_usable(root, v2, *ARCH, RECIPE, 8, 0) is None      # another K
    assert find_usable(root, v1, *ARCH, RECIPE, 4, 0).current

    new = _synthetic_set(v2)
    new.write(root / new.key)
    latest = find_usable(root, v2, *ARCH, RECIPE, 4, 0)
    assert latest.refs.key == new.key and latest.out_only == ()
    # a set of a later version never serves an earlier one (it lacks the erased samples)
    assert find_usable(root, v1, *ARCH, RECIPE, 4, 0).refs.key == old.key


def _outputs(phi_target: np.ndarray) -> Outputs:
    """Two-class logits whose logit confidence of label 0 is exactly ``phi_target``."""
    logits = torch.zeros(len(phi_target), 2, dtype=torch.float64)
    logits[:, 0] = torch.as_tensor(phi_target)
    return Outputs(logits=logits, labels=torch.zeros(len(phi_target), dtype=torch.long))


def test_lira_and_rmia_run_in_the_mia_registry_only_with_references():
    rng = np.random.default_rng(0)
    k, n_f, n_t = 4, 20, 400
    def view(n, seen):
        mu = rng.normal(0, 1, n)
        phi = mu + rng.normal(0, 0.5, (k, n))
        member = np.zeros((k, n), bool)
        usable = np.r_[np.zeros(2, bool), np.ones(2, bool)][:, None].repeat(n, 1)   # two OUT references each
        return mu, ReferenceView(np.array([f"{seen}{i}" for i in range(n)], dtype=object), phi, member, usable)
    mu_f, forget = view(n_f, "f")
    mu_t, test = view(n_t, "t")
    mu_z, pop = view(300, "z")
    inputs = ReferenceInputs(forget, test, Population(mu_z + rng.normal(0, 0.5, 300), pop), ReferenceParams(k=4))
    retain = _outputs(rng.normal(2, 1, 50))
    memorised = MIAInputs(_outputs(mu_f + 5.0), retain, _outputs(mu_t + rng.normal(0, 0.5, n_t)), references=inputs)
    forgotten = MIAInputs(_outputs(mu_f + rng.normal(0, 0.5, n_f)), retain, memorised.test, references=inputs)

    without = run_all(MIAInputs(memorised.forget, retain, memorised.test))
    assert "lira_detected" not in without and "rmia_detected" not in without
    assert {MIAS.get("lira").key, MIAS.get("rmia").key} == {"lira_detected", "rmia_detected"}
    high = run_all(memorised, ["lira", "rmia"])
    low = run_all(forgotten, ["lira", "rmia"])
    assert high["lira_detected"] == 100.0
    assert high["rmia_detected"] >= 80.0   # RMIA reads probabilities: where the references are confident too, less room
    assert low["lira_detected"] <= 15.0 and low["rmia_detected"] <= 15.0
