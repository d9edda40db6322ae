"""The receipt task: one hash-chained receipt per honoured request, recorded with the batch's completion, and
the batch's part of the chain anchored on its MLflow run (forgetflow/receipts: "anchors")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import pipeline, receipts
from forgetflow.data import DatasetVersion
from forgetflow.project import Project
from tasks import tracking
from tasks.claims import ledger


@dataclass
class Issued:
    """The receipts of a batch: their paths (relative to the project) and the anchor of their chain's head."""

    paths: list[str]
    anchor: dict[str, Any]


@task(name="issue-receipts", cache_policy=NO_CACHE)
def issue_receipts(project: Project, batch_id: str, manifest_path: str, manifest_sha256: str,
                   context: dict[str, Any], batch_info: dict[str, Any], written: list[Path]) -> Issued:
    """Write the receipts, anchor their head on the batch's MLflow run, then in one ledger transaction:
    requests done, receipts, version row, batch done.

    ``written`` collects the receipt files as they are written, so a failure can remove them; the anchor is
    removed again if the ledger transaction fails.
    """
    book = ledger(project)
    manifest = pipeline.Manifest.read(project.root / manifest_path)
    honoured = manifest.valid_request_ids
    requests = {r["request_id"]: r for r in book.list(batch_id=batch_id)}
    last = book.last_receipt()
    seq = last["seq"] if last else 0
    prev = last["sha256"] if last else None
    bodies = receipts.build_bodies(manifest, manifest_path, manifest_sha256, [requests[r] for r in honoured], context)
    rows = []
    paths = []
    docs = []
    now = dt.datetime.now(dt.timezone.utc)
    for body in bodies:
        seq += 1
        doc = receipts.seal({**body, "issued_at": now.isoformat()}, seq, prev)
        path = receipts.receipt_path(project.receipts_dir, seq, body["request"]["request_id"])
        receipts.write(doc, path)
        written.append(path)
        docs.append(doc)
        rel = str(path.relative_to(project.root))
        rows.append({"seq": seq, "request_id": body["request"]["request_id"], "batch_id": batch_id,
                     "sha256": doc["sha256"], "prev_sha256": prev, "path": rel, "issued_at": now})
        paths.append(rel)
        prev = doc["sha256"]
    version = DatasetVersion.load(project.version_dir)
    row = pipeline.version_row(version, context.get("data_version", {}).get("after", {}).get("dvc_md5"), batch_id)
    anchor = receipts.anchor_of(batch_id, docs)
    run_id = (context.get("mlflow") or {}).get("run_id")
    if run_id:
        tracking.anchor_receipts(project, run_id, anchor)
    try:
        book.finish_batch(batch_id, honoured, rows, batch_info, row)
    except BaseException:
        if run_id:
            tracking.remove_receipt_anchor(project, run_id)
        raise
    return Issued(paths, {**anchor, "mlflow_run_id": run_id})
