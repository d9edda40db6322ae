"""Registry tasks: register a candidate as ``challenger``, judge it with the gates, plan and carry out its
promotion; and, on request, promote, roll back and show the history (the CLI and the promotion flow call the
plain functions below the tasks).

Rules that hold on every path: a version that still holds erased data (``forgetflow.lineage``) never becomes
champion, neither by promotion nor by rollback; every alias move is recorded in the ledger with time, reason
and who moved it.
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

from forgetflow import lineage, policy
from forgetflow.errors import PromotionRefused
from forgetflow.gates import all_passed, evaluate_gates, failed, summary
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
                       role: str = "unlearned", decision: dict[str, Any] | None = None) -> Registered:
    """Log the MLflow run (params, metrics, reports, lineage) and register the model as ``challenger``.

    ``role`` is ``unlearned`` (the champion after unlearning: its parent is the champion) or ``retrain``
    (trained from scratch on the retain set: it replaces the champion but descends from nothing).
    """
    model = load_checkpoint(Path(candidate.path))
    metrics = dict(scores.metrics)
    metrics.update({f"oracle_{k}": v for k, v in (scores.oracle or {}).items()})
    metrics.update({f"champion_{k}": v for k, v in scores.champion.items()})
    metrics.update(scores.gaps)
    metrics["unlearn_seconds"] = candidate.seconds
    if oracle is not None:
        metrics["oracle_seconds"] = oracle.seconds
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
    run_name = f"batch-{batch_id}" + ("-retrain" if role == "retrain" else "")
    run_id, version = tracking.log_model_run(project, model, run_name, params, metrics, tags, documents, files)
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
def gate(project: Project, candidate: Candidate, scores: Scores, oracle: OracleResult | None,
         champion_train_seconds: float | None, version: str | None = None) -> Verdict:
    """Apply params.yaml's gates; the retraining time is the oracle's (else the champion's training time).

    The verdict is also written on the model version (tag ``gates``: passed / failed: <gates>).
    """
    retrain = oracle.seconds if oracle is not None else champion_train_seconds
    verdicts = evaluate_gates(scores.metrics, scores.champion, scores.oracle, candidate.seconds, retrain,
                              project.params.gates)
    verdict = Verdict(verdicts, all_passed(verdicts), retrain, failed(verdicts))
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


# ---- on request: promote, roll back, history ----------------------------------------------------
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
    retrain = metrics.get("oracle_seconds")
    if retrain is None:
        parent = info["tags"].get("parent_model_version")
        retrain = bootstrap.champion_train_seconds(project, parent) if parent else None
    verdicts = evaluate_gates(candidate, champion, oracle or None, float(metrics.get("unlearn_seconds", 0.0)),
                              retrain, project.params.gates)
    return {"version": version, "role": role, "exact": exact, "gates": verdicts, "passed": all_passed(verdicts),
            "failed": failed(verdicts), "summary": summary(verdicts)}


def _require_version(project: Project, version: str) -> dict[str, Any]:
    known = {v["version"]: v for v in tracking.versions(project)}
    if version not in known:
        raise PromotionRefused(f"model version {version} is not in registry {project.params.tracking.model_name!r} "
                               f"(versions: {', '.join(known) or 'none'})")
    return known[version]


def _refuse_if_holding(project: Project, version: str, doing: str) -> None:
    known = lineage_tasks.records(project)
    held = lineage.held(version, known, lineage_tasks.erasures(project))
    if held:
        clean = [v for v in lineage_tasks.clean_versions(project)]
        more = f" and {len(held) - 1} later batch(es)" if len(held) > 1 else ""
        raise PromotionRefused(
            f"version {version} still holds data erased by batch {held[0]}{more}: {doing} refused "
            f"(versions free of erased data: {', '.join(clean) or 'none; `forgetflow audit` retrains one'})"
            + _purged_note(project, version))
    _refuse_if_purged(project, version, doing)


def _purged_note(project: Project, version: str) -> str:
    """``; its weights were purged …`` when the purge deleted them (purge.models), else empty."""
    when = tracking.version_weights_purged(project, version)
    return f"; its weights were purged {when}, so it can never serve again (docs/erasure.md)" if when else ""


def _refuse_if_purged(project: Project, version: str, doing: str) -> None:
    """A version whose weights the purge deleted can never serve again, whatever its lineage says now."""
    note = _purged_note(project, version)
    if note:
        raise PromotionRefused(f"version {version}: {doing} refused{note}")


def promote_version(project: Project, version: str | None, reason: str, by: str, override: bool = False,
                    batch_id: str | None = None) -> dict[str, Any]:
    """Make ``version`` (default: the challenger) champion after re-checking its lineage and gates.

    A version holding erased data is always refused. Failing gates refuse it unless ``override``, which is
    recorded with who and why. Returns what happened (from, to, gates, override).
    """
    if not reason or not reason.strip():
        raise PromotionRefused("a reason is required (--reason \"...\"); it is recorded in the alias history")
    if version is None:
        version = tracking.alias_version(project, tracking.CHALLENGER)
        if version is None:
            raise PromotionRefused("no challenger to promote; name a version")
    version = str(version)
    _require_version(project, version)
    champion = tracking.alias_version(project, tracking.CHAMPION)
    if champion == version:
        raise PromotionRefused(f"version {version} is already champion")
    _refuse_if_holding(project, version, "promotion")
    checked = recheck(project, version)
    overridden = False
    if not checked["passed"] and not checked["exact"]:
        if not override:
            raise PromotionRefused(f"version {version} fails the gate(s) {', '.join(checked['failed'])} "
                                   f"({checked['summary']}); pass --override with --reason to promote it anyway")
        overridden = True
    note = f"override of failed gates {', '.join(checked['failed'])}: {reason}" if overridden else reason
    if checked["gates"] and not overridden:
        note += f" ({checked['summary']})"
    previous = tracking.move_alias(project, ledger(project), tracking.CHAMPION, version, note, by, batch_id)
    tracking.set_version_tags(project, version, {PROMOTION_TAG: "promoted (override)" if overridden else "promoted"})
    return {"from": previous, "to": version, "reason": note, "actor": by, "override": overridden,
            "gates": checked["gates"], "exact": checked["exact"]}


def former_champions(project: Project) -> list[str]:
    """Versions that were champion before the current one, most recent first (each once)."""
    name = project.params.tracking.model_name
    current = tracking.alias_version(project, tracking.CHAMPION)
    out: list[str] = []
    for move in reversed(ledger(project).alias_history(name)):
        if move["alias"] != tracking.CHAMPION:
            continue
        for v in (move["from_version"], move["to_version"]):
            if v and v != current and v not in out:
                out.append(v)
    return out


def rollback(project: Project, to: str | None, reason: str, by: str) -> dict[str, Any]:
    """Move ``champion`` back to a former champion (default: the previous one), never to one holding erased data."""
    if not reason or not reason.strip():
        raise PromotionRefused("a reason is required (--reason \"...\"); it is recorded in the alias history")
    current = tracking.require_champion(project)
    former = former_champions(project)
    if to is None:
        if not former:
            raise PromotionRefused(f"version {current} is the only champion there has been: nothing to roll back to")
        target = former[0]
    else:
        target = str(to)
        _require_version(project, target)
        if target == current:
            raise PromotionRefused(f"version {target} is already champion")
        if target not in former:
            raise PromotionRefused(f"version {target} was never champion: use `forgetflow promote {target}` "
                                   "(which checks its gates) instead of a rollback")
    known = lineage_tasks.records(project)
    gone = lineage_tasks.erasures(project)
    held = lineage.held(target, known, gone)
    if held:
        offer = [v for v in former if not lineage.held(v, known, gone)]
        more = f" and {len(held) - 1} later batch(es)" if len(held) > 1 else ""
        raise PromotionRefused(
            f"version {target} still holds data erased by batch {held[0]}{more}: rollback refused "
            f"(former champions free of erased data: {', '.join(offer) or 'none; `forgetflow audit` retrains one'})"
            + _purged_note(project, target))
    _refuse_if_purged(project, target, "rollback")
    previous = tracking.move_alias(project, ledger(project), tracking.CHAMPION, target, f"rollback: {reason}", by)
    tracking.set_version_tags(project, target, {PROMOTION_TAG: "rolled back to"})
    return {"from": previous, "to": target, "reason": f"rollback: {reason}", "actor": by}


def history(project: Project) -> dict[str, Any]:
    """Every alias move and every supersession, oldest first, plus each version's lineage state."""
    name = project.params.tracking.model_name
    book = ledger(project)
    events: list[dict[str, Any]] = []
    for m in book.alias_history(name):
        events.append({"at": m["at"], "kind": "alias", "alias": m["alias"], "from_version": m["from_version"],
                       "to_version": m["to_version"], "reason": m["reason"], "actor": m["actor"],
                       "batch_id": m["batch_id"]})
    for s in book.superseded(name):
        events.append({"at": s["at"], "kind": "superseded", "version": s["version"],
                       "erased_by_batch": s["erased_by_batch"], "reason": s["reason"],
                       "actor": f"{s['recorded_in']}" if s["recorded_in"] else "forgetflow",
                       "batch_id": s["recorded_in"]})
    events.sort(key=lambda e: e["at"])
    known = lineage_tasks.records(project)
    gone = lineage_tasks.erasures(project)
    champion = tracking.alias_version(project, tracking.CHAMPION)
    challenger = tracking.alias_version(project, tracking.CHALLENGER)
    versions = []
    for v in tracking.versions(project):  # (registry searches do not return aliases: ask for each alias)
        held = lineage.held(v["version"], known, gone)
        aliases = [a for a, at in ((tracking.CHAMPION, champion), (tracking.CHALLENGER, challenger)) if at == v["version"]]
        versions.append({"version": v["version"], "role": v["tags"].get("forgetflow.role", "unknown"),
                         "batch_id": v["tags"].get("batch_id"), "aliases": aliases,
                         "gates": v["tags"].get("gates"), "promotion": v["tags"].get(PROMOTION_TAG),
                         "superseded_by": v["tags"].get("forgetflow.superseded_by"), "holds_erased_data_of": held})
    return {"model_name": name, "champion": champion, "challenger": challenger, "events": events, "versions": versions}


@task(name="check-promotable", cache_policy=NO_CACHE)
def check_promotable(project: Project, version: str | None) -> dict[str, Any]:
    """Resolve the version (default: the challenger), refuse one that holds erased data, re-check its gates."""
    if version is None:
        version = tracking.alias_version(project, tracking.CHALLENGER)
        if version is None:
            raise PromotionRefused("no challenger to promote; name a version")
    version = str(version)
    _require_version(project, version)
    if tracking.alias_version(project, tracking.CHAMPION) == version:
        raise PromotionRefused(f"version {version} is already champion")
    _refuse_if_holding(project, version, "promotion")
    return recheck(project, version)


@task(name="promote-version", cache_policy=NO_CACHE)
def promote_task(project: Project, version: str, reason: str, by: str, override: bool = False) -> dict[str, Any]:
    """:func:`promote_version` as a task (lineage and gates are checked again at the moment of the move)."""
    return promote_version(project, version, reason, by, override)


@task(name="reject-version", cache_policy=NO_CACHE)
def reject_version(project: Project, version: str, reason: str, by: str) -> None:
    """A person declined the promotion: record it on the version (tag ``forgetflow.promotion``)."""
    tracking.set_version_tags(project, version, {PROMOTION_TAG: f"declined by {by}: {reason}"[:4900]})


def answer_paused_run(flow_run: str, approve: bool, reason: str, by: str, override: bool = False) -> str:
    """Resume a paused promotion flow run with a person's answer (``forgetflow approve``); returns the API URL.

    Raises PromotionRefused with one line when there is no server, no such run, or nothing paused.
    """
    import uuid

    from prefect.exceptions import ObjectNotFound, PrefectException
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import get_current_settings

    try:
        run_id = uuid.UUID(flow_run)
    except ValueError:
        raise PromotionRefused(f"{flow_run!r} is not a flow run id") from None
    api = get_current_settings().api.url
    if not api:
        raise PromotionRefused("PREFECT_API_URL is not set: a paused flow run lives on a Prefect server "
                               "(`forgetflow promote VERSION --reason ...` works without one)")
    try:
        resume_flow_run(run_id, run_input={"approve": approve, "approver": by, "reason": reason, "override": override})
    except ObjectNotFound:
        raise PromotionRefused(f"flow run {flow_run} does not exist on the Prefect server at {api}") from None
    except (PrefectException, RuntimeError) as exc:  # not paused, timed out, input rejected
        raise PromotionRefused(f"flow run {flow_run}: {exc}") from None
    return api
