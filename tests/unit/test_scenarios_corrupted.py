"""The ``corrupted`` scenario builds exactly REM's corruptions (Schoepf et al., arXiv 2505.17730;
docs/methods/rem.md) and scores Healed/Utility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from forgetflow.data import build_splits
from forgetflow.data.version import content_hash
from forgetflow.errors import ConfigError
from forgetflow.scenarios import PATCH, POISON_LABEL, make_task

SIZE = 100


def _by_id(version):
    table = version.table.reset_index(drop=True)
    return table, {sid: i for i, sid in enumerate(table["sample_id"])}


def _changed(task, clean_version):
    """Positions (in the clean table) whose label or pixels differ between the clean and corrupted versions."""
    t_clean, _ = _by_id(clean_version)
    t_bad, _ = _by_id(task.version)
    assert list(t_clean["sample_id"]) == list(t_bad["sample_id"])
    label = t_clean["label"].to_numpy() != t_bad["label"].to_numpy()
    pixels = (clean_version.images != task.version.images).reshape(len(t_clean), -1).any(1)
    return t_clean, t_bad, label, pixels


def test_random_swap_gives_every_chosen_sample_another_label(digits_version):
    task = make_task("corrupted", digits_version, 0, regularity="random-swap", discovery=0.5, size=SIZE)
    t_clean, t_bad, label, pixels = _changed(task, digits_version)
    ids = set(t_clean.loc[label, "sample_id"])
    assert ids == set(task.corrupted_ids) and len(ids) == SIZE  # every corrupted label differs, nothing else does
    assert not pixels.any()
    assert set(t_clean.loc[label, "split"]) == {"train"}
    shift = (t_bad.loc[label, "label"].to_numpy() - t_clean.loc[label, "label"].to_numpy()) % 10
    assert shift.min() >= 1 and shift.max() <= 9 and len(set(shift)) > 3  # (y + randint(1, 9)) % 10
    assert task.clean_labels == dict(zip(t_clean.loc[label, "sample_id"], t_clean.loc[label, "label"].astype(int)))
    assert task.reason == "mislabelled" and task.preset == "corrupted"


def test_inter_class_swaps_half_of_each_class_of_the_pair(digits_version):
    task = make_task("corrupted", digits_version, 0, regularity="inter-class", discovery=1.0, size=SIZE, pair=(3, 5))
    t_clean, t_bad, label, pixels = _changed(task, digits_version)
    assert not pixels.any() and int(label.sum()) == SIZE
    before = t_clean.loc[label, "label"].to_numpy()
    after = t_bad.loc[label, "label"].to_numpy()
    assert int(((before == 3) & (after == 5)).sum()) == SIZE // 2
    assert int(((before == 5) & (after == 3)).sum()) == SIZE // 2
    assert task.details["pair"] == [3, 5]


def test_backdoor_sets_the_corner_patch_to_the_max_pixel_and_the_label_to_zero(digits_version):
    task = make_task("corrupted", digits_version, 0, regularity="backdoor", discovery=0.1, size=SIZE)
    t_clean, t_bad, label, pixels = _changed(task, digits_version)
    chosen = np.flatnonzero(t_clean["sample_id"].isin(task.corrupted_ids).to_numpy())
    assert len(chosen) == SIZE and set(np.flatnonzero(pixels)) <= set(chosen)
    peak = digits_version.images[(t_clean["split"] == "train").to_numpy()].max()
    bad, clean = task.version.images, digits_version.images
    assert (bad[chosen, :, -PATCH:, -PATCH:] == peak).all()
    outside = np.ones(bad.shape[1:], dtype=bool)
    outside[:, -PATCH:, -PATCH:] = False
    assert (bad[chosen][:, outside] == clean[chosen][:, outside]).all()  # only the corner changes
    assert (t_bad.loc[chosen, "label"] == POISON_LABEL).all()
    # content hashes follow the pixels: recomputed where the trigger was added, untouched elsewhere
    assert all(t_bad.at[p, "content_hash"] == content_hash(bad[p]) for p in chosen)
    assert (t_bad.loc[~t_bad.index.isin(chosen), "content_hash"] == t_clean.loc[~t_clean.index.isin(chosen), "content_hash"]).all()
    assert task.reason == "poisoned"


def test_forget_set_is_the_discovered_share_and_the_original_is_shared_across_rates(digits_version):
    fingerprints = set()
    for d in (0.1, 0.5, 1.0):
        task = make_task("corrupted", digits_version, 0, regularity="random-swap", discovery=d, size=SIZE)
        assert len(task.forget_ids) == round(d * SIZE) and set(task.forget_ids) <= set(task.corrupted_ids)
        fingerprints.add(task.version.fingerprint)
    assert len(fingerprints) == 1  # the corruption does not depend on the discovery rate
    again = make_task("corrupted", digits_version, 0, regularity="random-swap", discovery=0.5, size=SIZE)
    assert again.forget_ids == make_task("corrupted", digits_version, 0, regularity="random-swap", discovery=0.5,
                                         size=SIZE).forget_ids
    other_seed = make_task("corrupted", digits_version, 1, regularity="random-swap", discovery=0.5, size=SIZE)
    assert other_seed.corrupted_ids != again.corrupted_ids


def test_corrupted_versions_have_their_own_fingerprint_and_leave_the_clean_one_alone(digits_version):
    labels_before = digits_version.table["label"].to_numpy().copy()
    pixels_before = digits_version.images.copy()
    prints = {digits_version.fingerprint}
    for regularity in ("random-swap", "inter-class", "backdoor"):
        task = make_task("corrupted", digits_version, 0, regularity=regularity, size=SIZE)
        assert task.version.root is None  # built in memory, nothing written
        prints.add(task.version.fingerprint)
    assert len(prints) == 4
    assert (digits_version.table["label"].to_numpy() == labels_before).all()
    assert (digits_version.images == pixels_before).all()


def test_default_size_is_scaled_to_the_dataset(digits_version):
    task = make_task("corrupted", digits_version, 0, regularity="backdoor")
    n_train = int((digits_version.table["split"] == "train").sum())
    assert len(task.corrupted_ids) == round(0.08 * n_train) < 1000


@pytest.mark.parametrize("options, message", [
    ({"regularity": "label-noise"}, "regularity"),
    ({"discovery": 0.0}, "discovery"),
    ({"discovery": 1.5}, "discovery"),
    ({"regularity": "inter-class", "size": 101}, "even"),
    ({"regularity": "inter-class", "pair": (2, 2)}, "pair"),
    ({"size": 10**6}, "size"),
])
def test_bad_options_are_named(digits_version, options, message):
    with pytest.raises(ConfigError, match=message):
        make_task("corrupted", digits_version, 0, **options)


class ConstantModel(nn.Module):
    """A real (if useless) classifier that always predicts one class."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label

    def forward(self, x):
        return nn.functional.one_hot(torch.full((len(x),), self.label), 10).float()


def test_healed_and_utility_score_against_clean_labels(digits_version):
    task = make_task("corrupted", digits_version, 0, regularity="backdoor", discovery=0.5, size=SIZE)
    splits = build_splits(task.version, task.forget_ids)
    clean = np.array(list(task.clean_labels.values()))
    hidden = np.array([task.clean_labels[s] for s in task.corrupted_ids if s not in set(task.forget_ids)])
    for c in (POISON_LABEL, 4):
        scores = task.extra_metrics(ConstantModel(c), splits, "cpu")
        # a model that outputs the poison label on every triggered image is scored against the clean labels
        assert scores["healed"] == pytest.approx(100.0 * (clean == c).mean())
        assert scores["healed_undiscovered"] == pytest.approx(100.0 * (hidden == c).mean())
        assert scores["utility"] == pytest.approx(100.0 * (splits.test.labels.numpy() == c).mean())
        assert scores["utility_x_healed"] == pytest.approx(scores["utility"] * scores["healed"] / 100.0)
