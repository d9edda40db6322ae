from pathlib import Path

import numpy as np
import pytest

from forgetflow.config import DataParams
from forgetflow.data import DatasetVersion, content_hash, prepare_version
from forgetflow.errors import DataError


@pytest.fixture
def v1(tmp_path) -> DatasetVersion:
    version = prepare_version(DataParams(dataset="digits", shard_size=128), tmp_path, seed=0)
    version.write(tmp_path / "current")
    return DatasetVersion.load(tmp_path / "current")


def test_version_one_has_ids_subjects_splits(v1):
    t = v1.table
    assert t["sample_id"].is_unique and len(t) == 1797
    assert set(t["split"]) == {"train", "val", "test"}
    train = v1.rows("train")
    assert (train["subject_id"] != "").all()
    sizes = train.groupby("subject_id").size().sort_index()
    assert sizes.iloc[:-1].min() >= 2 and sizes.max() <= 6  # seeded groups of a few (the last takes the rest)
    assert (v1.rows("test")["subject_id"] == "").all()


def test_build_is_deterministic_to_the_byte(tmp_path):
    a = prepare_version(DataParams(dataset="digits", shard_size=128), tmp_path, seed=0)
    b = prepare_version(DataParams(dataset="digits", shard_size=128), tmp_path, seed=0)
    a.write(tmp_path / "a")
    b.write(tmp_path / "b")
    assert a.fingerprint == b.fingerprint
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes(), f.name


def test_pixels_round_trip_and_content_hash(v1):
    fresh = DatasetVersion.load(v1.root)
    first = fresh.images[0]
    assert fresh.table["content_hash"].iloc[0] == content_hash(first)
    s = fresh.sample_set(split="test")
    assert s.images.dtype.is_floating_point is False and len(s) == len(fresh.rows("test"))


def test_erasure_rewrites_only_touched_shards(v1, tmp_path):
    train = v1.rows("train")
    victim = train[train["shard"] == 0]["sample_id"].iloc[:3].tolist()
    before = {p.name: p.read_bytes() for p in (v1.root / "shards").iterdir()}
    v2 = v1.without(victim, "b1")
    v2.write(v1.root)
    after = {p.name: p.read_bytes() for p in (v1.root / "shards").iterdir()}
    assert after["shard-00000.npy"] != before["shard-00000.npy"]
    assert all(after[n] == before[n] for n in before if n != "shard-00000.npy")
    reloaded = DatasetVersion.load(v1.root)
    assert reloaded.version == 2 and reloaded.meta["parent_fingerprint"] == v1.fingerprint
    assert not set(victim) & set(reloaded.table["sample_id"])
    assert sorted(reloaded.erased["sample_id"]) == sorted(victim)
    # every remaining sample still has its own pixels
    for row in reloaded.table.sample(20, random_state=0).itertuples():
        assert content_hash(reloaded.images[reloaded.table.index.get_loc(row.Index)]) == row.content_hash


def test_erasure_refuses_unknown_and_non_training_samples(v1):
    with pytest.raises(DataError, match="unknown"):
        v1.without(["nope"], "b")
    with pytest.raises(DataError, match="only training samples"):
        v1.without([v1.rows("test")["sample_id"].iloc[0]], "b")


def test_load_rejects_missing_folder(tmp_path):
    with pytest.raises(DataError, match="version.json missing"):
        DatasetVersion.load(tmp_path)
