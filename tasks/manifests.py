"""Manifest tasks: resolve claimed requests against the current dataset version and validate them (GX)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import pipeline
from forgetflow.data import Manifest
from forgetflow.errors import ValidationFailed
from forgetflow.project import Project
from tasks import validation


@dataclass
class ResolvedBatch:
    """The validated manifest of a batch and where it and the validation report were written."""

    manifest: Manifest
    path: str  # relative to the project root
    sha256: str
    report_path: str
    quarantine: dict[str, str]
    warnings: list[str]


@task(name="resolve-and-validate", cache_policy=NO_CACHE)
def resolve_and_validate(project: Project, batch_id: str, requests: list[dict[str, Any]]) -> ResolvedBatch:
    """Resolve requests to a manifest, validate table + manifest with GX, write the manifest under data/.

    Requests failing a manifest rule are excluded (and later quarantined) with the rule's message; with
    ``batch.on_invalid: stop`` any failing request stops the batch instead. A broken dataset always stops it.
    """
    version = pipeline.current_version(project)
    manifest = pipeline.resolve_requests(version, batch_id, requests, pipeline.tombstone_key(project))
    outcome = validation.validate(version, manifest)
    report_dir = project.reports_dir / batch_id
    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / "validation.json"
    report_path.write_text(json.dumps(outcome.report(), indent=1, default=str))
    if outcome.blocking:
        raise ValidationFailed(f"dataset {version.label} fails validation: {outcome.blocking[0]}")
    if outcome.quarantine and project.params.batch.on_invalid == "stop":
        rid, why = next(iter(sorted(outcome.quarantine.items())))
        raise ValidationFailed(f"{len(outcome.quarantine)} request(s) invalid and batch.on_invalid is stop: {rid}: {why}")
    manifest = manifest.with_exclusions(outcome.quarantine)
    path = pipeline.manifest_path(project, batch_id)
    sha = manifest.write(path)
    return ResolvedBatch(manifest, str(path.relative_to(project.root)), sha, str(report_path.relative_to(project.root)),
                         outcome.quarantine, outcome.warnings)
