"""`forgetflow purge` as a user runs it: clean JSON with the evidence, a scan that fails with exit 1 when
erased pixels are still stored, and a one-line refusal while a batch holds the lock."""

from __future__ import annotations

import json

import numpy as np

from forgetflow import pipeline
from forgetflow.data import DatasetVersion
from forgetflow.project import Project
from tasks import versioning
from tests.cli.test_cli import ff
from tests.conftest import make_project_dir


def test_purge_json_scan_only_and_refusal(tmp_path):
    root = make_project_dir(tmp_path / "p")
    project = Project.load(root / "params.yaml")
    v1 = pipeline.current_version(project)
    versioning.track_and_push(project)
    v2 = v1.without(v1.rows("train")["sample_id"].iloc[:3].tolist(), "b1")
    v2.write(project.version_dir)
    versioning.track_and_push(project)

    out = ff("purge", "--json", cwd=root)
    assert out.returncode == 0, out.stderr
    evidence = json.loads(out.stdout)
    assert evidence["scan"]["ok"] and evidence["removed"]["cache"]["count"] >= 3
    assert (root / evidence["report"]).exists()

    # erased pixels written back into the workspace: the scan says where, and exits 1
    erased_row = v1.table.index[v1.table["sample_id"] == v2.erased["sample_id"].iloc[0]][0]
    shard = project.version_dir / "shards" / "shard-00000.npy"
    arr = np.load(shard)
    arr[1] = v1.images[erased_row]
    shard.unlink()
    np.save(shard, arr)
    out = ff("purge", "--scan-only", cwd=root)
    assert out.returncode == 1
    assert "ERASED CONTENT REMAINS" in out.stdout and "workspace" in out.stdout
    assert DatasetVersion.load(project.version_dir).version == 2

    project.open_ledger().start_batch("b-running")
    out = ff("purge", cwd=root)
    assert out.returncode == 1 and out.stderr.strip() == (
        "error: batch b-running is running; purge after it ends (every batch purges itself)")
