"""The deletion batch: claim → manifest + validation → unlearn → evaluate → register → gate → promote →
erase → receipts. Every side effect registers its undo; a failure anywhere runs the undos in reverse, so
no new registry version, no new dataset version and no receipt survives, and the claimed requests are
pending again (requests that validation quarantined stay quarantined: that judgement is about them, not
about the batch)."""

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
from tasks import bootstrap, claims, tracking, versioning
from tasks.erasure import erase
from tasks.evaluate import evaluate_candidate, train_oracle
from tasks.manifests import resolve_and_validate
from tasks.promotion import gate, promote, register_candidate
from tasks.receipts import issue_receipts
from tasks.unlearn import ensure_gpu_limit, unlearn_candidate

STEPS = ("claim", "validate", "unlearn", "oracle", "evaluate", "register", "gate", "promote", "erase", "receipts")


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
                   method: str | None = None, inject_failure: str | None = None) -> dict[str, Any]:
    """Run one deletion batch over every pending request (at most ``batch.max_requests``).

    Args:
        params_path: the project's params.yaml.
        overrides: dotted params overrides, e.g. ``{"unlearn.method": "mu-mis"}``.
        method: force one unlearning method for every request (else chosen per request reason).
        inject_failure: a step name from ``STEPS``; the batch fails right after it (drills and tests).
    """
    total = Stopwatch()
    project = Project.load(params_path, overrides)
    runtime_env.apply(project)
    log = get_run_logger()
    if inject_failure is not None and inject_failure not in STEPS:
        raise ForgetflowError(f"inject_failure must be one of {', '.join(STEPS)}")
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

        candidate = unlearn_candidate(project, batch_id, resolved.path, method)
        undo.push("candidate file", lambda: Path(candidate.path).unlink(missing_ok=True))
        seconds["unlearn"] = candidate.seconds
        _inject("unlearn", inject_failure)

        oracle = None
        if project.params.evaluate.oracle:
            clock = Stopwatch()
            oracle = train_oracle(project, resolved.path, resolved.sha256)
            seconds["oracle"] = oracle.seconds if not oracle.cached else 0.0
            seconds["oracle_wall"] = clock()
        _inject("oracle", inject_failure)

        clock = Stopwatch()
        scores = evaluate_candidate(project, batch_id, resolved.path, candidate.path, candidate.champion_version, oracle)
        seconds["evaluate"] = clock()
        _inject("evaluate", inject_failure)

        registered = register_candidate(project, batch_id, resolved, candidate, scores, oracle, data_version, context)
        undo.push("registry version", lambda: tracking.delete_version(project, registered.version))
        undo.push("challenger alias", lambda: tracking.restore_alias(project, tracking.CHALLENGER, registered.previous_challenger))
        undo.push("alias history", lambda: claims.ledger(project).delete_alias_moves(batch_id))
        _inject("register", inject_failure)

        verdict = gate(project, candidate, scores, oracle,
                       bootstrap.champion_train_seconds(project, candidate.champion_version))
        _inject("gate", inject_failure)
        previous_champion = None
        if verdict.passed:
            previous_champion = promote(project, batch_id, registered.version, verdict)
            undo.push("champion alias", lambda: tracking.restore_alias(project, tracking.CHAMPION, previous_champion))
        _inject("promote", inject_failure)

        saved = versioning.snapshot(project)
        undo.push("dataset version", lambda: versioning.restore(project, saved))
        erased = erase(project, batch_id, resolved.manifest.forget_ids(), saved)
        _inject("erase", inject_failure)

        context.update({
            "data_version": {"before": erased.before, "after": erased.after},
            "flow_run": {"id": context["flow_run_id"], "name": context["flow_run_name"]},
            "mlflow": {"run_id": registered.run_id, "model_name": project.params.tracking.model_name,
                       "model_version": registered.version, "parent_version": candidate.champion_version},
            "method": {"phases": candidate.phases, "run": candidate.run},
            "metrics": scores.metrics, "oracle": scores.oracle, "champion_before": scores.champion,
            "gaps": scores.gaps,
            "verdict": {"gates": verdict.gates, "promoted": verdict.passed,
                        "champion_after": registered.version if verdict.passed else candidate.champion_version},
            "decision": {"action": "unlearn", "reason": "default policy"},
        })
        receipt_context = {k: v for k, v in context.items() if k not in ("flow_run_id", "flow_run_name")}
        undo.push("receipt files", lambda: [p.unlink(missing_ok=True) for p in written_receipts])
        seconds["total"] = total()
        info = {"flow_run_id": context["flow_run_id"], "method": candidate.method, "requests": len(honoured),
                "forget_samples": len(resolved.manifest.forget_ids()), "model_version": registered.version,
                "promoted": verdict.passed, "data_version": erased.after["version"], "decision": "unlearn"}
        _inject("receipts", inject_failure)  # a drill at this step fails just before the receipts are issued
        receipt_paths = issue_receipts(project, batch_id, resolved.path, resolved.sha256, receipt_context, info,
                                       written_receipts)
    except BaseException as exc:
        problems = undo.run(log)
        released = claims.fail_batch(project, batch_id, f"{type(exc).__name__}: {exc}")
        log.error("batch %s failed (%s); rolled back, %d request(s) pending again", batch_id, exc, released)
        if problems:
            raise BatchFailed(f"batch {batch_id} failed ({exc}) and the rollback was incomplete: {'; '.join(problems)}") from exc
        raise BatchFailed(f"batch {batch_id} failed and was rolled back ({released} request(s) pending again): "
                          f"{type(exc).__name__ if not isinstance(exc, ForgetflowError) else ''}{': ' if not isinstance(exc, ForgetflowError) else ''}{exc}") from exc
    Path(candidate.path).unlink(missing_ok=True)
    seconds["total"] = total()
    return {
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
        "promoted": verdict.passed,
        "gates": verdict.gates,
        "data_version": erased.after,
        "manifest": {"path": resolved.path, "sha256": resolved.sha256},
        "validation_warnings": resolved.warnings,
        "reports": {"validation": resolved.report_path, "evaluation": scores.report_path},
        "flow_run_id": context["flow_run_id"],
        "receipts": receipt_paths,
    }
