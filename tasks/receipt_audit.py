"""Receipt verification with every link followed: files ↔ ledger chain, manifest, ledger, DVC version, MLflow,
and the chain's end against the anchors each batch left outside the ledger and the receipts folder.

(The oracle audit, which retrains and compares models, is ``tasks/oracle_audit.py``.)
"""

from __future__ import annotations

import json
from typing import Any

from forgetflow import receipts
from forgetflow.project import Project
from tasks import tracking
from tasks.claims import ledger
from tasks.reporting import BATCH_JSON

ANCHOR_KEY = "receipts_anchor"  # where the batch JSON keeps the anchor


def verify_receipts(project: Project) -> receipts.Verification:
    """Verify the whole chain; every problem is one readable line naming the receipt or batch."""
    book = ledger(project)
    rows = book.receipts()
    versions = {(v["dataset"], v["version"]): v for v in book.versions()}
    checks = [receipts.check_manifest_link(project.root), _ledger_link(book, versions), _mlflow_link(project)]
    done = [r["request_id"] for r in book.list(state="done")]
    result = receipts.verify(rows, project.root, checks, anchors=anchors(project), done_request_ids=done)
    on_disk = sorted(p.name for p in project.receipts_dir.glob("*.json")) if project.receipts_dir.exists() else []
    known = {project.root.joinpath(r["path"]).name for r in rows}
    for name in on_disk:
        if name not in known:
            result.problems.append(f"receipt file {name} is not in the ledger's chain")
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["batch_id"])] = counts.get(str(row["batch_id"]), 0) + 1
    for batch in book.batches(limit=1_000_000):
        if batch["state"] == "done" and batch.get("requests") and batch.get("method") != "oracle-audit":
            if counts.get(batch["batch_id"], 0) != int(batch["requests"]):
                result.problems.append(f"batch {batch['batch_id']}: the ledger says {batch['requests']} request(s) were "
                                       f"honoured, the chain has {counts.get(batch['batch_id'], 0)} receipt(s) of it")
    return result


def anchors(project: Project) -> list[dict[str, Any]]:
    """Every anchor of the chain: the MLflow run tags of each batch and the anchor in each batch JSON."""
    found = tracking.receipt_anchors(project)
    for path in sorted(project.reports_dir.glob(f"*/{BATCH_JSON}")) if project.reports_dir.exists() else []:
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        anchor = doc.get(ANCHOR_KEY) if isinstance(doc, dict) else None
        if isinstance(anchor, dict) and anchor.get("batch_id"):
            found.append({**anchor, "source": str(path.relative_to(project.root))})
    return found


def anchor_unanchored(project: Project) -> list[dict[str, Any]]:
    """Anchor, as they stand now, the batches whose receipts carry no anchor (chains written before anchors).

    Trust on first use: run it once after upgrading, after ``forgetflow receipt verify`` has found the chain
    intact apart from the missing anchors. Each anchor goes on the MLflow run its receipts name (with the tag
    ``forgetflow.receipts.anchored_later``). Returns the anchors set.
    """
    rows = ledger(project).receipts()
    have = {str(a.get("batch_id")) for a in anchors(project)}
    by_batch: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_batch.setdefault(str(row["batch_id"]), []).append(row)
    made = []
    for batch, mine in by_batch.items():
        if batch in have:
            continue
        head = json.loads(project.root.joinpath(mine[-1]["path"]).read_text())
        run_id = (head.get("mlflow") or {}).get("run_id")
        anchor = {"batch_id": batch, "count": len(mine), "first_seq": int(mine[0]["seq"]),
                  "head_seq": int(mine[-1]["seq"]), "head_sha256": str(mine[-1]["sha256"])}
        if run_id and tracking.run_exists(project, run_id):
            tracking.anchor_receipts(project, run_id, anchor)
            tracking.client(project).set_tag(run_id, "forgetflow.receipts.anchored_later", "true")
            made.append({**anchor, "mlflow_run_id": run_id})
    return made


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
