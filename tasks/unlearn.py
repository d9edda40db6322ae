"""The GPU task: load the champion, run the batch's method(s), keep the candidate checkpoint.

GPU tasks (this one, the oracle training, the retrain and the audit's measurement) are tagged ``gpu`` for
Prefect's UI and hold a GPU slot while they run (:func:`gpu_task`): a lock file that dies with its holder
(``forgetflow/gpu_slots.py`` says why that replaced Prefect's tag concurrency limit).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import faults, pipeline
from forgetflow.gpu_slots import gpu_slot
from forgetflow.ledger import lease
from forgetflow.models import save_checkpoint
from forgetflow.project import Project
from forgetflow.runtime import RunContext, StepLog
from tasks import tracking

GPU_TAG = "gpu"
F = TypeVar("F", bound=Callable[..., Any])


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


def gpu_slots_dir(project: Project) -> Path:
    """The folder of the GPU slot lock files (``batch.gpu_slots_dir``, default ``state/locks/gpu``)."""
    value = project.params.batch.gpu_slots_dir
    return project.path(value) if value else project.state_dir / "locks" / "gpu"


@contextlib.contextmanager
def gpu(project: Project) -> Iterator[int]:
    """Hold a GPU slot; while waiting for one, stop if this process's batch lost its lease."""
    with gpu_slot(gpu_slots_dir(project), project.params.batch.gpu_concurrency, on_wait=lease.check_held) as slot:
        yield slot


def gpu_task(name: str) -> Callable[[F], F]:
    """A Prefect task tagged ``gpu`` whose body runs holding a GPU slot (its first argument is the project)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def holding_slot(project: Project, *args: Any, **kwargs: Any) -> Any:
            with gpu(project):
                return fn(project, *args, **kwargs)

        return task(name=name, tags=[GPU_TAG], cache_policy=NO_CACHE)(holding_slot)  # type: ignore[return-value]

    return decorate


@gpu_task("unlearn")
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
    faults.kill_point("unlearn")  # drill: dies holding the GPU slot, with the candidate written
    return Candidate(str(path), outcome.seconds, outcome.phases, champion, run.describe(), steps.records)
