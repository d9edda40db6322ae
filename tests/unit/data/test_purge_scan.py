"""The pure side of the purge: what a stored object is, which erased images it holds or names, stripping a
version; keyed tombstones and their migration."""

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from forgetflow.config import DataParams
from forgetflow.data import DatasetVersion, content_hash, prepare_version
from forgetflow.data.purge import ScanReport, Targets, scan_object, strip_erased, targets_of
from forgetflow.data.tombstones import TombstoneKey
from forgetflow.errors import DataError

KEY = TombstoneKey(b"k" * 40, "test")


@pytest.fixture
def v1(tmp_path) -> DatasetVersion:
    version = prepare_version(DataParams(dataset="digits", shard_size=128), tmp_path, seed=0)
    version.write(tmp_path / "v1")
    return DatasetVersion.load(tmp_path / "v1")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _targets(*bare: str) -> Targets:
    return Targets(frozenset(KEY.digest(h) for h in bare), KEY)


def test_pixels_are_hashed_image_by_image(v1):
    images = v1.images[:10]
    target = content_hash(images[3])
    scan = scan_object("shard", _npy(images), _targets(target, "0" * 32))
    assert scan.kind == "pixels" and scan.images == 10
    assert scan.hits == [KEY.digest(target)]
    clean = scan_object("shard", _npy(np.delete(images, 3, axis=0)), _targets(target))
    assert clean.hits == [] and clean.images == 9


def test_pixels_are_found_in_other_layouts_and_inside_archives(v1):
    image = v1.images[7]  # [1, 8, 8]
    targets = _targets(content_hash(image))
    assert scan_object("one.npy", _npy(image), targets).hits  # a single [C, H, W] image
    assert scan_object("hw.npy", _npy(v1.images[5:9, 0]), targets).hits  # N grayscale [H, W] images
    assert scan_object("nhwc.npy", _npy(v1.images[5:9].transpose(0, 2, 3, 1)), targets).hits
    buf = io.BytesIO()
    np.savez_compressed(buf, losses=np.zeros(4, dtype=np.float32), pixels=v1.images[5:9])
    npz = scan_object("outputs.npz", buf.getvalue(), targets)
    assert npz.kind == "archive" and npz.hits == sorted(targets.erased) and npz.images == 4
    values = scan_object("loss.npy", _npy(np.zeros(10, dtype=np.float32)), targets)
    assert values.kind == "array" and not values.hits
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert scan_object("objects.npy", buf.getvalue(), targets).kind == "pickle"  # never unpickled


def test_a_torch_checkpoint_is_a_model_not_scanned_for_pixels(tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"state": torch.nn.Linear(2, 2).state_dict()}, path)
    scan = scan_object("m.pt", path.read_bytes(), _targets("a" * 32))
    assert scan.kind == "model" and not scan.hits


def test_sample_tables_leak_but_tombstones_and_manifests_are_records(v1):
    bare = str(v1.table["content_hash"].iloc[5])
    targets = _targets(bare)
    keyed = KEY.digest(bare)
    live = scan_object("samples.parquet", _parquet(v1.table), targets)
    assert live.kind == "sample-table" and live.hits == [keyed]
    stones = pd.DataFrame({"sample_id": ["x"], "subject_id": ["s"], "content_hmac": [keyed],
                           "erased_in_version": [2], "batch_id": ["b"]})
    tomb = scan_object("erased.parquet", _parquet(stones), targets)
    assert tomb.kind == "tombstones" and tomb.hits == [] and tomb.records == 1 and tomb.bare == []
    manifest = {"batch_id": "b", "rows": [{"sample_id": "x", "content_hash": keyed}]}
    doc = scan_object("m.json", json.dumps(manifest).encode(), targets)
    assert doc.kind == "manifest" and doc.hits == [] and doc.records == 1 and doc.bare == []
    listing = scan_object("x.dir", json.dumps([{"md5": "a" * 32, "relpath": "current/version.json"}]).encode(), targets)
    assert listing.kind == "dir"


def test_bare_hashes_are_named_wherever_they_appear(v1):
    """Tombstones, manifests and reports written before keyed hashes confirm an image to whoever holds it."""
    bare = str(v1.table["content_hash"].iloc[5])
    targets = _targets(bare)
    legacy = pd.DataFrame({"sample_id": ["x"], "subject_id": ["s"], "content_hash": [bare],
                           "erased_in_version": [2], "batch_id": ["b"]})
    tomb = scan_object("erased.parquet", _parquet(legacy), targets)
    assert tomb.kind == "tombstones" and tomb.bare == [KEY.digest(bare)] and not tomb.hits
    old_manifest = json.dumps({"batch_id": "b", "rows": [{"sample_id": "x", "content_hash": bare}]}).encode()
    assert scan_object("m.json", old_manifest, targets).bare == [KEY.digest(bare)]
    report = f"<p>duplicate of {bare} in the test split</p>".encode()
    assert scan_object("report.html", report, targets).bare == [KEY.digest(bare)]
    sqlite = b"SQLite format 3\x00" + b"\x00" * 50 + bare.encode() + b"\x00"
    found = scan_object("ledger.db", sqlite, targets)
    assert found.kind == "database" and found.bare == [KEY.digest(bare)]
    # an md5 of the same length that is not an erased image's hash is nothing
    assert scan_object("x.txt", b"abc " + ("f" * 32).encode(), targets).bare == []

    summary = ScanReport(targets)
    summary.scan_all("state", [("reports/b/report.html", report)])
    assert summary.ok and summary.to_dict()["bare_mentions"][0]["object"] == "reports/b/report.html"


def test_a_broken_array_is_unreadable_and_fails_the_report():
    scan = scan_object("shard", b"\x93NUMPY garbage", _targets())
    assert scan.kind == "unreadable" and scan.error
    report = ScanReport(_targets())
    report.add("dvc-cache", scan)
    assert not report.ok and "cannot be read" in report.describe_problem()
    broken_zip = b"PK\x03\x04" + b"\x00" * 20
    assert scan_object("x.npz", broken_zip, _targets()).kind == "unreadable"


def test_targets_are_keyed_and_exempt_pixels_a_live_sample_still_holds(v1):
    erased = v1.without(v1.rows("train")["sample_id"].iloc[:3].tolist(), "b1", KEY)
    assert list(erased.erased.columns) == ["sample_id", "subject_id", "content_hmac", "erased_in_version", "batch_id"]
    assert erased.meta["tombstone_key_id"] == KEY.key_id
    bare = v1.table.set_index("sample_id").loc[erased.erased["sample_id"].iloc[0], "content_hash"]
    assert erased.erased["content_hmac"].iloc[0] == KEY.digest(bare) and bare not in set(erased.erased["content_hmac"])
    # a live test sample with exactly the pixels of an erased one: those pixels cannot leave storage
    erased.table.loc[erased.table["split"] == "test", "content_hash"] = (
        [bare] + list(erased.table.loc[erased.table["split"] == "test", "content_hash"].iloc[1:]))
    targets = targets_of(erased, KEY)
    twin = KEY.digest(bare)
    assert len(targets.erased) == 3 and twin in targets.exempt and twin not in targets.searched
    assert targets.exempt[twin] == [erased.rows("test")["sample_id"].iloc[0]]
    with pytest.raises(DataError, match="keyed with key id"):
        targets_of(erased, TombstoneKey(b"another key, not the one used....", "test"))


def test_tombstones_with_bare_hashes_are_keyed_without_the_images(v1, tmp_path):
    """Migration: old tombstones held content_hash; keying that digest needs no image."""
    v2 = v1.without(v1.rows("train")["sample_id"].iloc[:4].tolist(), "b1", KEY)
    bare = v1.table.set_index("sample_id").loc[v2.erased["sample_id"], "content_hash"].tolist()
    legacy = v2.erased.drop(columns=["content_hmac"]).assign(content_hash=bare)
    v2.write(tmp_path / "v2")
    legacy.to_parquet(tmp_path / "v2" / "erased.parquet", index=False)
    meta = json.loads((tmp_path / "v2" / "version.json").read_text())
    meta.pop("tombstone_key_id")
    (tmp_path / "v2" / "version.json").write_text(json.dumps(meta))
    old = DatasetVersion.load(tmp_path / "v2")
    assert not old.tombstones_keyed
    with pytest.raises(DataError, match="key them first"):
        old.write(tmp_path / "again")
    keyed = old.with_keyed_tombstones(KEY)
    assert list(keyed.erased["content_hmac"]) == KEY.digests(bare) and keyed.fingerprint == old.fingerprint
    # the next erasure converts them on the way
    v3 = old.without(old.rows("train")["sample_id"].iloc[:1].tolist(), "b2", KEY)
    assert len(v3.erased) == 5 and set(keyed.erased["content_hmac"]) < set(v3.erased["content_hmac"])


def test_report_names_the_leaking_object(v1):
    target = content_hash(v1.images[0])
    report = ScanReport(_targets(target))
    report.scan_all("dvc-remote", [("files/md5/ab/cd", _npy(v1.images[:4])), ("ok", _npy(v1.images[4:8]))])
    assert not report.ok
    assert "dvc-remote object files/md5/ab/cd (pixels) holds 1 erased hash" in report.describe_problem()
    summary = report.to_dict()
    assert summary["stores"]["dvc-remote"]["objects"] == 2 and summary["stores"]["dvc-remote"]["images_hashed"] == 8
    assert summary["key_id"] == KEY.key_id and summary["hash"] == "hmac-sha256"


def test_strip_erased_removes_rows_and_pixels_keeps_the_version_number(v1, tmp_path):
    gone = v1.rows("train")["sample_id"].iloc[[0, 200, 700]].tolist()
    v2 = v1.without(gone, "b1", KEY)
    targets = targets_of(v2, KEY)
    stripped = strip_erased(v1, v2, targets)
    assert stripped is not None and stripped.version == 1
    assert not set(gone) & set(stripped.table["sample_id"])
    assert sorted(stripped.erased["sample_id"]) == sorted(gone)
    assert set(stripped.erased["content_hmac"]) == set(v2.erased["content_hmac"])
    stripped.write(tmp_path / "stripped")
    again = DatasetVersion.load(tmp_path / "stripped")
    assert not targets.match(content_hash(img) for img in again.images)
    assert again.fingerprint == v2.fingerprint  # the same samples as the erased version
    assert strip_erased(again, v2, targets) is None  # nothing left to strip


def test_strip_erased_also_finds_the_pixels_under_other_sample_ids(v1):
    """A copy built with other ids (a benchmark's copy, say) still loses the erased images."""
    gone = v1.rows("train")["sample_id"].iloc[[3, 4]].tolist()
    v2 = v1.without(gone, "b1", KEY)
    copy = DatasetVersion(meta=dict(v1.meta), table=v1.table.assign(sample_id="copy-" + v1.table["sample_id"]),
                          erased=v1.erased, _images=v1.images)
    stripped = strip_erased(copy, v2, targets_of(v2, KEY))
    assert stripped is not None and len(stripped.table) == len(v1.table) - 2
    assert sorted(stripped.erased["sample_id"]) == sorted("copy-" + s for s in gone)
    assert set(stripped.erased["batch_id"]) == {"b1"}
