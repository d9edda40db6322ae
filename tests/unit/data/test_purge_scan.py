"""The pure side of the purge: what a stored object is, which erased hashes it holds, stripping a version."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from forgetflow.config import DataParams
from forgetflow.data import DatasetVersion, content_hash, prepare_version
from forgetflow.data.purge import ScanReport, Targets, scan_object, strip_erased, targets_of


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


def test_pixels_are_hashed_image_by_image(v1):
    images = v1.images[:10]
    target = content_hash(images[3])
    scan = scan_object("shard", _npy(images), frozenset({target, "0" * 32}))
    assert scan.kind == "pixels" and scan.images == 10
    assert scan.hits == [target]
    clean = scan_object("shard", _npy(np.delete(images, 3, axis=0)), frozenset({target}))
    assert clean.hits == [] and clean.images == 9


def test_sample_tables_leak_but_tombstones_and_manifests_are_records(v1):
    target = str(v1.table["content_hash"].iloc[5])
    searched = frozenset({target})
    live = scan_object("samples.parquet", _parquet(v1.table), searched)
    assert live.kind == "sample-table" and live.hits == [target]
    stones = pd.DataFrame({"sample_id": ["x"], "subject_id": ["s"], "content_hash": [target],
                           "erased_in_version": [2], "batch_id": ["b"]})
    tomb = scan_object("erased.parquet", _parquet(stones), searched)
    assert tomb.kind == "tombstones" and tomb.hits == [] and tomb.records == 1
    manifest = {"batch_id": "b", "rows": [{"sample_id": "x", "content_hash": target}]}
    doc = scan_object("m.json", json.dumps(manifest).encode(), searched)
    assert doc.kind == "manifest" and doc.hits == [] and doc.records == 1
    listing = scan_object("x.dir", json.dumps([{"md5": "a" * 32, "relpath": "current/version.json"}]).encode(), searched)
    assert listing.kind == "dir"


def test_a_broken_array_is_unreadable_and_fails_the_report():
    scan = scan_object("shard", b"\x93NUMPY garbage", frozenset())
    assert scan.kind == "unreadable" and scan.error
    report = ScanReport(Targets(frozenset()))
    report.add("dvc-cache", scan)
    assert not report.ok and "cannot be read" in report.describe_problem()


def test_targets_exempt_pixels_a_live_sample_still_holds(v1):
    erased = v1.without(v1.rows("train")["sample_id"].iloc[:3].tolist(), "b1")
    # a live test sample with exactly the pixels of an erased one: those pixels cannot leave storage
    twin = erased.erased["content_hash"].iloc[0]
    erased.table.loc[erased.table["split"] == "test", "content_hash"] = (
        [twin] + list(erased.table.loc[erased.table["split"] == "test", "content_hash"].iloc[1:]))
    targets = targets_of(erased)
    assert len(targets.erased) == 3 and twin in targets.exempt and twin not in targets.searched
    assert targets.exempt[twin] == [erased.rows("test")["sample_id"].iloc[0]]


def test_report_names_the_leaking_object(v1):
    target = content_hash(v1.images[0])
    report = ScanReport(Targets(frozenset({target})))
    report.scan_all("dvc-remote", [("files/md5/ab/cd", _npy(v1.images[:4])), ("ok", _npy(v1.images[4:8]))])
    assert not report.ok
    assert "dvc-remote object files/md5/ab/cd (pixels) holds 1 erased hash" in report.describe_problem()
    summary = report.to_dict()
    assert summary["stores"]["dvc-remote"]["objects"] == 2 and summary["stores"]["dvc-remote"]["images_hashed"] == 8


def test_strip_erased_removes_rows_and_pixels_keeps_the_version_number(v1, tmp_path):
    gone = v1.rows("train")["sample_id"].iloc[[0, 200, 700]].tolist()
    v2 = v1.without(gone, "b1")
    stripped = strip_erased(v1, v2.erased)
    assert stripped is not None and stripped.version == 1
    assert not set(gone) & set(stripped.table["sample_id"])
    assert sorted(stripped.erased["sample_id"]) == sorted(gone)
    stripped.write(tmp_path / "stripped")
    again = DatasetVersion.load(tmp_path / "stripped")
    hashes = {content_hash(img) for img in again.images}
    assert not hashes & set(v2.erased["content_hash"])
    assert again.fingerprint == v2.fingerprint  # the same samples as the erased version
    assert strip_erased(again, v2.erased) is None  # nothing left to strip
