"""Registry tasks: register the candidate as ``challenger``, judge it with the gates, promote it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.gates import all_passed, evaluate_gates
from forgetflow.models import load_checkpoint
from forgetflow.project import Project
from tasks import tracking
from tasks.claims import ledger
from tasks.evaluate import OracleResult, Scores
from tasks.manifests import ResolvedBatch
from tasks.unlearn import Candidate


@dataclass
class Registered:
    run_id: str
    version: str
    previous_challenger: str | None


@task(name="register", cache_policy=NO_CACHE)
def register_candidate(project: Project, batch_id: str, resolved: ResolvedBatch, candidate: Candidate, scores: Scores,
                       oracle: OracleResult | None, data_version: dict[str, Any], context: dict[str, Any]) -> Registered:
    """Log the MLflow run (params, metrics, reports, lineage) and register the model as ``challenger``."""
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
        "forgetflow.role": "unlearned",
        "batch_id": batch_id,
        "request_ids": ",".join(request_ids)[:4900],
        "manifest_sha256": resolved.sha256,
        "dataset": str(data_version["dataset"]),
        "dataset_version": str(data_version["version"]),
        "dvc_data_md5": str(data_version.get("dvc_md5") or ""),
        "parent_model_version": candidate.champion_version,
        "method": candidate.method,
        "flow_run_id": str(context.get("flow_run_id") or ""),
        "git_commit": str(context.get("git_commit") or ""),
    }
    params = {"method": candidate.method, "phases": candidate.phases, "seed": project.params.seed,
              "arch": project.params.model.arch, "requests": len(request_ids),
              "forget_samples": len(resolved.manifest.forget_ids()), "params_sha256": context.get("params_sha256"),
              **{f"run_{k}": v for k, v in candidate.run.items()}}
    documents = {"reports/params.resolved.json": project.params.model_dump(mode="json")}
    files = {"reports": project.root / resolved.report_path, "manifest": project.root / resolved.path}
    if scores.report_path:
        files["reports/evaluation"] = project.root / scores.report_path
    run_id, version = tracking.log_model_run(project, model, f"batch-{batch_id}", params, metrics, tags, documents, files)
    previous = tracking.move_alias(project, ledger(project), tracking.CHALLENGER, version,
                                   f"unlearned model of batch {batch_id}", "deletion-batch flow", batch_id)
    return Registered(run_id, version, previous)


@dataclass
class Verdict:
    gates: dict[str, dict[str, Any]]
    passed: bool
    retrain_seconds: float | None


@task(name="gate", cache_policy=NO_CACHE)
def gate(project: Project, candidate: Candidate, scores: Scores, oracle: OracleResult | None,
         champion_train_seconds: float | None) -> Verdict:
    """Apply params.yaml's gates; the retraining time is the oracle's (else the champion's training time)."""
    retrain = oracle.seconds if oracle is not None else champion_train_seconds
    verdicts = evaluate_gates(scores.metrics, scores.champion, scores.oracle, candidate.seconds, retrain,
                              project.params.gates)
    return Verdict(verdicts, all_passed(verdicts), retrain)


@task(name="promote", cache_policy=NO_CACHE)
def promote(project: Project, batch_id: str, version: str, verdict: Verdict) -> str | None:
    """Move ``champion`` to the challenger (the gates passed); returns the previous champion."""
    summary = ", ".join(f"{k} {v['value']}≤{v['threshold']}" for k, v in verdict.gates.items() if v["value"] is not None)
    return tracking.move_alias(project, ledger(project), tracking.CHAMPION, version,
                               f"gates passed for batch {batch_id} ({summary})", "deletion-batch flow", batch_id)
