"""The deletion batch end to end on digits, on real components: Prefect (test harness), MLflow (SQLite store),
DVC (repository + local remote), Great Expectations, the SQLite ledger. Asserts the registry, the dataset
versions, the receipts and the ledger states, and that an injected failure leaves everything as it was."""

from __future__ import annotations

import json

import pytest

from forgetflow import receipts
from forgetflow.data import DatasetVersion
from forgetflow.errors import BatchFailed
from forgetflow.ledger import parse_csv
from flows.deletion_batch import STEPS, deletion_batch
from tasks import receipt_audit, tracking, versioning


def _file_requests(project, text: str) -> None:
    # fixed dates: the received_at age bound (intake.max_age_days) is tested in tests/unit/ledger
    project.open_ledger().add(parse_csv(text, max_age_days=None), source="import")


def _requests_csv(version: DatasetVersion) -> str:
    subjects = version.subjects()
    test_sample = version.rows("test")["sample_id"].iloc[0]
    return ("request_id,subject_id,sample_id,reason,received_at\n"
            f"r1,{subjects[0]},,privacy,2026-11-01T10:00:00Z\n"
            f"r2,{subjects[1]},,privacy,2026-11-01T11:00:00Z\n"
            f"r3,,{test_sample},other,2026-11-01T12:00:00Z\n"
            "r4,subj-nobody,,privacy,2026-11-01T13:00:00Z\n")


def _snapshot(project) -> dict:
    book = project.open_ledger()
    return {
        "states": {r["request_id"]: r["state"] for r in book.list()},
        "versions": [v["version"] for v in tracking.versions(project)],
        "champion": tracking.alias_version(project, tracking.CHAMPION),
        "challenger": tracking.alias_version(project, tracking.CHALLENGER),
        "data_version": DatasetVersion.load(project.version_dir).version,
        "dvc": versioning.data_md5(project),
        "receipts": sorted(p.name for p in project.receipts_dir.glob("*.json")) if project.receipts_dir.exists() else [],
        "ledger_receipts": len(book.receipts()),
        "alias_moves": len(book.alias_history()),
        "manifests": sorted(p.name for p in project.manifests_dir.glob("*.json")) if project.manifests_dir.exists() else [],
    }


@pytest.mark.slow
def test_batch_end_to_end(digits_project, prefect_harness):
    project = digits_project
    version = DatasetVersion.load(project.version_dir)
    _file_requests(project, _requests_csv(version))
    subjects = version.subjects()[:2]
    expected = sorted(version.rows("train").query("subject_id in @subjects")["sample_id"])

    result = deletion_batch(params_path=str(project.params_path))

    assert result["status"] == "done"
    assert result["requests"] == ["r1", "r2"]
    assert set(result["quarantined"]) == {"r3", "r4"}
    assert "only training samples" in result["quarantined"]["r3"]
    assert "subj-nobody" in result["quarantined"]["r4"]
    assert result["forget_samples"] == len(expected)
    for key in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "mia_auc"):
        assert key in result["metrics"] and key in result["oracle"]
    assert result["avg_gap"] >= 0 and set(result["seconds"]) >= {"unlearn", "oracle", "total"}

    # registry: a new version, tagged with batch and requests, challenger; champion moved iff promoted
    info = tracking.version_info(project, result["model_version"])
    assert info["tags"]["batch_id"] == result["batch_id"]
    assert info["tags"]["request_ids"] == "r1,r2"
    assert info["tags"]["manifest_sha256"] == result["manifest"]["sha256"]
    assert tracking.alias_version(project, tracking.CHALLENGER) == result["model_version"]
    assert (tracking.alias_version(project, tracking.CHAMPION) == result["model_version"]) == result["promoted"]
    moves = project.open_ledger().alias_history()
    assert [m["alias"] for m in moves][-2 if result["promoted"] else -1:] == (["challenger", "champion"] if result["promoted"] else ["challenger"])

    # dataset: version 2 without the forgotten samples, tracked by DVC, recorded in the ledger
    new = DatasetVersion.load(project.version_dir)
    assert new.version == 2
    assert not set(expected) & set(new.table["sample_id"])
    assert sorted(new.erased["sample_id"]) == expected
    assert versioning.data_md5(project) == result["data_version"]["dvc_md5"]
    assert [v["version"] for v in project.open_ledger().versions()] == [1, 2]

    # ledger states and receipts
    states = {r["request_id"]: r["state"] for r in project.open_ledger().list()}
    assert states == {"r1": "done", "r2": "done", "r3": "quarantined", "r4": "quarantined"}
    assert len(result["receipts"]) == 2
    doc = json.loads((project.root / result["receipts"][0]).read_text())
    assert doc["mlflow"]["model_version"] == result["model_version"]
    assert doc["manifest"]["sha256"] == result["manifest"]["sha256"]
    assert doc["data_version"]["after"]["version"] == 2
    assert receipt_audit.verify_receipts(project).ok

    # GPU work is serialised by a Prefect tag concurrency limit
    from prefect.client.orchestration import get_client

    from tasks.unlearn import GPU_TAG, unlearn_candidate

    assert GPU_TAG in unlearn_candidate.tags
    with get_client(sync_client=True) as client:
        assert client.read_concurrency_limit_by_tag(GPU_TAG).concurrency_limit == project.params.batch.gpu_concurrency

    # tampering with a receipt breaks verification
    path = project.root / result["receipts"][1]
    edited = json.loads(path.read_text())
    edited["verdict"]["promoted"] = not edited["verdict"]["promoted"]
    path.write_text(json.dumps(edited))
    problems = receipt_audit.verify_receipts(project).problems
    assert any("edited" in p for p in problems)


@pytest.mark.slow
@pytest.mark.parametrize("step", ["validate", "register", "promote", "erase", "receipts"])
def test_failure_mid_batch_leaves_everything_as_it_was(step, digits_project, prefect_harness):
    project = digits_project
    version = DatasetVersion.load(project.version_dir)
    _file_requests(project, _requests_csv(version))
    before = _snapshot(project)

    with pytest.raises(BatchFailed, match="rolled back"):
        deletion_batch(params_path=str(project.params_path), inject_failure=step)

    after = _snapshot(project)
    # quarantine is a judgement about the requests themselves and survives; the claimed valid ones are pending
    assert after["states"]["r1"] == after["states"]["r2"] == "pending"
    for key in ("versions", "champion", "challenger", "data_version", "dvc", "receipts", "ledger_receipts",
                "alias_moves", "manifests"):
        assert after[key] == before[key], key
    assert DatasetVersion.load(project.version_dir).fingerprint == version.fingerprint

    # a rerun succeeds
    result = deletion_batch(params_path=str(project.params_path))
    assert result["status"] == "done" and result["requests"] == ["r1", "r2"]
    assert receipt_audit.verify_receipts(project).ok


def test_every_drill_step_is_a_flow_step():
    assert set(STEPS) >= {"validate", "register", "promote", "erase", "receipts"}


@pytest.mark.slow
def test_nothing_pending_is_not_an_error(digits_project, prefect_harness):
    result = deletion_batch(params_path=str(digits_project.params_path))
    assert result["status"] == "nothing-to-do"
    assert receipts is not None
