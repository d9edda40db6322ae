"""The purge against a real DVC repository with a local remote (no Prefect): what leaves the cache and the
remote, the independent scan, restoring the current version, and refusing before deleting anything."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forgetflow import pipeline
from forgetflow.data import DatasetVersion, content_hash
from forgetflow.project import Project
from tasks import purge, versioning
from tests.conftest import make_project_dir


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def independent_scan(folder: Path, erased: set[str]) -> tuple[int, list[str]]:
    """Open every file under ``folder`` without forgetflow's scanner: (images hashed, files holding erased content)."""
    hashed, leaking = 0, []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if data.startswith(b"\x93NUMPY"):
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            found = {content_hash(img) for img in arr}
            hashed += len(arr)
        elif data.startswith(b"PAR1"):
            table = pd.read_parquet(io.BytesIO(data))
            if "content_hash" not in table.columns or "erased_in_version" in table.columns:
                continue  # tombstones name erased hashes on purpose
            found = set(table["content_hash"])
        else:
            continue
        if found & erased:
            leaking.append(str(path))
    return hashed, leaking


def bare_hashes(project: Project, version: DatasetVersion) -> set[str]:
    """The bare content hashes of ``version``'s erased samples (from version 1 as prepared before any strip)."""
    from forgetflow.data import prepare_version

    v1 = prepare_version(project.params.data, project.root, project.params.seed)
    return set(v1.table.set_index("sample_id").loc[version.erased["sample_id"], "content_hash"])


def _erase(project: Project, n: int, batch_id: str, start: int = 0) -> DatasetVersion:
    version = pipeline.current_version(project)
    new = version.without(version.rows("train")["sample_id"].iloc[start:start + n].tolist(), batch_id,
                          pipeline.tombstone_key(project))
    new.write(project.version_dir)
    versioning.track_and_push(project)
    return DatasetVersion.load(project.version_dir)


@pytest.fixture
def project(tmp_path) -> Project:
    proj = Project.load(make_project_dir(tmp_path / "p", "versioning: {git_commit: true}\n") / "params.yaml")
    pipeline.current_version(proj)
    versioning.track_and_push(proj)
    return proj


def test_two_erasures_leave_no_erased_content_in_cache_or_remote(project):
    cache, remote = project.root / ".dvc" / "cache", Path(project.dvc_remote_url)
    v1_text = versioning.snapshot(project)
    v1_objects = _files(cache)
    _erase(project, 5, "b1")
    first = purge.run_purge(project, "b1")
    v3 = _erase(project, 7, "b2", start=100)
    second = purge.run_purge(project, "b2")
    erased = bare_hashes(project, v3)
    assert len(erased) == 12

    # the purge's own evidence
    for evidence in (first, second):
        assert evidence["scan"]["ok"] and evidence["keep"]["git_history"] == "not kept"
        assert evidence["removed"]["cache"]["count"] >= 3 and evidence["removed"]["remote"]["count"] >= 3
        assert evidence["removed"]["holding_erased_content"]["objects"] >= 2  # a shard and a sample table
        assert set(evidence["scan"]["stores"]) == {"dvc-cache", "dvc-remote", "dvc-tmp", "workspace", "artifacts",
                                                   "state", "mlflow"}
        assert all(s["erased_content_found"] == 0 for s in evidence["scan"]["stores"].values())
        assert evidence["remaining"] == [] and evidence["tombstones"]["hash"] == "hmac-sha256"
    assert second["scan"]["erased_hashes"] == 12
    assert second["scan"]["stores"]["dvc-cache"]["images_hashed"] == len(v3.table)
    assert second["prepared"]["action"] == "stripped" and second["prepared"]["removed_samples"] == 7

    # an independent scan of every file of the cache, the remote and the prepared folder
    for folder in (cache, remote, project.prepared_dir):
        hashed, leaking = independent_scan(folder, erased)
        assert hashed >= len(v3.table) and leaking == [], folder
    assert _files(cache) == _files(remote)
    assert v1_objects - _files(cache), "nothing of version 1 was removed"

    # git history keeps the pointers (no content); the versions behind them are gone
    old = subprocess.run(["git", "show", "HEAD~2:data.dvc"], cwd=project.root, capture_output=True, text=True, check=True)
    assert old.stdout == v1_text
    with pytest.raises(Exception, match="cannot be restored"):
        versioning.restore(project, v1_text)
    assert versioning.data_md5(project) == second["dataset_version"]["dvc_md5"]

    # the current version comes back from the remote alone
    current = versioning.snapshot(project)
    shutil.rmtree(cache)
    shutil.rmtree(project.version_dir)
    versioning.restore(project, current)
    again = DatasetVersion.load(project.version_dir)
    assert again.fingerprint == v3.fingerprint and len(again.images) == len(v3.table)


def test_a_kept_object_holding_erased_pixels_refuses_before_deleting(project):
    v2 = _erase(project, 3, "b1")
    # corrupt the current version: an erased image's pixels written into a kept shard
    v1_prepared = DatasetVersion.load(project.prepared_dir)
    stone = v2.erased["sample_id"].iloc[0]
    pixels = v1_prepared.images[v1_prepared.table.index[v1_prepared.table["sample_id"] == stone][0]]
    shard = project.version_dir / "shards" / "shard-00000.npy"
    arr = np.load(shard)
    arr[0] = pixels
    shard.unlink()  # the file is hard-linked to the previous version's copy
    np.save(shard, arr)
    versioning.track_and_push(project)
    before_cache = _files(project.root / ".dvc" / "cache")
    before_remote = _files(Path(project.dvc_remote_url))

    with pytest.raises(purge.PurgeRefused, match="nothing deleted"):
        purge.run_purge(project, "b1")
    assert _files(project.root / ".dvc" / "cache") == before_cache
    assert _files(Path(project.dvc_remote_url)) == before_remote

    scan = purge.scan_only(project)
    assert not scan["scan"]["ok"] and scan["scan"]["stores"]["workspace"]["erased_content_found"] == 1


def test_drill_before_delete_deletes_nothing(project):
    _erase(project, 2, "b1")
    before = _files(project.root / ".dvc" / "cache")
    with pytest.raises(RuntimeError, match="drill"):
        purge.run_purge(project, "b1", fail_before_delete=True)
    assert _files(project.root / ".dvc" / "cache") == before


def test_without_dvc_the_purge_strips_prepared_and_scans_the_folders(tmp_path):
    proj = Project.load(make_project_dir(tmp_path / "p", "versioning: {enabled: false}\n") / "params.yaml")
    version = pipeline.current_version(proj)
    version.without(version.rows("train")["sample_id"].iloc[:4].tolist(), "b1").write(proj.version_dir)
    evidence = purge.run_purge(proj, "b1")
    assert evidence["keep"]["dvc"] is False and evidence["removed"] == {}
    assert evidence["prepared"]["removed_samples"] == 4
    assert set(evidence["scan"]["stores"]) == {"workspace", "artifacts", "state", "mlflow"} and evidence["scan"]["ok"]
