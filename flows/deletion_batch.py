"""The deletion batch: claim → manifest + validation → decide (unlearn or retrain) → unlearn or retrain →
evaluate → verify (membership evidence) → register → gate (→ unlearn once more with a larger budget when the
evidence still detects membership → retrain when unlearning failed the gates) → promote / await approval → erase →
supersede → quality → purge → receipts → report. Every side effect registers its undo; a failure anywhere
runs the undos in reverse, so no new registry version, no new dataset version and no receipt survives, and
the claimed requests are pending again (requests that validation quarantined stay quarantined: that
judgement is about them, not about the batch). The report comes after the receipts: it is a rendering of
what the batch recorded, and ``forgetflow report BATCH`` can redo it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import uuid
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger

from forgetflow import faults, runtime_env
from forgetflow.data.manifest import canonical_json
from forgetflow.errors import BatchFailed, ForgetflowError, LeaseLost
from forgetflow.ledger import lease
from forgetflow.project import Project
from forgetflow.training import Stopwatch
from forgetflow.lineage import Erasure
from forgetflow.policy import FULL_RETRAIN_METRIC, RETRAIN, UNLEARN
from flows.references import usable_or_train
from tasks import bootstrap, claims, recovery, tracking, versioning
from tasks import lineage as lineage_tasks
from tasks.decision import (decide_action, escalate_after_evidence, last_full_retrain, record_quality,
                            retrain_after_gate_failure)
from tasks.erasure import erase
from tasks.evaluate import evaluate_candidate, train_oracle
from tasks.manifests import resolve_and_validate
from tasks.promotion import gate, plan, promote, register_candidate
from tasks.purge import purge_erased
from tasks.receipts import issue_receipts
from tasks.reporting import publish_report, write_batch_json
from tasks.retrain import retrain_candidate
from tasks.unlearn import unlearn_candidate
from tasks.verify import Verified, verify_candidate

STEPS = ("claim", "validate", "decide", "unlearn", "oracle", "evaluate", "register", "gate", "promote", "erase",
         "supersede", "quality", "purge", "receipts")


class Undo:
    """Compensating actions, run in reverse order when the batch fails."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], Any]]] = []

    def push(self, name: str, action: Callable[[], Any]) -> None:
        self._actions.append((name, action))

    def run(self, log: logging.Logger | logging.LoggerAdapter) -> list[str]:
        problems = []
        for name, action in reversed(self._actions):
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - keep undoing; report every failure
                problems.append(f"undo {name}: {exc}")
                log.error("undo %s failed: %s", name, exc)
        return problems


def _inject(step: str, inject_failure: str | None) -> None:
    lease.check_held()  # a batch that lost its lease on the batch lock stops at the next step boundary
    if inject_failure == step:
        raise RuntimeError(f"injected failure after step {step!r} (drill)")


def new_batch_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("b%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@flow(name="deletion-batch", log_prints=False)
def deletion_batch(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None,
                   method: str | None = None, inject_failure: str | None = None,
                   action: str | None = None) -> dict[str, Any]:
    """Run one deletion batch over every pending request (at most ``batch.max_requests``).

    Args:
        params_path: the project's params.yaml.
        overrides: dotted params overrides, e.g. ``{"unlearn.method": "mu-mis"}``.
        method: force one unlearning method for every request (else chosen per request reason).
        inject_failure: a step name from ``STEPS``; the batch fails right after it (drills and tests).
        action: ``unlearn`` or ``retrain`` forces that decision; None = the ``retrain`` policy decides.
    """
    total = Stopwatch()
    project = Project.load(params_path, overrides)
    runtime_env.apply(project)
    log = get_run_logger()
    if inject_failure is not None and inject_failure not in STEPS:
        raise ForgetflowError(f"inject_failure must be one of {', '.join(STEPS)}")
    if action is not None and action not in (UNLEARN, RETRAIN):
        raise ForgetflowError(f"action must be {UNLEARN} or {RETRAIN}, not {action!r}")
    batch_id = new_batch_id()
    from prefect.runtime import flow_run

    # what a dead batch left is cleaned first (tasks/recovery.py: rolled back, or forward past its purge)
    clock = Stopwatch()
    recovered = [r.describe() for r in recovery.recover(project)]
    for line in recovered:
        log.warning("recovered batch %s", line)
    recovery_seconds = clock()
    requests = claims.open_batch(project, batch_id, str(flow_run.id or "") or None)
    if not requests:
        return {"batch_id": None, "requests": [], "status": "nothing-to-do", "recovered": recovered,
                "seconds": {"recover": recovery_seconds, "total": total()}}
    recovery.tidy(project, batch_id)
    undo = Undo()
    written_receipts: list[Path] = []
    context: dict[str, Any] = {"flow_run_id": str(flow_run.id or ""), "flow_run_name": str(flow_run.name or ""),
                               "git_commit": versioning.git_commit_id(project.root),
                               "params_sha256": hashlib.sha256(canonical_json(project.params.model_dump(mode="json")).encode()).hexdigest()}
    seconds: dict[str, float] = {"recover": recovery_seconds}
    try:
        _inject("claim", inject_failure)
        clock = Stopwatch()
        resolved = resolve_and_validate(project, batch_id, requests)
        undo.push("manifest", lambda: (project.root / resolved.path).unlink(missing_ok=True))
        faults.kill_point("validate")  # drill: the manifest is written, quarantines not yet recorded
        claims.quarantine(project, batch_id, resolved.quarantine)
        seconds["validate"] = clock()
        _inject("validate", inject_failure)
        honoured = resolved.manifest.valid_request_ids
        if not honoured:
            claims.ledger(project).finish_batch(batch_id, [], [], {"requests": 0, "forget_samples": 0,
                                                                   "decision": "nothing-valid"}, None)
            return {"batch_id": batch_id, "requests": [r["request_id"] for r in requests], "status": "all-quarantined",
                    "quarantined": resolved.quarantine, "seconds": {"total": total()}}
        data_version = bootstrap.ensure_data(project).meta
        data_version = {"dataset": data_version["dataset"], "version": data_version["version"],
                        "fingerprint": data_version["fingerprint"], "dvc_md5": versioning.data_md5(project)}

        forget_ids = resolved.manifest.forget_ids()
        decision = decide_action(project, len(forget_ids), action, resolved.path, method)
        champion_before = decision.measures["champion_version"]
        _inject("decide", inject_failure)

        # the reference models the evidence needs: found, or trained now (it says so) before anything waits on them
        selection = None
        if project.params.evidence.enabled:
            clock = Stopwatch()
            selection = usable_or_train(params_path, overrides)
            seconds["references"] = clock()

        oracle = None
        if decision.action == UNLEARN:
            candidate = unlearn_candidate(project, batch_id, resolved.path, method)
            seconds["unlearn"] = candidate.seconds
        else:
            clock = Stopwatch()
            oracle = train_oracle(project, resolved.path, resolved.sha256)
            seconds["oracle"] = oracle.seconds if not oracle.cached else 0.0
            seconds["oracle_wall"] = clock()
            candidate = retrain_candidate(project, batch_id, oracle, champion_before, honoured, len(forget_ids))
            seconds["retrain"] = candidate.seconds
        undo.push("candidate file", lambda c=candidate: Path(c.path).unlink(missing_ok=True))
        _inject("unlearn", inject_failure)

        if oracle is None and project.params.evaluate.oracle:
            clock = Stopwatch()
            oracle = train_oracle(project, resolved.path, resolved.sha256)
            seconds["oracle"] = oracle.seconds if not oracle.cached else 0.0
            seconds["oracle_wall"] = clock()
        _inject("oracle", inject_failure)

        retrain_reference = last_full_retrain(project)  # read before this batch records a retrain of its own
        judged = _judge(project, batch_id, resolved, candidate, oracle, decision, data_version, context, seconds,
                        retrain_reference, undo, selection, candidate_is_oracle=decision.action == RETRAIN,
                        inject_failure=inject_failure)
        attempts: list[dict[str, Any]] = []  # unlearned models that failed the gates (kept in the registry)
        escalation = escalate_after_evidence(project, decision, judged.verdict.gates, candidate.phases,
                                             judged.registered.version) if not judged.verdict.passed else None
        if escalation is not None:  # the evidence still detects membership: once more with a larger budget
            attempts.append(judged.attempt(candidate))
            decision, budget = escalation
            spent = candidate.seconds
            candidate = unlearn_candidate(project, batch_id, resolved.path, method, budget)
            seconds["unlearn_escalated"] = candidate.seconds
            # the cost gate judges everything this batch spent on unlearning, both attempts
            candidate = dataclasses.replace(candidate, seconds=spent + candidate.seconds)
            judged = _judge(project, batch_id, resolved, candidate, oracle, decision, data_version, context, seconds,
                            retrain_reference, undo, selection, label="-escalated")
        retry = retrain_after_gate_failure(project, decision, judged.verdict.failed, judged.registered.version) \
            if not judged.verdict.passed else None
        if retry is not None:  # unlearning did not pass: the exact retrain replaces it (the attempts stay on record)
            attempts.append(judged.attempt(candidate))
            decision = retry
            if oracle is None:
                clock = Stopwatch()
                oracle = train_oracle(project, resolved.path, resolved.sha256)
                seconds["oracle"] = oracle.seconds if not oracle.cached else 0.0
                seconds["oracle_wall"] = clock()
            candidate = retrain_candidate(project, batch_id, oracle, champion_before, honoured, len(forget_ids))
            undo.push("retrain file", lambda c=candidate: Path(c.path).unlink(missing_ok=True))
            seconds["retrain"] = candidate.seconds
            judged = _judge(project, batch_id, resolved, candidate, oracle, decision, data_version, context, seconds,
                            retrain_reference, undo, selection, candidate_is_oracle=True, label="-retrain")
        scores, verified, registered, verdict = judged.scores, judged.verified, judged.registered, judged.verdict
        outputs_file = judged.outputs_file
        rejected = attempts[0] if attempts else None
        _inject("gate", inject_failure)

        exact = decision.action == RETRAIN
        promotion = plan(project, batch_id, registered.version, verdict, exact)
        promoted = promotion["action"] == "promote"
        previous_champion = None
        if promoted:
            previous_champion = promote(project, batch_id, registered.version, verdict, exact)
            faults.kill_point("promote")  # drill: champion moved and recorded, not yet in the undo list
            undo.push("champion alias", lambda: tracking.restore_alias(project, tracking.CHAMPION, previous_champion))
        _inject("promote", inject_failure)

        saved = versioning.snapshot(project)
        claims.journal(project, batch_id, data_before=saved)  # a crash from here on restores it (tasks/recovery.py)
        undo.push("dataset version", lambda: versioning.restore(project, saved))
        erased = erase(project, batch_id, forget_ids, saved)
        _inject("erase", inject_failure)

        # every registered version that still holds the samples just erased never serves again
        superseded: list[dict[str, Any]] = []
        undo.push("superseded", lambda: lineage_tasks.undo_supersede(project, batch_id, superseded))
        lineage_tasks.mark_superseded(project, batch_id, Erasure(batch_id, int(erased.after["version"]), len(forget_ids)),
                                      superseded)
        _inject("supersede", inject_failure)

        champion_after = registered.version if promoted else champion_before
        undo.push("quality", lambda: claims.ledger(project).delete_quality(batch_id))
        record_quality(project, batch_id, champion_after, {
            "champion_test_acc": (scores.metrics if promoted else scores.champion)["test_acc"],
            "candidate_test_acc": scores.metrics["test_acc"], "candidate_forget_acc": scores.metrics["forget_acc"],
            "oracle_test_acc": (scores.oracle or {}).get("test_acc"), "avg_gap": scores.gaps.get("avg_gap"),
            "forgotten_fraction": decision.measures.get("forgotten_fraction"),
            "quality_drift": decision.measures.get("quality_drift"), "retrained": 1.0 if exact else 0.0,
            # a retrain batch is a full retrain of the serving recipe: the next cost gates compare with it
            FULL_RETRAIN_METRIC: candidate.seconds if exact else None,
            "verify_seconds": verified.seconds if verified else None,
            "evidence_detectable_requests": len(verified.summary["detectable_requests"]) if verified else None})
        _inject("quality", inject_failure)

        decision_record = {**decision.as_dict(), "promotion": promotion, "rejected_version": (rejected or {}).get("model_version"),
                           "attempts": [{k: a[k] for k in ("model_version", "method", "rule", "failed")} for a in attempts]}
        context.update({
            "data_version": {"before": erased.before, "after": erased.after},
            "flow_run": {"id": context["flow_run_id"], "name": context["flow_run_name"]},
            "mlflow": {"run_id": registered.run_id, "model_name": project.params.tracking.model_name,
                       "model_version": registered.version, "parent_version": candidate.champion_version},
            "method": {"phases": candidate.phases, "run": candidate.run},
            "metrics": scores.metrics, "oracle": scores.oracle, "champion_before": scores.champion,
            "gaps": scores.gaps,
            "verdict": {"gates": verdict.gates, "promoted": promoted, "champion_after": champion_after,
                        "promotion": promotion["action"]},
            "decision": decision_record,
            "superseded": [{"version": r["version"], "erased_by_batch": r["erased_by_batch"]} for r in superseded],
        })
        if verified is not None:  # tasks/receipts.py gives each receipt its own request's entry
            context["evidence"] = {"requests": verified.receipts}
        receipt_context = {k: v for k, v in context.items() if k not in ("flow_run_id", "flow_run_name")}
        undo.push("receipt files", lambda: [p.unlink(missing_ok=True) for p in written_receipts])
        seconds["total"] = total()
        info = {"flow_run_id": context["flow_run_id"], "method": candidate.method, "requests": len(honoured),
                "forget_samples": len(forget_ids), "model_version": registered.version,
                "promoted": promoted, "data_version": erased.after["version"], "decision": decision.action}
        _inject("receipts", inject_failure)  # a drill at this step fails just before the receipts are issued
        # the commit record: from here on a crash is rolled forward (purge again, receipts from this record)
        claims.journal(project, batch_id, commit={
            "manifest": {"path": resolved.path, "sha256": resolved.sha256}, "context": receipt_context,
            "info": info, "result": {"requests": honoured, "quarantined": resolved.quarantine,
                                     "forget_samples": len(forget_ids), "method": candidate.method,
                                     "model_version": registered.version, "mlflow_run_id": registered.run_id,
                                     "promoted": promoted, "champion_after": champion_after,
                                     "decision": decision_record, "data_version": erased.after}})
        # The purge is the batch's commit point (docs/erasure.md): it runs after every step that can be undone,
        # and what it deletes cannot come back. Its checks come first; a failure (or the "purge" drill) before
        # its first deletion rolls back like any other step. Every receipt carries its evidence.
        receipt_context["purge"] = (purge_erased(project, batch_id, inject_failure == "purge")
                                    if project.params.purge.enabled else {"enabled": False})
        issued = issue_receipts(project, batch_id, resolved.path, resolved.sha256, receipt_context, info,
                                written_receipts)
        receipt_paths = issued.paths
    except BaseException as exc:
        held = lease.held(batch_id, project.ledger_url)
        if isinstance(exc, LeaseLost) or (held is not None and held.lost):
            # another process recovered this batch and owns its clean-up: touch nothing more
            if held is not None:
                held.stop()
            log.error("batch %s lost its lease and stopped; its recoverer cleans up", batch_id)
            raise LeaseLost(f"batch {batch_id} lost its lease on the batch lock and stopped without touching "
                            f"anything more (its recoverer rolls it back or forward): {exc}") from exc
        problems = undo.run(log)
        released = claims.fail_batch(project, batch_id, f"{type(exc).__name__}: {exc}")
        log.error("batch %s failed (%s); rolled back, %d request(s) pending again", batch_id, exc, released)
        if problems:
            raise BatchFailed(f"batch {batch_id} failed ({exc}) and the rollback was incomplete: {'; '.join(problems)}") from exc
        raise BatchFailed(f"batch {batch_id} failed and was rolled back ({released} request(s) pending again): "
                          f"{type(exc).__name__ if not isinstance(exc, ForgetflowError) else ''}{': ' if not isinstance(exc, ForgetflowError) else ''}{exc}") from exc
    Path(candidate.path).unlink(missing_ok=True)
    if rejected is not None:
        (project.state_dir / "candidates" / f"{batch_id}.pt").unlink(missing_ok=True)
    seconds["total"] = total()
    result = {
        "batch_id": batch_id,
        "status": "done",
        "requests": honoured,
        "quarantined": resolved.quarantine,
        "forget_samples": len(resolved.manifest.forget_ids()),
        "method": candidate.method,
        "phases": [{k: v for k, v in p.items() if k != "requests"} for p in candidate.phases],
        "metrics": scores.metrics,
        "oracle": scores.oracle,
        "champion_before": scores.champion,
        "avg_gap": scores.gaps.get("avg_gap"),
        "avg_gap_mumis": scores.gaps.get("avg_gap_mumis"),
        "gaps": scores.gaps,
        "seconds": seconds,
        "model_version": registered.version,
        "mlflow_run_id": registered.run_id,
        "promoted": promoted,
        "champion_after": champion_after,
        "gates": verdict.gates,
        "decision": decision_record,
        "promotion": promotion,
        "rejected": rejected,
        "attempts": attempts,
        "evidence": None if verified is None else {**verified.summary, "record": verified.path,
                                                   "verify_seconds": round(verified.seconds, 4)},
        "superseded": superseded,
        "data_version_before": erased.before,
        "data_version": erased.after,
        "purge": receipt_context.get("purge"),
        "manifest": {"path": resolved.path, "sha256": resolved.sha256},
        "validation_warnings": resolved.warnings,
        "reports": {"validation": resolved.report_path, "evaluation": scores.report_path,
                    "evidence": verified.path if verified else None},
        "flow_run_id": context["flow_run_id"],
        "receipts": receipt_paths,
        "receipts_anchor": issued.anchor,  # the chain's head after this batch, also on the MLflow run (tags)
        "outputs_file": outputs_file,
        "recovered": recovered,
    }
    # the batch is committed (receipts issued); the report renders it, and a failure here is reported, not fatal
    try:
        result["report"] = publish_report(project, result)
    except Exception as exc:  # noqa: BLE001 - `forgetflow report BATCH` redoes it from the stored records
        log.error("batch %s: the report could not be written (%s: %s); run `forgetflow report %s`",
                  batch_id, type(exc).__name__, exc, batch_id)
        result["report"] = {"error": f"{type(exc).__name__}: {exc}"}
    # ... and so is recording in dvc.lock what the batch changed (a failure leaves `dvc status` showing it)
    try:
        result["pipeline_recorded"] = versioning.record_pipeline(project)
    except Exception as exc:  # noqa: BLE001 - the batch is done; `dvc commit` records it by hand
        log.warning("batch %s: dvc.lock not updated (%s: %s)", batch_id, type(exc).__name__, exc)
        result["pipeline_recorded"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_batch_json(project, result)
    return result


@dataclasses.dataclass
class Judged:
    """One candidate after evaluation, verification, registration and the gates."""

    scores: Any
    verified: Verified | None
    registered: Any
    verdict: Any
    outputs_file: str
    rule: str

    def attempt(self, candidate: Any) -> dict[str, Any]:
        """The record of an attempt that failed the gates (it stays in the registry)."""
        return {"model_version": self.registered.version, "method": candidate.method, "rule": self.rule,
                "metrics": self.scores.metrics, "gates": self.verdict.gates, "failed": self.verdict.failed,
                "mlflow_run_id": self.registered.run_id,
                "evidence": None if self.verified is None else {
                    "record": self.verified.path, "detectable_requests": self.verified.summary["detectable_requests"],
                    "batch": self.verified.summary["batch"]}}


def _judge(project: Project, batch_id: str, resolved: Any, candidate: Any, oracle: Any, decision: Any,
           data_version: dict[str, Any], context: dict[str, Any], seconds: dict[str, float],
           retrain_reference: tuple[float | None, str], undo: Undo, selection: Any, candidate_is_oracle: bool = False,
           label: str = "", inject_failure: str | None = None) -> Judged:
    """Evaluate, verify, register and gate one candidate (the first attempt, an escalation or the retrain)."""
    clock = Stopwatch()
    scores = evaluate_candidate(project, batch_id, resolved.path, candidate.path, candidate.champion_version, oracle,
                                candidate_is_oracle=candidate_is_oracle, label=label)
    seconds[f"evaluate{label}"] = clock()
    faults.kill_point("evaluate")  # drill: the evaluation reports are written
    _inject("evaluate", inject_failure)
    clock = Stopwatch()
    verified = verify_candidate(project, batch_id, resolved.path, candidate.path, candidate.champion_version, oracle,
                                selection, candidate_is_oracle=candidate_is_oracle, label=label)
    seconds[f"verify_total{label}"] = clock()
    if verified is not None:
        seconds[f"verify{label}"] = verified.seconds
    retrain = decision.action == RETRAIN
    registered = register_candidate(project, batch_id, resolved, candidate, scores, oracle, data_version, context,
                                    role="retrain" if retrain else "unlearned", decision=decision.as_dict(),
                                    evidence=verified, retrain_seconds=retrain_reference[0])
    _undo_registration(undo, project, batch_id, registered)
    _inject("register", inject_failure)
    verdict = gate(project, candidate, scores, retrain_reference, verified.gate if verified else None,
                   registered.version)
    return Judged(scores, verified, registered, verdict, f"outputs{label}.npz", decision.rule)


def _undo_registration(undo: Undo, project: Project, batch_id: str, registered: Any) -> None:
    """A registered version is deleted, the challenger alias restored and the batch's alias history removed."""
    undo.push("registry version", lambda: tracking.delete_version(project, registered.version))
    undo.push("challenger alias",
              lambda: tracking.restore_alias(project, tracking.CHALLENGER, registered.previous_challenger))
    undo.push("alias history", lambda: claims.ledger(project).delete_alias_moves(batch_id))
