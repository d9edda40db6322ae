"""Receipt verification with every link followed: files ↔ ledger chain, manifest, ledger, DVC version, MLflow."""

from __future__ import annotations

from typing import Any

from forgetflow import evidence, receipts
from forgetflow.project import Project
from tasks import tracking
from tasks.claims import ledger


def verify_receipts(project: Project) -> receipts.Verification:
    """Verify the whole chain; every problem is one readable line."""
    book = ledger(project)
    rows = book.receipts()
    versions = {(v["dataset"], v["version"]): v for v in book.versions()}
    checks = [receipts.check_manifest_link(project.root), _ledger_link(book, versions), _mlflow_link(project),
              evidence.check_receipt, lambda doc: evidence.check_receipt_record(doc, project.root)]
    result = receipts.verify(rows, project.root, checks)
    on_disk = sorted(p.name for p in project.receipts_dir.glob("*.json")) if project.receipts_dir.exists() else []
    known = {project.root.joinpath(r["path"]).name for r in rows}
    for name in on_disk:
        if name not in known:
            result.problems.append(f"receipt file {name} is not in the ledger's chain")
    return result


def _ledger_link(book, versions: dict[tuple[str, int], dict[str, Any]]) -> receipts.LinkCheck:
    def check(doc: dict[str, Any]) -> list[str]:
        problems = []
        req = doc.get("request", {})
        row = book.get(req.get("request_id", ""))
        if row is None:
            problems.append(f"request {req.get('request_id')} is not in the ledger")
        else:
            if row["content_sha256"] != req.get("content_sha256"):
                problems.append(f"request {req.get('request_id')} content differs from the ledger's")
            if row["state"] != "done":
                problems.append(f"request {req.get('request_id')} is {row['state']} in the ledger, not done")
        after = doc.get("data_version", {}).get("after", {})
        found = versions.get((after.get("dataset"), after.get("version")))
        if found is None:
            problems.append(f"dataset version {after.get('dataset')} v{after.get('version')} is not in the ledger")
        elif found["fingerprint"] != after.get("fingerprint"):
            problems.append(f"dataset version v{after.get('version')} fingerprint differs from the ledger's")
        return problems

    return check


def _mlflow_link(project: Project) -> receipts.LinkCheck:
    def check(doc: dict[str, Any]) -> list[str]:
        info = doc.get("mlflow", {})
        run_id = info.get("run_id")
        if not run_id or not tracking.run_exists(project, run_id):
            return [f"MLflow run {run_id} does not exist"]
        run = tracking.client(project).get_run(run_id)
        problems = []
        if run.data.tags.get("manifest_sha256") != doc.get("manifest", {}).get("sha256"):
            problems.append(f"MLflow run {run_id} names another manifest")
        try:
            version = tracking.version_info(project, str(info.get("model_version")))
        except Exception:  # noqa: BLE001 - a missing version is the finding
            return problems + [f"model version {info.get('model_version')} does not exist in the registry"]
        if version["run_id"] != run_id:
            problems.append(f"model version {info.get('model_version')} comes from another run")
        if version["tags"].get("batch_id") != doc.get("manifest", {}).get("batch_id"):
            problems.append(f"model version {info.get('model_version')} is tagged with another batch")
        return problems

    return check
