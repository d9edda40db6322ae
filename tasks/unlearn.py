"""The GPU task: load the champion, run the batch's method(s), keep the candidate checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import pipeline
from forgetflow.models import save_checkpoint
from forgetflow.project import Project
from forgetflow.runtime import RunContext, StepLog
from tasks import tracking

GPU_TAG = "gpu"


@dataclass
class Candidate:
    """Where the unlearned model was saved and how it was made."""

    path: str
    seconds: float
    phases: list[dict[str, Any]]
    champion_version: str
    run: dict[str, Any]
    steps: list[tuple[str, float, int]] = field(default_factory=list)  # the methods' curves, for the batch's run

    @property
    def method(self) -> str:
        return "+".join(p["method"] for p in self.phases)


def ensure_gpu_limit(limit: int) -> None:
    """Create (or update) the Prefect tag concurrency limit that serialises tasks tagged ``gpu``."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=limit)


@task(name="unlearn", tags=[GPU_TAG], cache_policy=NO_CACHE)
def unlearn_candidate(project: Project, batch_id: str, manifest_path: str, method: str | None,
                      overrides: dict[str, dict[str, Any]] | None = None) -> Candidate:
    """Unlearn the batch's forget set from the champion with the planned phases (methods)."""
    version = pipeline.current_version(project)
    manifest = pipeline.Manifest.read(project.root / manifest_path)
    splits = pipeline.splits_for(version, manifest)
    champion = tracking.require_champion(project)
    steps = StepLog()
    run = RunContext.create(project.params.seed, project.params.train.device, project.params.train.deterministic,
                            report=steps)
    model = tracking.load_version_model(project, champion, str(run.device))
    phases = pipeline.plan_phases(project, version, manifest, method)
    outcome = pipeline.unlearn(project, model, splits, version, phases, overrides, run)
    path = project.state_dir / "candidates" / f"{batch_id}.pt"
    save_checkpoint(outcome.model, path)
    return Candidate(str(path), outcome.seconds, outcome.phases, champion, run.describe(), steps.records)
