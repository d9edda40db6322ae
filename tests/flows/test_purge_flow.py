"""The purge inside the deletion batch (Prefect harness, MLflow, DVC with a local remote, the ledger): every
receipt carries the purge evidence, two batches leave no erased pixels in the cache or the remote, and the
"purge" drill (a failure after the purge's checks, before its first deletion) rolls the batch back."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from flows.deletion_batch import deletion_batch
from forgetflow import pipeline
from forgetflow.data import DatasetVersion
from forgetflow.errors import BatchFailed
from forgetflow.ledger import parse_csv
from tasks import receipt_audit, tracking, versioning
from tests.tasks.test_purge import _files, independent_scan


def _request(project, rid: str, subject: str) -> None:
    project.open_ledger().add(parse_csv("request_id,subject_id,sample_id,reason,received_at\n"
                                        f"{rid},{subject},,privacy,2026-11-01T10:00:00Z\n", max_age_days=None),
                            source="import")  # a fixed date: the age bound is tested in tests/unit/ledger


@pytest.mark.slow
def test_two_batches_purge_and_every_receipt_carries_the_evidence(digits_project, prefect_harness):
    project = digits_project
    cache, remote = project.root / ".dvc" / "cache", Path(project.dvc_remote_url)
    v1 = DatasetVersion.load(project.version_dir)
    subjects = v1.subjects()
    v1_objects = _files(cache)

    _request(project, "r1", subjects[0])
    first = deletion_batch(params_path=str(project.params_path))
    _request(project, "r2", subjects[1])
    _request(project, "r3", subjects[2])
    second = deletion_batch(params_path=str(project.params_path))
    assert first["status"] == second["status"] == "done"

    current = DatasetVersion.load(project.version_dir)
    owned = v1.rows("train")[v1.rows("train")["subject_id"].isin(subjects[:3])]
    erased = set(owned["content_hash"])
    key = pipeline.tombstone_key(project)
    assert set(current.erased["content_hmac"]) == set(key.digests(erased))  # keyed, never the bare hash
    manifest = json.loads((project.root / second["manifest"]["path"]).read_text())
    assert {r["content_hash"] for r in manifest["rows"]} <= set(key.digests(erased))

    docs = [json.loads((project.root / p).read_text()) for p in first["receipts"] + second["receipts"]]
    assert [d["request"]["request_id"] for d in docs] == ["r1", "r2", "r3"]
    for doc in docs:
        evidence = doc["purge"]
        assert evidence["scan"]["ok"] and evidence["batch_id"] == doc["manifest"]["batch_id"]
        assert evidence["dataset_version"]["version"] == doc["data_version"]["after"]["version"]
        assert evidence["removed"]["holding_erased_content"]["objects"] >= 2
        assert set(evidence["scan"]["stores"]) == {"dvc-cache", "dvc-remote", "dvc-tmp", "workspace", "artifacts",
                                                   "state", "mlflow"}
        assert all(s["erased_content_found"] == 0 for s in evidence["scan"]["stores"].values())
        assert all(s["bare_hash_mentions"] == 0 for s in evidence["scan"]["stores"].values())
        assert evidence["scan"]["stores"]["mlflow"]["objects"] > 0  # the batch runs' reports and manifests
        # the original still serves after batch 1 (it was promoted over only if the gates passed), so it is
        # either retained as champion or its weights are gone: either way the receipt says which
        models = evidence["models"]
        assert models["deleted_count"] + models["retained_count"] >= 1
    assert docs[2]["purge"]["scan"]["erased_hashes"] == len(erased)
    assert receipt_audit.verify_receipts(project).ok

    # each batch anchored its part of the chain on its MLflow run and in its batch JSON
    for result in (first, second):
        anchor = result["receipts_anchor"]
        tags = tracking.client(project).get_run(result["mlflow_run_id"]).data.tags
        assert tags["forgetflow.receipts.head_sha256"] == anchor["head_sha256"] == docs[anchor["head_seq"] - 1]["sha256"]
        summary = json.loads((project.reports_dir / result["batch_id"] / "summary.json").read_text())
        assert summary["receipts_anchor"] == anchor
    assert (first["receipts_anchor"]["count"], second["receipts_anchor"]["count"]) == (1, 2)

    # a chain from before anchors: verify says so, `forgetflow receipt anchor` anchors it once, as it stands
    tracking.remove_receipt_anchor(project, first["mlflow_run_id"])
    summary_path = project.reports_dir / first["batch_id"] / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({k: v for k, v in summary.items() if k != "receipts_anchor"}))
    assert receipt_audit.verify_receipts(project).problems == [
        f"batch {first['batch_id']}: 1 receipt(s) (from receipt 1) are not anchored (no MLflow run tag and no batch "
        "JSON names its head)"]
    made = receipt_audit.anchor_unanchored(project)
    assert [a["batch_id"] for a in made] == [first["batch_id"]] and receipt_audit.verify_receipts(project).ok

    for folder in (cache, remote, project.prepared_dir):
        hashed, leaking = independent_scan(folder, erased)
        assert hashed >= len(current.table) and leaking == [], folder
    assert v1_objects - _files(cache)

    # cutting the end of the chain (the last batch's receipts, their ledger rows and its batch JSON) is found
    for path in second["receipts"]:
        (project.root / path).unlink()
    (project.reports_dir / second["batch_id"] / "summary.json").unlink()
    with sqlite3.connect(project.ledger_url[len("sqlite:///"):]) as db:
        db.execute("delete from receipts where batch_id = ?", (second["batch_id"],))
        db.execute("delete from requests where batch_id = ?", (second["batch_id"],))
    problems = receipt_audit.verify_receipts(project).problems
    assert problems and problems[0].startswith(f"batch {second['batch_id']}: its anchor (MLflow run "
                                               f"{second['mlflow_run_id']}) holds 2 receipt(s)")

    # the current version is restorable from the remote alone
    text = versioning.snapshot(project)
    shutil.rmtree(cache)
    shutil.rmtree(project.version_dir)
    versioning.restore(project, text)
    assert DatasetVersion.load(project.version_dir).fingerprint == current.fingerprint


@pytest.mark.slow
def test_purge_drill_rolls_the_batch_back(digits_project, prefect_harness):
    project = digits_project
    v1 = DatasetVersion.load(project.version_dir)
    _request(project, "r1", v1.subjects()[0])
    cache = project.root / ".dvc" / "cache"
    before = {"cache": _files(cache), "dvc": versioning.data_md5(project),
              "receipts": sorted(p.name for p in project.receipts_dir.glob("*.json")) if project.receipts_dir.exists() else []}

    with pytest.raises(BatchFailed, match="rolled back"):
        deletion_batch(params_path=str(project.params_path), inject_failure="purge")

    assert project.open_ledger().get("r1")["state"] == "pending"
    assert versioning.data_md5(project) == before["dvc"]
    assert DatasetVersion.load(project.version_dir).fingerprint == v1.fingerprint
    assert before["cache"] <= _files(cache), "the drill deleted objects"
    assert (sorted(p.name for p in project.receipts_dir.glob("*.json")) if project.receipts_dir.exists() else []) == before["receipts"]

    result = deletion_batch(params_path=str(project.params_path))
    assert result["status"] == "done" and receipt_audit.verify_receipts(project).ok
