"""The deletion batch: claim → manifest + validation → decide (unlearn or retrain) → unlearn or retrain →
evaluate → register → gate (→ retrain when unlearning failed the gates) → promote / await approval → erase →
supersede → quality → purge → receipts → report. Every side effect registers its undo; a failure anywhere
runs the undos in reverse, so no new registry version, no new dataset version and no receipt survives, and
the claimed requests are pending again (requests that validation quarantined stay quarantined: that
judgement is about them, not about the batch). The report comes after the receipts: it is a rendering of
what the batch recorded, and ``forgetflow report BATCH`` can redo it."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger

from forgetflow import runtime_env
from forgetflow.data.manifest import canonical_json
from forgetflow.errors import BatchFailed, ForgetflowError
from forgetflow.project import Project
from forgetflow.training import Stopwatch
from forgetflow.lineage import Erasure
from forgetflow.policy import RETRAIN, UNLEARN
from tasks import bootstrap, claims, tracking, versioning
from tasks import lineage as lineage_tasks
from tasks.decision import decide_action, record_quality, retrain_after_gate_failure
from tasks.erasure import erase
from tasks.evaluate import evaluate_candidate, train_oracle
from tasks.manifests import resolve_and_validate
from tasks.promotion import gate, plan, promote, register_candidate
from tasks.purge import purge_erased
from tasks.receipts import issue_receipts
from tasks.reporting import publish_report, write_batch_json
from tasks.retrain import retrain_candidate
from tasks.unlearn import ensure_gpu_limit, unlearn_candidate

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
    ensure_gpu_limit(project.params.batch.gpu_concurrency)
    requests = claims.open_batch(project, batch_id)
    if not requests:
        return {"batch_id": None, "requests": [], "status": "nothing-to-do", "seconds": {"total": total()}}
    undo = Undo()
    written_receipts: list[Path] = []
    from prefect.runtime import flow_run

    context: dict[str, Any] = {"flow_run_id": str(flow_run.id or ""), "flow_run_name": str(flow_run.name or ""),
                               "git_commit": versioning.git_commit_id(project.root),
                               "params_sha256": hashlib.sha256(canonical_json(project.params.model_dump(mode="json")).encode()).hexdigest()}
    seconds: dict[str, float] = {}
    try:
        _inject("claim", inject_failure)
        clock = Stopwatch()
        resolved = resolve_and_validate(project, batch_id, requests)
        undo.push("manifest", lambda: (project.root / resolved.path).unlink(missing_ok=True))
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
        decision = decide_action(project, len(forget_ids), action)
        champion_before = decision.measures["champion_version"]
        _inject("decide", inject_failure)

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

        clock = Stopwatch()
        scores = evaluate_candidate(project, batch_id, resolved.path, candidate.path, candidate.champion_version, oracle,
                                    candidate_is_oracle=decision.action == RETRAIN)
        seconds["evaluate"] = clock()
        _inject("evaluate", inject_failure)

        registered = register_candidate(project, batch_id, resolved, candidate, scores, oracle, data_version, context,
                                        role="retrain" if decision.action == RETRAIN else "unlearned",
                                        decision=decision.as_dict())
        _undo_registration(undo, project, batch_id, registered)
        _inject("register", inject_failure)

        verdict = gate(project, candidate, scores, oracle,
                       bootstrap.champion_train_seconds(project, candidate.champion_version), registered.version)
        outputs_file = "outputs.npz"
        rejected = None
        retry = retrain_after_gate_failure(project, decision, verdict.failed, registered.version) \
            if not verdict.passed else None
        if retry is not None:  # unlearning did not pass: the exact retrain replaces it (the attempt stays on record)
            rejected = {"model_version": registered.version, "method": candidate.method, "metrics": scores.metrics,
                        "gates": verdict.gates, "failed": verdict.failed, "mlflow_run_id": registered.run_id}
            decision = retry
            if oracle is None:
                clock = Stopwatch()
                oracle = train_oracle(project, resolved.path, resolved.sha256)
                seconds["oracle"] = oracle.seconds if not oracle.cached else 0.0
                seconds["oracle_wall"] = clock()
            candidate = retrain_candidate(project, batch_id, oracle, champion_before, honoured, len(forget_ids))
            undo.push("retrain file", lambda c=candidate: Path(c.path).unlink(missing_ok=True))
            seconds["retrain"] = candidate.seconds
            scores = evaluate_candidate(project, batch_id, resolved.path, candidate.path, champion_before, oracle,
                                        candidate_is_oracle=True, label="-retrain")
            outputs_file = "outputs-retrain.npz"
            registered = register_candidate(project, batch_id, resolved, candidate, scores, oracle, data_version,
                                            context, role="retrain", decision=decision.as_dict())
            _undo_registration(undo, project, batch_id, registered)
            verdict = gate(project, candidate, scores, oracle,
                           bootstrap.champion_train_seconds(project, champion_before), registered.version)
        _inject("gate", inject_failure)

        exact = decision.action == RETRAIN
        promotion = plan(project, batch_id, registered.version, verdict, exact)
        promoted = promotion["action"] == "promote"
        previous_champion = None
        if promoted:
            previous_champion = promote(project, batch_id, registered.version, verdict, exact)
            undo.push("champion alias", lambda: tracking.restore_alias(project, tracking.CHAMPION, previous_champion))
        _inject("promote", inject_failure)

        saved = versioning.snapshot(project)
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
            "quality_drift": decision.measures.get("quality_drift"), "retrained": 1.0 if exact else 0.0})
        _inject("quality", inject_failure)

        decision_record = {**decision.as_dict(), "promotion": promotion, "rejected_version": (rejected or {}).get("model_version")}
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
        receipt_context = {k: v for k, v in context.items() if k not in ("flow_run_id", "flow_run_name")}
        undo.push("receipt files", lambda: [p.unlink(missing_ok=True) for p in written_receipts])
        seconds["total"] = total()
        info = {"flow_run_id": context["flow_run_id"], "method": candidate.method, "requests": len(honoured),
                "forget_samples": len(forget_ids), "model_version": registered.version,
                "promoted": promoted, "data_version": erased.after["version"], "decision": decision.action}
        _inject("receipts", inject_failure)  # a drill at this step fails just before the receipts are issued
        # The purge is the batch's commit point (docs/erasure.md): it runs after every step that can be undone,
        # and what it deletes cannot come back. Its checks come first; a failure (or the "purge" drill) before
        # its first deletion rolls back like any other step. Every receipt carries its evidence.
        receipt_context["purge"] = (purge_erased(project, batch_id, inject_failure == "purge")
                                    if project.params.purge.enabled else {"enabled": False})
        issued = issue_receipts(project, batch_id, resolved.path, resolved.sha256, receipt_context, info,
                                written_receipts)
        receipt_paths = issued.paths
    except BaseException as exc:
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
        "superseded": superseded,
        "data_version_before": erased.before,
        "data_version": erased.after,
        "purge": receipt_context.get("purge"),
        "manifest": {"path": resolved.path, "sha256": resolved.sha256},
        "validation_warnings": resolved.warnings,
        "reports": {"validation": resolved.report_path, "evaluation": scores.report_path},
        "flow_run_id": context["flow_run_id"],
        "receipts": receipt_paths,
        "receipts_anchor": issued.anchor,  # the chain's head after this batch, also on the MLflow run (tags)
        "outputs_file": outputs_file,
    }
    # the batch is committed (receipts issued); the report renders it, and a failure here is reported, not fatal
    try:
        result["report"] = publish_report(project, result)
    except Exception as exc:  # noqa: BLE001 - `forgetflow report BATCH` redoes it from the stored records
        log.error("batch %s: the report could not be written (%s: %s); run `forgetflow report %s`",
                  batch_id, type(exc).__name__, exc, batch_id)
        result["report"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_batch_json(project, result)
    return result


def _undo_registration(undo: Undo, project: Project, batch_id: str, registered: Any) -> None:
    """A registered version is deleted, the challenger alias restored and the batch's alias history removed."""
    undo.push("registry version", lambda: tracking.delete_version(project, registered.version))
    undo.push("challenger alias",
              lambda: tracking.restore_alias(project, tracking.CHALLENGER, registered.previous_challenger))
    undo.push("alias history", lambda: claims.ledger(project).delete_alias_moves(batch_id))
