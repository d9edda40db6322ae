"""The verification task: membership evidence about a batch's forget set, from the reference models.

The candidate (after unlearning), the champion (before it) and the oracle (when one ran) are scored with the
configured attack (``references.attack``) on the forget samples and a never-seen null sample
(``forgetflow/evidence.py``); the record goes to ``state/reports/<batch>/evidence.json`` (the numbers every
verdict can be recomputed from), and the task returns what the gates, the receipts and the batch result
need. The reference set is the one the flow found or trained before unlearning (``flows/references.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import evidence, pipeline, references
from forgetflow.models import load_checkpoint
from forgetflow.project import Project
from forgetflow.runtime import resolve_device
from tasks import tracking
from tasks.evaluate import OracleResult
from tasks.unlearn import GPU_TAG

EVIDENCE_JSON = "evidence{label}.json"


@dataclass
class Verified:
    """The batch's evidence: where it is stored and the views the gates, receipts and batch result read."""

    path: str
    summary: dict[str, Any]
    gate: dict[str, Any]
    receipts: dict[str, dict[str, Any]]
    seconds: float  # scoring the forget set and the null under the candidate (its K references precomputed)
    references: dict[str, Any] = field(default_factory=dict)  # which set, of which version, erased since


@task(name="verify", tags=[GPU_TAG], cache_policy=NO_CACHE)
def verify_candidate(project: Project, batch_id: str, manifest_path: str, candidate_path: str, champion_version: str,
                     oracle: OracleResult | None, selection: references.Selection | None,
                     candidate_is_oracle: bool = False, label: str = "") -> Verified | None:
    """Score the candidate, the champion and the oracle; store and assess the evidence.

    ``selection`` is the reference set the flow found or trained (``flows/references.py::usable_or_train``);
    None (evidence or references switched off, or none and ``references.on_missing: skip``) = no evidence.
    ``seconds`` of the result is the verification cost the demo target is about: the candidate's forward pass
    on the forget set and the null, and the attack over the K precomputed reference scores.
    """
    params = project.params
    if not params.evidence.enabled or selection is None:
        return None
    version = pipeline.current_version(project)
    manifest = pipeline.Manifest.read(project.root / manifest_path)
    splits = pipeline.splits_for(version, manifest)
    context = references.ReferenceContext.of(selection, params.references)
    info = {"status": "current" if selection.current else f"{len(selection.out_only)} sample(s) erased since",
            **selection.describe()}
    device = resolve_device(params.train.device)
    models = {"after": load_checkpoint(Path(candidate_path), device),
              "before": tracking.load_version_model(project, champion_version, str(device))}
    if oracle is not None and not candidate_is_oracle:
        models["oracle"] = load_checkpoint(Path(oracle.path), device)
    requests = {rid: manifest.samples_of(rid) for rid in manifest.valid_request_ids}
    null = evidence.null_sample(splits.test, params.evidence.null_samples, params.seed)
    record = evidence.measure(models, splits.forget, requests, null, context, params.references.attack, splits.val,
                              device, params.evaluate.batch_size)
    assessed = record.assess(params.evidence)
    summary = evidence.summarise(record, assessed)
    summary["references"] = info
    path = evidence.write_record(project.reports_dir / batch_id / EVIDENCE_JSON.format(label=label), record,
                                 {"batch_id": batch_id, "summary": summary})
    rel = str(path.relative_to(project.root))
    entries = {rid: {**entry, "record": rel} for rid, entry in evidence.receipt_entries(record, assessed).items()}
    return Verified(rel, summary, evidence.gate_input(record, assessed), entries, record.seconds["after"], info)


def recheck_input(project: Project, rel_path: str | None) -> dict[str, Any] | None:
    """The gates' evidence input from a stored record, decided again with today's ``evidence`` settings."""
    record = evidence.read_record(project.root / rel_path) if rel_path else None
    if record is None:
        return None
    return evidence.gate_input(record, record.assess(project.params.evidence))
