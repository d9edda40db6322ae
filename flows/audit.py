"""The oracle audit: a scheduled retrain from scratch on the current dataset version, compared with the champion.

It keeps drift measured between batches: the retrain's and the champion's accuracies and output divergence go
to the ledger's ``quality`` table (where the unlearn-or-retrain rule ``retrain.max_quality_drift`` reads the
latest audit) and to an MLflow run. When the champion trails the retrain by more than
``audit.max_test_acc_gap`` points, or still holds erased data, and ``audit.replace`` is on, the retrain is
registered (role ``retrain``) and replaces the champion (or waits for approval under
``promotion.approval: manual``). The audit also trains the reference models of the current version when it has
none yet (flows/references.py): samples erased since the last set leave the references here.
flows/deployments.py schedules it; ``forgetflow audit`` runs it now.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows import references as reference_flows
from flows.deletion_batch import Undo
from forgetflow import runtime_env
from forgetflow.errors import ForgetflowError
from forgetflow.project import Project
from tasks import oracle_audit as audit_tasks
from tasks import lineage as lineage_tasks


@flow(name="oracle-audit", log_prints=False)
def oracle_audit(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None,
                 replace: bool | None = None) -> dict[str, Any]:
    """Retrain on the current dataset version, measure the champion's drift, replace it when policy says so.

    Args:
        params_path: the project's params.yaml.
        overrides: dotted params overrides.
        replace: replace a drifted champion (default: ``audit.replace``).
    """
    project = Project.load(params_path, overrides)
    runtime_env.apply(project)
    log = get_run_logger()
    audit_id = audit_tasks.new_audit_id()
    audit_tasks.begin(project, audit_id)
    undo = Undo()
    done: list[audit_tasks.Replacement] = []
    try:
        measured = audit_tasks.measure(project, audit_id)
        audit_tasks.record(project, measured)  # on failure, audit_tasks.fail removes the audit's quality rows
        # reference models follow the data: a set for this version (erased samples leave them here)
        refs = reference_flows.refresh(params_path, overrides, why=f"oracle audit {audit_id}")
        allowed = project.params.audit.replace if replace is None else replace
        wanted = allowed and bool(measured.verdict["drifted"] or measured.held_batches)
        replacement = None
        if wanted:
            undo.push("replacement", lambda: [audit_tasks.undo_replace(project, audit_id, r) for r in done])
            replacement = audit_tasks.replace(project, measured, done)
            run_id = replacement.run_id
            # a champion that held erased data is recorded as superseded now that the audit found it
            superseded: list[dict[str, Any]] = []
            undo.push("superseded", lambda: lineage_tasks.undo_supersede(project, audit_id, superseded))
            lineage_tasks.supersede(project, audit_id, None, superseded)
        else:
            run_id = audit_tasks.log_run(project, measured)
        decision = ("audit:replaced" if replacement and replacement.action == "promote" else
                    "audit:awaiting-approval" if replacement else
                    "audit:drift" if measured.verdict["drifted"] else "audit:ok")
        audit_tasks.finish(project, audit_id, decision, replacement.version if replacement else None)
    except BaseException as exc:
        problems = undo.run(log)
        audit_tasks.fail(project, audit_id, f"{type(exc).__name__}: {exc}")
        if problems:
            raise ForgetflowError(f"audit {audit_id} failed ({exc}) and its undo was incomplete: {'; '.join(problems)}") from exc
        raise
    log.info("audit %s: %s", audit_id, measured.verdict["reason"])
    return {"audit_id": audit_id, "champion": measured.champion, "champion_metrics": measured.champion_metrics,
            "retrain_metrics": measured.retrain_metrics, "js_test": measured.js_test,
            "agreement_test": measured.agreement_test, "held_batches": measured.held_batches,
            "verdict": measured.verdict, "dataset": measured.dataset, "retrain": measured.retrain,
            "mlflow_run_id": run_id, "decision": decision, "references": refs,
            "replacement": None if replacement is None else {"version": replacement.version, "action": replacement.action,
                                                             "reason": replacement.reason}}
