"""Reference models of the current dataset version: trained once per version, fanned out through the task
runner that params.yaml ``runner`` names, with a progress bar over the K models.

``forgetflow references`` and the DVC stage ``train_references`` run :func:`train_references`;
``forgetflow train`` and the oracle audit call :func:`refresh` (a new set only when the current version has
none); a deletion batch calls :func:`usable_or_train`, which returns the newest usable set — possibly of an
older version, whose samples erased since are then only used as OUT — or trains one, saying in the log what it
trains and why, so that a batch never waits for reference models silently.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import flow

from flows import runners
from forgetflow import pipeline, references, runtime_env
from forgetflow.project import Project
from tasks import references as reference_tasks

log = logging.getLogger("forgetflow.references")


@flow(name="train-references")
def train_references(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None, k: int | None = None,
                     reason: str = "") -> dict[str, Any]:
    """Train (or load) the K reference models of the current dataset version and score every sample.

    Args:
        params_path: the project's params.yaml.
        overrides: dotted params overrides.
        k: reference models (default: ``references.k``).
        reason: why they are trained, for the log line.
    """
    project = Project.load(params_path, overrides)
    runtime_env.apply(project)
    version = pipeline.current_version(project, create=False)
    trained = references.project_train(project, version, k, map_fn=reference_tasks.submit_all,
                                       reason=reason or "forgetflow references")
    return summary(trained, version.label, runners.describe(project.params))


def summary(trained: references.Trained, version_label: str, runner: str) -> dict[str, Any]:
    """What the CLI prints and the audit records about a reference set."""
    r = trained.refs
    return {"key": r.key, "k": r.k, "seed": r.seed, "dataset_version": version_label, "version": r.version,
            "fingerprint": r.fingerprint, "cached": trained.cached, "folder": str(trained.folder),
            "seconds": [round(float(s), 2) for s in r.seconds], "train_seconds": round(float(r.seconds.sum()), 2),
            "samples": int(len(r.ids)), "runner": runner}


def run(params_path: str, overrides: dict[str, Any] | None = None, k: int | None = None, reason: str = "",
        runner: Any = None) -> dict[str, Any]:
    """Run :func:`train_references` with the configured task runner (``runner`` overrides it)."""
    project = Project.load(params_path, overrides)
    chosen = runner if runner is not None else runners.task_runner(project.params)
    return train_references.with_options(task_runner=chosen)(params_path=str(params_path), overrides=overrides,
                                                             k=k, reason=reason)


def refresh(params_path: str, overrides: dict[str, Any] | None = None, why: str = "") -> dict[str, Any] | None:
    """Train a set for the current version unless it has one (``forgetflow train``, the audit); None when off."""
    project = Project.load(params_path, overrides)
    if not project.params.references.enabled:
        return None
    version = pipeline.current_version(project, create=False)
    found = references.project_usable(project, version)
    if found is not None and found.current:
        return {**found.describe(), "cached": True, "dataset_version": version.label}
    reason = (f"{why}: " if why else "") + ("no reference set yet" if found is None else
                                            f"the newest set is of v{found.refs.version}, {len(found.out_only)} "
                                            f"training samples erased since")
    return run(params_path, overrides, reason=reason)


def usable_or_train(params_path: str, overrides: dict[str, Any] | None = None) -> references.Selection | None:
    """The reference set a batch uses: the newest usable one, else one trained now (it says so); None when
    ``references.enabled`` is false or ``references.on_missing`` is ``skip`` and none exists."""
    project = Project.load(params_path, overrides)
    settings = project.params.references
    if not settings.enabled:
        log.info("reference models are off (references.enabled: false): no per-sample attacks")
        return None
    version = pipeline.current_version(project, create=False)
    found = references.project_usable(project, version)
    if found is not None:
        if found.out_only:
            log.info("reference set %s of %s@v%d serves %s: the %d samples erased since are used as OUT only; "
                     "the next audit trains a set on the current version", found.refs.key, found.refs.dataset,
                     found.refs.version, version.label, len(found.out_only))
        return found
    if settings.on_missing == "skip":
        log.warning("no usable reference set for %s (K=%d, seed %d): per-sample attacks skipped "
                    "(references.on_missing: skip); run `forgetflow references`", version.label, settings.k,
                    settings.seed)
        return None
    log.warning("no usable reference set for %s: this batch trains K=%d reference models of the serving recipe "
                "first (each on half the training split; once per dataset version, reused by later batches)",
                version.label, settings.k)
    run(params_path, overrides, reason="a batch needs per-sample evidence and no usable set exists")
    return references.project_usable(project, version)
