"""The report task: the batch's HTML report under ``state/reports/<batch>/report.html``, attached to the batch's
MLflow run and published as Prefect artifacts (a Markdown digest and a link to the page).

The report is a rendering of records that already exist (the batch JSON ``summary.json``, the ledger, the
validation and evaluation reports, the per-sample outputs, the receipts), so ``forgetflow report BATCH`` can
regenerate it at any time.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import report
from forgetflow.data import Manifest
from forgetflow.errors import ForgetflowError
from forgetflow.masking import mask_secrets
from forgetflow.paths import confined
from forgetflow.project import Project
from tasks import tracking
from tasks.claims import ledger

log = logging.getLogger(__name__)
BATCH_JSON = "summary.json"


def batch_json_path(project: Project, batch_id: str) -> Path:
    return project.reports_dir / batch_id / BATCH_JSON


def write_batch_json(project: Project, result: dict[str, Any]) -> Path:
    """Write the batch result (the batch JSON) next to the batch's other reports, atomically (secrets masked)."""
    path = batch_json_path(project, result["batch_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(mask_secrets(result), indent=1, default=str))
    tmp.replace(path)
    return path


def last_batch_json(project: Project) -> dict[str, Any] | None:
    """The most recently written batch JSON, or None when no batch has run."""
    written = sorted(project.reports_dir.glob(f"*/{BATCH_JSON}"), key=lambda p: p.stat().st_mtime)
    return json.loads(written[-1].read_text()) if written else None


def gather(project: Project, result: dict[str, Any]) -> dict[str, Any]:
    """The report's record: the batch result plus request details, validation, MIA conventions, receipts."""
    batch_id = result["batch_id"]
    doc = dict(result)
    book = ledger(project)
    manifest_path = project.root / result["manifest"]["path"]
    manifest = Manifest.read(manifest_path) if manifest_path.exists() else None
    rows = {r["request_id"]: r for r in book.list(batch_id=batch_id)}
    doc["requests_detail"] = [
        {**{k: rows.get(rid, {}).get(k) for k in ("request_id", "reason", "subject_id", "sample_id", "received_at")},
         "request_id": rid, "samples": len(manifest.samples_of(rid)) if manifest else None}
        for rid in result.get("requests", [])]
    reports = result.get("reports") or {}
    validation = _json(project, reports.get("validation"))
    if validation is not None:
        validation.pop("gx_results", None)  # the raw GX documents stay in validation.json and MLflow
    doc["validation"] = validation
    evaluation = _json(project, reports.get("evaluation")) or {}
    doc["mia_conventions"] = evaluation.get("mia_conventions") or {}
    doc["receipts_detail"] = [{k: r[k] for k in ("seq", "request_id", "sha256", "prev_sha256", "path")}
                              for r in book.receipts() if r["batch_id"] == batch_id]
    return doc


def render(project: Project, result: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write report.html for a batch result; returns its path and the record it was rendered from (masked:
    the page, its Markdown digest and the MLflow copy carry no credential)."""
    doc = mask_secrets(gather(project, result))
    folder = project.reports_dir / result["batch_id"]
    outputs_file = folder / (result.get("outputs_file") or "outputs.npz")
    outputs = dict(np.load(outputs_file)) if outputs_file.exists() else None
    html = report.render_html(doc, outputs)
    path = folder / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path, doc


@task(name="report", cache_policy=NO_CACHE)
def publish_report(project: Project, result: dict[str, Any]) -> dict[str, Any]:
    """Render the report, attach it to the batch's MLflow run, publish the Prefect artifacts."""
    path, doc = render(project, result)
    rel = str(path.relative_to(project.root))
    out: dict[str, Any] = {"path": rel}
    if result.get("mlflow_run_id"):
        tracking.log_run_file(project, result["mlflow_run_id"], path, "reports")
        out["mlflow_artifact"] = f"runs:/{result['mlflow_run_id']}/reports/report.html"
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    key = f"deletion-report-{result['batch_id']}".lower().replace("_", "-")
    create_markdown_artifact(markdown=report.render_markdown(doc, rel), key=key,
                             description=f"Deletion batch {result['batch_id']}: summary, metrics, gates, decision")
    create_link_artifact(link=path.resolve().as_uri(), link_text=f"report.html of batch {result['batch_id']}",
                         key=f"{key}-page", description="The full HTML report (plots, requests, receipts)")
    out["prefect_artifact"] = key
    return out


def regenerate(project: Project, batch_id: str) -> Path:
    """Rewrite report.html of an earlier batch from its stored records (no MLflow or Prefect calls).

    ``batch_id`` comes from the command line: it must name a folder directly under the reports folder, and
    the batch JSON there must be that batch's (the report is written next to it).
    """
    confined(project.reports_dir, batch_id, f"batch id {batch_id!r}", single=True)
    path = batch_json_path(project, batch_id)
    if not path.exists():
        raise ForgetflowError(f"batch {batch_id}: no {path.relative_to(project.root)} (unknown batch, or it did not finish)")
    result = json.loads(path.read_text())
    if result.get("batch_id") != batch_id:
        raise ForgetflowError(f"{path.relative_to(project.root)} names batch {result.get('batch_id')!r}, not {batch_id!r}")
    return render(project, result)[0]


def _json(project: Project, rel: str | None) -> dict[str, Any] | None:
    if not rel:
        return None
    path = project.root / rel
    return json.loads(path.read_text()) if path.exists() else None
