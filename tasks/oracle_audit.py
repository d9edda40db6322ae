"""Oracle-audit tasks: retrain from scratch on the current dataset version, compare it with the champion,
record the drift (ledger ``quality`` table and an MLflow run), and replace a drifted champion.

An audit holds the batch lock (it appears in the ledger's batch list with method ``oracle-audit``), so no
deletion batch can erase data between the retrain and the replacement. (Receipt verification lives in
``tasks/receipt_audit.py``; this module is about model quality.)
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import drift, pipeline, policy
from forgetflow.models import load_checkpoint
from forgetflow.project import Project
from forgetflow.runtime import resolve_device
from tasks import tracking
from tasks import lineage as lineage_tasks
from tasks.claims import ledger
from tasks.promotion import PROMOTION_TAG, actor, announce_awaiting
from tasks.unlearn import GPU_TAG

METHOD = "oracle-audit"


def new_audit_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("audit-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class Measured:
    """What one audit measured."""

    audit_id: str
    champion: str
    champion_metrics: dict[str, float]
    retrain_metrics: dict[str, float]
    js_test: float
    agreement_test: float
    held_batches: list[str]
    verdict: dict[str, Any]
    dataset: dict[str, Any]
    retrain: dict[str, Any] = field(default_factory=dict)  # cache key, path, seconds, cached


@task(name="audit-lock", cache_policy=NO_CACHE)
def begin(project: Project, audit_id: str) -> None:
    """Take the batch lock for the audit (fails with a one-line reason if a batch is running)."""
    ledger(project).start_batch(audit_id)


@task(name="audit-measure", tags=[GPU_TAG], cache_policy=NO_CACHE)
def measure(project: Project, audit_id: str) -> Measured:
    """Retrain on the current version (cached per version), evaluate it and the champion, judge the drift."""
    version = pipeline.current_version(project, create=False)
    champion = tracking.require_champion(project)
    trained = pipeline.retrain_current(project, version)
    device = resolve_device(project.params.train.device)
    champion_model = tracking.load_version_model(project, champion, str(device))
    compared = drift.compare(champion_model, trained.model, version, device, project.params.evaluate.batch_size)
    held = lineage_tasks.holds(project, champion)
    verdict = policy.audit_verdict(project.params.audit, compared["retrain"]["test_acc"],
                                   compared["champion"]["test_acc"], held, champion)
    return Measured(audit_id, champion, compared["champion"], compared["retrain"], compared["js_test"],
                    compared["agreement_test"], held, verdict,
                    {"dataset": version.meta["dataset"], "version": version.version, "fingerprint": version.fingerprint,
                     "train_samples": compared["retain_samples"], "erased_total": version.meta["erased"]},
                    {"key": trained.key, "path": str(trained.path), "seconds": trained.seconds, "cached": trained.cached})


def _metrics(m: Measured) -> dict[str, float]:
    return {"audit_retrain_test_acc": m.retrain_metrics["test_acc"], "audit_champion_test_acc": m.champion_metrics["test_acc"],
            "audit_retrain_retain_acc": m.retrain_metrics["retain_acc"],
            "audit_champion_retain_acc": m.champion_metrics["retain_acc"],
            "audit_test_acc_gap": m.verdict["test_acc_gap"], "audit_js_test": m.js_test,
            "audit_agreement_test": m.agreement_test, "audit_champion_holds_erased": float(bool(m.held_batches))}


@task(name="audit-record", cache_policy=NO_CACHE)
def record(project: Project, m: Measured) -> None:
    """The drift measures go to the ledger's quality table (rows of this audit, for the champion)."""
    ledger(project).record_quality(m.audit_id, m.champion, _metrics(m))


@task(name="audit-log", cache_policy=NO_CACHE)
def log_run(project: Project, m: Measured) -> str:
    """An MLflow run with the audit's measures (no model: nothing is replaced)."""
    return tracking.log_run(project, m.audit_id, _params(m), {**_metrics(m), "train_seconds": m.retrain["seconds"]},
                            _tags(m, "audit"))


def _params(m: Measured) -> dict[str, Any]:
    return {"champion_version": m.champion, "dataset_version": m.dataset["version"], "retrain_cache_key": m.retrain["key"],
            "verdict": m.verdict["reason"]}


def _tags(m: Measured, role: str) -> dict[str, str]:
    return {"forgetflow.role": role, "audit_id": m.audit_id, "dataset": str(m.dataset["dataset"]),
            "dataset_version": str(m.dataset["version"]), "train_samples": str(m.dataset["train_samples"]),
            "audit_of_version": m.champion, "drifted": str(m.verdict["drifted"]).lower()}


@dataclass
class Replacement:
    run_id: str
    version: str
    previous_challenger: str | None
    action: str
    reason: str
    previous_champion: str | None = None  # the champion when the audit registered its retrain


@task(name="audit-replace", cache_policy=NO_CACHE)
def replace(project: Project, m: Measured, done: list[Replacement]) -> Replacement:
    """Register the retrain (role ``retrain``: exact on the current version) and promote it, or let it wait for
    a person (``promotion.approval: manual``). ``done`` receives the registration at once, for the undo."""
    model = load_checkpoint(Path(m.retrain["path"]))
    metrics = {"test_acc": m.retrain_metrics["test_acc"], "retain_acc": m.retrain_metrics["retain_acc"],
               "train_seconds": m.retrain["seconds"], **_metrics(m)}
    run_id, version = tracking.log_model_run(project, model, f"{m.audit_id}-retrain", _params(m), metrics,
                                             {**_tags(m, "retrain"), "replaces_model_version": m.champion})
    book = ledger(project)
    previous_challenger = tracking.move_alias(project, book, tracking.CHALLENGER, version,
                                              f"retrained model of {m.audit_id}", actor("oracle-audit flow"), m.audit_id)
    made = Replacement(run_id, version, previous_challenger, "", "",
                       previous_champion=tracking.alias_version(project, tracking.CHAMPION))
    done.append(made)
    plan = policy.plan_promotion(project.params.promotion.approval, True, True, version)
    made.action, made.reason = plan["action"], plan["reason"]
    tracking.set_version_tags(project, version, {PROMOTION_TAG: plan["action"], "gates": "exact retrain (audit)"})
    if plan["action"] == "promote":
        tracking.move_alias(project, book, tracking.CHAMPION, version, f"{m.audit_id}: {m.verdict['reason']}",
                            actor("oracle-audit flow"), m.audit_id)
        tracking.set_version_tags(project, version, {PROMOTION_TAG: "promoted"})
    else:
        announce_awaiting(project, m.audit_id, version, None)
    return made


def undo_replace(project: Project, audit_id: str, made: Replacement) -> None:
    """Remove an audit's registration and alias moves (the audit failed after registering)."""
    if tracking.alias_version(project, tracking.CHAMPION) == made.version:
        tracking.restore_alias(project, tracking.CHAMPION, made.previous_champion)
    tracking.restore_alias(project, tracking.CHALLENGER, made.previous_challenger)
    tracking.delete_version(project, made.version)
    ledger(project).delete_alias_moves(audit_id)


@task(name="audit-finish", cache_policy=NO_CACHE)
def finish(project: Project, audit_id: str, decision: str, model_version: str | None) -> None:
    """Record the audit as done in the ledger's batch list and release the lock."""
    ledger(project).finish_batch(audit_id, [], [], {"method": METHOD, "requests": 0, "forget_samples": 0,
                                                   "decision": decision[:32], "model_version": model_version}, None)


def fail(project: Project, audit_id: str, error: str) -> None:
    """The audit failed: its quality rows go, the failure is recorded, the lock is released."""
    book = ledger(project)
    book.delete_quality(audit_id)
    book.fail_batch(audit_id, error)
