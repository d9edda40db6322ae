"""Registry tasks: register a candidate as ``challenger``, judge it with the gates, plan and carry out its
promotion; and the promotion of a named version (the promotion flow and ``forgetflow promote``).

The rules themselves (what may become champion, what is recorded) are pure functions in
``forgetflow/promotion_rules.py``; these tasks read the registry, the ledger and the lineage, apply them and
move the alias. Every alias move is recorded in the ledger with time, reason and who moved it. Rolling back,
the history and answering a paused promotion run are person-facing operations in ``flows/promotion.py``.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import faults, policy
from forgetflow import promotion_rules as rules
from forgetflow.errors import PromotionRefused
from forgetflow.gates import GateInputs, all_passed, evaluate_gates, failed, summary
from forgetflow.models import load_checkpoint
from forgetflow.project import Project
from tasks import bootstrap, tracking
from tasks import lineage as lineage_tasks
from tasks.claims import ledger
from tasks.evaluate import OracleResult, Scores
from tasks.manifests import ResolvedBatch
from tasks.unlearn import Candidate

log = logging.getLogger(__name__)
EXACT_ROLES = ("original", "retrain")
PROMOTION_TAG = "forgetflow.promotion"
AWAITING_EVENT = "forgetflow.challenger.awaiting-approval"


def actor(via: str) -> str:
    """Who moves an alias: the OS user and host, and the command or flow that did it."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (containers): still say something true
        user = "unknown-user"
    return f"{user}@{socket.gethostname()} via {via}"


@dataclass
class Registered:
    run_id: str
    version: str
    previous_challenger: str | None


@task(name="register", cache_policy=NO_CACHE)
def register_candidate(project: Project, batch_id: str, resolved: ResolvedBatch, candidate: Candidate, scores: Scores,
                       oracle: OracleResult | None, data_version: dict[str, Any], context: dict[str, Any],
                       role: str = "unlearned", decision: dict[str, Any] | None = None,
                       evidence: Any = None, retrain_seconds: float | None = None) -> Registered:
    """Log the MLflow run (params, metrics, reports, lineage) and register the model as ``challenger``.

    ``role`` is ``unlearned`` (the champion after unlearning: its parent is the champion) or ``retrain``
    (trained from scratch on the retain set: it replaces the champion but descends from nothing).
    ``evidence`` (``tasks.verify.Verified``) adds the membership evidence (metrics, the record file, the tag
    ``evidence_record`` a re-check reads); ``retrain_seconds`` is the cost gate's yardstick at the time.
    """
    model = load_checkpoint(Path(candidate.path))
    metrics = dict(scores.metrics)
    metrics.update({f"oracle_{k}": v for k, v in (scores.oracle or {}).items()})
    metrics.update({f"champion_{k}": v for k, v in scores.champion.items()})
    metrics.update(scores.gaps)
    metrics["unlearn_seconds"] = candidate.seconds
    if oracle is not None:
        metrics["oracle_seconds"] = oracle.seconds
    if retrain_seconds is not None:
        metrics["retrain_reference_seconds"] = retrain_seconds
    if evidence is not None:
        batch = evidence.summary["batch"]
        metrics.update({"evidence_detectable_requests": len(evidence.summary["detectable_requests"]),
                        "evidence_forget_share": batch["share"], "evidence_floor_share": batch["floor"]["share"],
                        "evidence_batch_adjusted_p": batch["adjusted_p"], "verify_seconds": evidence.seconds})
    request_ids = resolved.manifest.valid_request_ids
    tags = {
        "forgetflow.role": role,
        "batch_id": batch_id,
        "request_ids": ",".join(request_ids)[:4900],
        "manifest_sha256": resolved.sha256,
        "dataset": str(data_version["dataset"]),
        "dataset_version": str(data_version["version"]),
        "dvc_data_md5": str(data_version.get("dvc_md5") or ""),
        "method": candidate.method,
        "flow_run_id": str(context.get("flow_run_id") or ""),
        "git_commit": str(context.get("git_commit") or ""),
    }
    if role == "retrain":
        metrics["train_seconds"] = candidate.seconds  # the retraining cost of everything that descends from it
        tags["replaces_model_version"] = candidate.champion_version
        evaluation = json.loads((project.root / scores.report_path).read_text()) if scores.report_path else {}
        if evaluation.get("retain_samples") is not None:
            tags["train_samples"] = str(evaluation["retain_samples"])
    else:
        tags["parent_model_version"] = candidate.champion_version
    if decision:
        tags["decision"] = decision["action"]
        tags["decision_rule"] = decision["rule"]
    if evidence is not None:
        tags["evidence_record"] = evidence.path
    params = {"method": candidate.method, "phases": candidate.phases, "seed": project.params.seed,
              "arch": project.params.model.arch, "requests": len(request_ids),
              "forget_samples": len(resolved.manifest.forget_ids()), "params_sha256": context.get("params_sha256"),
              **{f"run_{k}": v for k, v in candidate.run.items()}}
    documents = {"reports/params.resolved.json": project.params.model_dump(mode="json")}
    if decision:
        documents["reports/decision.json"] = decision
    files = {"reports": project.root / resolved.report_path, "manifest": project.root / resolved.path}
    if scores.report_path:
        files["reports/evaluation"] = project.root / scores.report_path
    if evidence is not None:
        files["reports/evidence"] = project.root / evidence.path
    run_name = f"batch-{batch_id}" + ("-retrain" if role == "retrain" else "")
    run_id, version = tracking.log_model_run(project, model, run_name, params, metrics, tags, documents, files)
    tracking.log_steps(project, run_id, candidate.steps)
    faults.kill_point("register")  # drill: the version is registered, the challenger alias not yet moved
    what = "retrained model" if role == "retrain" else "unlearned model"
    previous = tracking.move_alias(project, ledger(project), tracking.CHALLENGER, version,
                                   f"{what} of batch {batch_id}", actor("deletion-batch flow"), batch_id)
    return Registered(run_id, version, previous)


@dataclass
class Verdict:
    gates: dict[str, dict[str, Any]]
    passed: bool
    retrain_seconds: float | None
    failed: list[str] = field(default_factory=list)


@task(name="gate", cache_policy=NO_CACHE)
def gate(project: Project, candidate: Candidate, scores: Scores, retrain: tuple[float | None, str],
         evidence: dict[str, Any] | None, version: str | None = None) -> Verdict:
    """Apply params.yaml's gates (``forgetflow.gates``) to the candidate's metrics and membership evidence.

    ``retrain`` is (seconds, source) of the last recorded full retrain (``tasks.decision.last_full_retrain``),
    the cost gate's yardstick. The verdict is also written on the model version (tag ``gates``).
    """
    inputs = GateInputs(scores.metrics, scores.champion, scores.oracle, candidate.seconds, retrain[0], retrain[1],
                        evidence)
    verdicts = evaluate_gates(inputs, project.params.gates)
    verdict = Verdict(verdicts, all_passed(verdicts), retrain[0], failed(verdicts))
    if version is not None:
        tracking.set_version_tags(project, version, {"gates": "passed" if verdict.passed else
                                                     "failed: " + ", ".join(verdict.failed)})
    return verdict


@task(name="plan-promotion", cache_policy=NO_CACHE)
def plan(project: Project, batch_id: str, version: str, verdict: Verdict, exact: bool) -> dict[str, Any]:
    """Promote now, wait for a person, or keep the champion (``forgetflow.policy.plan_promotion``).

    The plan is written on the version (tag ``forgetflow.promotion``); a version that waits for approval is
    announced with the Prefect event ``forgetflow.challenger.awaiting-approval`` when a server is configured.
    """
    decided = policy.plan_promotion(project.params.promotion.approval, verdict.passed, exact, version, verdict.failed)
    tracking.set_version_tags(project, version, {PROMOTION_TAG: decided["action"]})
    if decided["action"] == "await-approval":
        decided["announced"] = announce_awaiting(project, batch_id, version, verdict)
    return decided


@task(name="promote", cache_policy=NO_CACHE)
def promote(project: Project, batch_id: str, version: str, verdict: Verdict, exact: bool = False) -> str | None:
    """Move ``champion`` to the challenger; returns the previous champion."""
    what = "exact retrain" if exact else "gates passed"
    previous = tracking.move_alias(project, ledger(project), tracking.CHAMPION, version,
                                   f"{what} for batch {batch_id} ({summary(verdict.gates)})",
                                   actor("deletion-batch flow"), batch_id)
    tracking.set_version_tags(project, version, {PROMOTION_TAG: "promoted"})
    return previous


def announce_awaiting(project: Project, batch_id: str | None, version: str, verdict: Verdict | None) -> bool:
    """Emit ``forgetflow.challenger.awaiting-approval`` (the promotion deployment's trigger); never raises."""
    try:
        from tasks import events
    except ImportError:  # serving not installed in this checkout
        return False
    name = project.params.tracking.model_name
    event = {"event": AWAITING_EVENT,
             "resource": {"prefect.resource.id": f"forgetflow.model-version.{name}.{version}",
                          "prefect.resource.name": f"{name} v{version}",
                          events.PROJECT_LABEL: project.params.serve.name},
             "payload": {"version": version, "model_name": name, "batch_id": batch_id,
                         "gates": {k: v["passed"] for k, v in (verdict.gates if verdict else {}).items()}}}
    try:
        return bool(events.send([event]))
    except Exception as exc:  # noqa: BLE001 - the challenger is registered; the event is a courtesy
        log.warning("could not announce version %s awaiting approval: %s", version, exc)
        return False


# ---- on request: the promotion flow and `forgetflow promote` ------------------------------------
def recheck(project: Project, version: str) -> dict[str, Any]:
    """The gates of ``version`` again, with today's params.yaml, from the metrics its run logged."""
    info = tracking.version_info(project, version)
    role = info["tags"].get("forgetflow.role", "unknown")
    metrics = tracking.run_metrics(project, info["run_id"])
    exact = role in EXACT_ROLES
    candidate = {k: v for k, v in metrics.items() if not k.startswith(("oracle_", "champion_"))}
    champion = {k[len("champion_"):]: v for k, v in metrics.items() if k.startswith("champion_")}
    oracle = {k[len("oracle_"):]: v for k, v in metrics.items() if k.startswith("oracle_") and k != "oracle_seconds"}
    if role == "original" or "test_acc" not in champion:
        return {"version": version, "role": role, "exact": exact, "gates": {}, "passed": exact, "failed": [],
                "summary": "no batch evaluation to gate (a model trained from scratch)"}
    retrain = metrics.get("retrain_reference_seconds")
    source = "the last full retrain recorded when the batch ran"
    if retrain is None:  # versions registered before the reference was logged
        parent = info["tags"].get("parent_model_version")
        retrain = bootstrap.champion_train_seconds(project, parent) if parent else None
        source = "the training of the parent's lineage root"
    from tasks import verify

    evidence = verify.recheck_input(project, info["tags"].get("evidence_record"))
    inputs = GateInputs(candidate, champion, oracle or None, float(metrics.get("unlearn_seconds", 0.0)), retrain,
                        source, evidence)
    verdicts = evaluate_gates(inputs, project.params.gates)
    return {"version": version, "role": role, "exact": exact, "gates": verdicts, "passed": all_passed(verdicts),
            "failed": failed(verdicts), "summary": summary(verdicts)}


def purged_note(project: Project, version: str) -> str:
    """``; its weights were purged …`` when the purge deleted them (purge.models), else empty."""
    when = tracking.version_weights_purged(project, version)
    return f"; its weights were purged {when}, so it can never serve again (docs/erasure.md)" if when else ""


def refuse_if_purged(project: Project, version: str, doing: str) -> None:
    """A version whose weights the purge deleted can never serve again, whatever its lineage says now."""
    note = purged_note(project, version)
    if note:
        raise PromotionRefused(f"version {version}: {doing} refused{note}")


def promotable(project: Project, version: str | None) -> str:
    """The version to promote (default: the challenger), after :func:`promotion_rules.check_promotable` and the
    purge's record (a version whose weights were purged never serves again)."""
    version = rules.target(version, tracking.alias_version(project, tracking.CHALLENGER))
    rules.require_known(version, [v["version"] for v in tracking.versions(project)], project.params.tracking.model_name)
    held = lineage_tasks.holds(project, version)
    try:
        rules.check_promotable(version, tracking.alias_version(project, tracking.CHAMPION), held,
                               lineage_tasks.clean_versions(project) if held else [])
    except PromotionRefused as exc:
        raise PromotionRefused(f"{exc}{purged_note(project, version)}") from None
    refuse_if_purged(project, version, "promotion")
    return version


def promote_version(project: Project, version: str | None, reason: str, by: str, override: bool = False,
                    batch_id: str | None = None) -> dict[str, Any]:
    """Make ``version`` (default: the challenger) champion after re-checking its lineage and gates.

    A version holding erased data is always refused. Failing gates refuse it unless ``override``, which is
    recorded with who and why. Returns what happened (from, to, gates, override).
    """
    rules.require_reason(reason)
    version = promotable(project, version)
    checked = recheck(project, version)
    overridden = rules.gates_overridden(version, checked, override)
    note = rules.promotion_note(reason, checked, overridden)
    previous = tracking.move_alias(project, ledger(project), tracking.CHAMPION, version, note, by, batch_id)
    tracking.set_version_tags(project, version, {PROMOTION_TAG: "promoted (override)" if overridden else "promoted"})
    return {"from": previous, "to": version, "reason": note, "actor": by, "override": overridden,
            "gates": checked["gates"], "exact": checked["exact"]}


@task(name="check-promotable", cache_policy=NO_CACHE)
def check_promotable(project: Project, version: str | None) -> dict[str, Any]:
    """Resolve the version (default: the challenger), refuse one that holds erased data, re-check its gates."""
    return recheck(project, promotable(project, version))


@task(name="promote-version", cache_policy=NO_CACHE)
def promote_task(project: Project, version: str, reason: str, by: str, override: bool = False) -> dict[str, Any]:
    """:func:`promote_version` as a task (lineage and gates are checked again at the moment of the move)."""
    return promote_version(project, version, reason, by, override)


@task(name="reject-version", cache_policy=NO_CACHE)
def reject_version(project: Project, version: str, reason: str, by: str) -> None:
    """A person declined the promotion: record it on the version (tag ``forgetflow.promotion``)."""
    tracking.set_version_tags(project, version, {PROMOTION_TAG: f"declined by {by}: {reason}"[:4900]})
