"""First-run steps: the first dataset version (tracked by DVC, recorded in the ledger) and the original
model (trained, registered in MLflow, given the ``champion`` alias). Plain functions: the CLI and the DVC
stages call them without starting Prefect."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from forgetflow import pipeline
from forgetflow.data import DatasetVersion
from forgetflow.metrics import evaluate_model
from forgetflow.models import save_checkpoint
from forgetflow.policy import FULL_RETRAIN_METRIC
from forgetflow.project import Project
from forgetflow.runtime import StepLog, resolve_device
from tasks import tracking, versioning
from tasks.claims import ledger


def ensure_data(project: Project) -> DatasetVersion:
    """The current dataset version, created from the prepared one (and tracked + pushed) when absent."""
    existed = (project.version_dir / "version.json").exists()
    version = pipeline.current_version(project)
    md5 = versioning.data_md5(project)
    if not existed or md5 is None:
        md5 = versioning.track_and_push(project) or None
    ledger(project).record_version(pipeline.version_row(version, md5, None))
    return version


@dataclass
class OriginalInfo:
    version: str
    run_id: str
    metrics: dict[str, float]
    seconds: float
    cached: bool
    already_registered: bool


def train_and_register(project: Project, force: bool = False) -> OriginalInfo:
    """Train (or reuse) the original on the current version and make it ``champion`` unless one exists."""
    version = ensure_data(project)
    current = tracking.alias_version(project, tracking.CHAMPION)
    if current is not None and not force:
        info = tracking.version_info(project, current)
        return OriginalInfo(current, info["run_id"], tracking.run_metrics(project, info["run_id"]), 0.0, True, True)
    steps = StepLog()
    trained = pipeline.train_original(project, version, report=steps)
    save_checkpoint(trained.model, project.models_dir / "original.pt")
    device = resolve_device(project.params.train.device)
    test = version.sample_set(split="test")
    val = version.sample_set(split="val")
    from forgetflow.training import accuracy

    metrics = {"test_acc": accuracy(trained.model, test, device=device), "val_acc": accuracy(trained.model, val, device=device),
               "train_seconds": trained.seconds}
    name, config = pipeline.arch(project, version)
    params = {"role": "original", "arch": name, "arch_config": config, "seed": project.params.seed,
              **project.params.train.model_dump()}
    tags = {"forgetflow.role": "original", "dataset": str(version.meta["dataset"]), "dataset_version": str(version.version),
            "dataset_fingerprint": version.fingerprint, "dvc_data_md5": str(versioning.data_md5(project) or ""),
            "train_samples": str(version.meta["counts"].get("train", 0)),
            "git_commit": str(versioning.git_commit_id(project.root) or ""), "cache_key": trained.key}
    run_id, mv = tracking.log_model_run(project, trained.model, "original", params, metrics, tags,
                                        {"reports/params.resolved.json": project.params.model_dump(mode="json")})
    tracking.log_steps(project, run_id, steps.records)  # the training curve (empty when the model came from the cache)
    tracking.move_alias(project, ledger(project), tracking.CHAMPION, mv, "original model trained", "forgetflow train")
    # the cost gate's yardstick: every full training of the serving recipe is recorded (forgetflow.policy)
    ledger(project).record_quality(f"train-v{mv}", mv, {FULL_RETRAIN_METRIC: trained.seconds})
    metrics_path = project.models_dir / "original.json"
    metrics_path.write_text(json.dumps({"model_version": mv, "run_id": run_id, **metrics}, indent=1) + "\n")
    return OriginalInfo(mv, run_id, metrics, trained.seconds, trained.cached, False)


def champion_train_seconds(project: Project, champion_version: str) -> float | None:
    """The recorded training time of the champion's lineage root (the retraining cost without an oracle)."""
    seen = set()
    version: str | None = champion_version
    while version and version not in seen:
        seen.add(version)
        info = tracking.version_info(project, version)
        metrics = tracking.run_metrics(project, info["run_id"])
        if "train_seconds" in metrics:
            return float(metrics["train_seconds"])
        version = info["tags"].get("parent_model_version")
    return None


def describe(project: Project) -> dict[str, Any]:
    """Ledger counts, aliases and the dataset version: what ``forgetflow status`` prints."""
    book = ledger(project)
    current = None
    if (project.version_dir / "version.json").exists():
        v = DatasetVersion.load(project.version_dir)
        current = {"dataset": v.meta["dataset"], "version": v.version, "fingerprint": v.fingerprint,
                   "train_samples": v.meta["counts"].get("train"), "erased_total": v.meta["erased"],
                   "dvc_md5": versioning.data_md5(project)}
    return {
        "requests": book.counts(),
        "oldest_pending": (lambda t: t.isoformat() if t else None)(book.oldest_pending()),
        "champion": tracking.alias_version(project, tracking.CHAMPION),
        "challenger": tracking.alias_version(project, tracking.CHALLENGER),
        "dataset_version": current,
        "model_name": project.params.tracking.model_name,
        "last_batches": book.batches(limit=5),
    }
