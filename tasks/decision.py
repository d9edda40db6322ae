"""Decision tasks: unlearn or retrain (before unlearning), escalate or retrain (after the gates), and the quality
record that keeps drift and the retraining cost measured.

The facts come from the registry (the champion's lineage and its recorded test accuracy), the ledger
(erasures per dataset version, oracle-audit results and full-retrain times in the ``quality`` table) and the
batch's manifest; the rules are ``forgetflow.policy``'s.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import lineage, pipeline, policy
from forgetflow.policy import FULL_RETRAIN_METRIC, Decision, Facts
from forgetflow.project import Project
from tasks import lineage as lineage_tasks
from tasks import tracking
from tasks.claims import ledger

AUDIT_METRIC = "audit_retrain_test_acc"


def gather_facts(project: Project, batch_samples: int, cost: dict[str, Any] | None = None) -> Facts:
    """Everything the unlearn-or-retrain rules look at, measured now (``cost``: ``pipeline.cost_estimate``)."""
    champion = tracking.require_champion(project)
    known = lineage_tasks.records(project)
    gone = lineage_tasks.erasures(project)
    root = lineage.root(champion, known)
    root_samples = None
    erased = 0
    if root is not None:
        root_samples = root.train_samples or _version_train_samples(project, root.dataset_version)
        erased = lineage.erased_since(root, known, gone)
    champion_acc = _test_acc(project, champion)
    reference_acc, reference = None, ""
    if root is not None:
        reference_acc = _test_acc(project, root.version)
        reference = f"the last full retrain's (version {root.version}, {root.role})"
        audit = _latest_audit(project)
        if audit is not None and audit[0] > root.created_ms:
            reference_acc, reference = audit[1], f"the last oracle audit's retrain ({audit[2]})"
    return Facts(champion_version=champion, held_batches=lineage.held(champion, known, gone),
                 root_version=root.version if root else None, root_train_samples=root_samples,
                 erased_since_root=erased, batch_samples=batch_samples, champion_test_acc=champion_acc,
                 reference_test_acc=reference_acc, reference=reference,
                 predicted_unlearn_seconds=cost["unlearn_seconds"] if cost else None,
                 predicted_retrain_seconds=cost["retrain_seconds"] if cost else None)


def predict_cost(project: Project, manifest_path: str, method: str | None = None) -> dict[str, Any]:
    """The batch's predicted unlearning and retraining seconds (``pipeline.cost_estimate`` on the champion)."""
    version = pipeline.current_version(project)
    manifest = pipeline.Manifest.read(project.root / manifest_path)
    splits = pipeline.splits_for(version, manifest)
    model = tracking.load_version_model(project, tracking.require_champion(project), "cpu")
    return pipeline.cost_estimate(project, model, splits, pipeline.plan_phases(project, version, manifest, method))


@task(name="decide", cache_policy=NO_CACHE)
def decide_action(project: Project, batch_samples: int, forced: str | None = None, manifest_path: str | None = None,
                  method: str | None = None) -> Decision:
    """Unlearn, or retrain from scratch? (lineage, predicted cost, forgotten fraction, quality drift)."""
    cost = predict_cost(project, manifest_path, method) if manifest_path and forced is None else None
    return policy.decide(project.params.retrain, gather_facts(project, batch_samples, cost), forced)


@task(name="record-quality", cache_policy=NO_CACHE)
def record_quality(project: Project, batch_id: str, champion_after: str, metrics: dict[str, float | None]) -> dict[str, float]:
    """Write the batch's quality measures to the ledger (undone with the batch: ``ledger.delete_quality``)."""
    kept = {k: float(v) for k, v in metrics.items() if v is not None and v == v}
    ledger(project).record_quality(batch_id, champion_after, kept)
    return kept


def last_full_retrain(project: Project) -> tuple[float | None, str]:
    """The cost gate's yardstick: the wall time of the last recorded full retrain of the serving recipe.

    Every full retrain records its time in the ledger's quality table (``forgetflow train``, a retrain batch, an
    oracle audit); a project older than that record falls back to the training time of the champion's lineage
    root in MLflow. Returns (seconds or None, where the number comes from in words).
    """
    rows = ledger(project).quality(FULL_RETRAIN_METRIC)
    if rows:
        last = rows[-1]
        at = dt.datetime.fromisoformat(last["at"])
        return float(last["value"]), f"the last full retrain ({last['batch_id']}, {at:%Y-%m-%d %H:%M} UTC)"
    from tasks import bootstrap

    champion = tracking.alias_version(project, tracking.CHAMPION)
    seconds = bootstrap.champion_train_seconds(project, champion) if champion else None
    return seconds, f"the training of the champion's lineage root (version {champion}'s ancestry, MLflow)"


def quality_trend(project: Project, metrics: tuple[str, ...] = ("champion_test_acc", "avg_gap", "forgotten_fraction",
                                                                  "quality_drift", AUDIT_METRIC,
                                                                  "audit_champion_test_acc")) -> dict[str, list[dict[str, Any]]]:
    """The recorded series of each quality metric (oldest first), for reports and ``forgetflow history``."""
    book = ledger(project)
    return {m: book.quality(m) for m in metrics}


def _test_acc(project: Project, version: str) -> float | None:
    info = tracking.version_info(project, version)
    value = tracking.run_metrics(project, info["run_id"]).get("test_acc")
    return float(value) if value is not None else None


def _version_train_samples(project: Project, number: int | None) -> int | None:
    if number is None:
        return None
    for row in ledger(project).versions(lineage_tasks.dataset_name(project)):
        if int(row["version"]) == int(number):
            return int(row["train_samples"])
    return None


def _latest_audit(project: Project) -> tuple[int, float, str] | None:
    rows = ledger(project).quality(AUDIT_METRIC)
    if not rows:
        return None
    last = rows[-1]
    at = dt.datetime.fromisoformat(last["at"])
    return int(at.timestamp() * 1000), float(last["value"]), f"{last['batch_id']}, {at:%Y-%m-%d %H:%M} UTC"


def retrain_after_gate_failure(project: Project, decision: Decision, failed_gates: list[str],
                               version: str) -> Decision | None:
    """The unlearned ``version`` failed ``failed_gates``: the retrain decision, or None (``retrain.on_gate_failure``)."""
    return policy.after_gate_failure(project.params.retrain, decision, failed_gates, version)


def escalate_after_evidence(project: Project, decision: Decision, gates: dict[str, Any], phases: list[dict[str, Any]],
                            version: str) -> tuple[Decision, dict[str, dict[str, Any]]] | None:
    """The evidence still detects membership in ``version``: unlearn again harder (``evidence.escalation_budget``)?"""
    return policy.escalate(project.params.evidence.escalation_budget, decision, gates, phases, version)
