"""Lineage tasks: which registered versions still hold erased data, and recording them as superseded.

Reads the registry (through ``tasks.tracking``) and the ledger's dataset versions, and hands both to the
pure rules in ``forgetflow.lineage``. A superseded version gets the MLflow version tags
``forgetflow.superseded_by`` (the batch whose erased samples it holds) and ``forgetflow.superseded_at``, and a
ledger row in ``superseded``; both are undone if the batch that found it is rolled back.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import lineage
from forgetflow.lineage import Erasure, ModelRecord
from forgetflow.project import Project
from tasks import tracking
from tasks.claims import ledger

SUPERSEDED_TAGS = ["forgetflow.superseded_by", "forgetflow.superseded_at"]


def dataset_name(project: Project) -> str:
    """The dataset of the current version (params' dataset when no version exists yet)."""
    meta = project.version_dir / "version.json"
    if meta.exists():
        return str(json.loads(meta.read_text())["dataset"])
    return project.params.data.dataset


def records(project: Project) -> dict[str, ModelRecord]:
    """Every registered version as a lineage record."""
    return {v["version"]: ModelRecord.from_registry(v) for v in tracking.versions(project)}


def erasures(project: Project, pending: Erasure | None = None) -> list[Erasure]:
    """Every recorded erasure of the current dataset (plus ``pending``: this batch's, not yet in the ledger)."""
    found = lineage.erasures_from_versions(ledger(project).versions(dataset_name(project)))
    if pending is not None and pending.batch_id not in {e.batch_id for e in found}:
        found.append(pending)
    return found


def holds(project: Project, version: str, pending: Erasure | None = None,
          known: dict[str, ModelRecord] | None = None) -> list[str]:
    """Erasure batches whose samples ``version`` still holds (empty = free of erased data)."""
    return lineage.held(version, known if known is not None else records(project), erasures(project, pending))


def clean_versions(project: Project) -> list[str]:
    """Versions whose lineage excludes every erased sample, oldest first."""
    known = records(project)
    gone = erasures(project)
    return [v for v in known if not lineage.held(v, known, gone)]


def supersede(project: Project, found_in: str, pending: Erasure | None = None,
              recorded: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Tag and record every not-yet-superseded version that holds erased data; returns what was recorded.

    ``recorded`` (if given) receives each row before its version is tagged, so a failure part-way can be undone.
    """
    known = records(project)
    gone = erasures(project, pending)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for version, record in known.items():
        if record.superseded_by:
            continue
        held = lineage.held(version, known, gone)
        if not held:
            continue
        reason = (f"version {version} ({record.role}) was trained on samples that batch {held[0]} erased"
                  + (f" (and {len(held) - 1} later batch(es))" if len(held) > 1 else "")
                  + "; it must not serve again")
        row = {"version": version, "erased_by_batch": held[0], "reason": reason}
        rows.append(row)
        if recorded is not None:
            recorded.append(row)
        tracking.set_version_tags(project, version, {"forgetflow.superseded_by": held[0], "forgetflow.superseded_at": now})
    ledger(project).record_superseded(project.params.tracking.model_name, rows, found_in)
    return rows


def undo_supersede(project: Project, found_in: str, rows: list[dict[str, Any]]) -> None:
    """Remove what :func:`supersede` recorded (a failed batch is rolled back)."""
    for row in rows:
        tracking.delete_version_tags(project, row["version"], SUPERSEDED_TAGS)
    ledger(project).delete_superseded(found_in)


@task(name="supersede", cache_policy=NO_CACHE)
def mark_superseded(project: Project, batch_id: str, erasure: Erasure, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After an erase: every version that holds the erased samples is superseded (``recorded`` collects rows
    as they are written, so a failure can undo them)."""
    return supersede(project, batch_id, erasure, recorded)
