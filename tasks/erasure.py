"""The erase task: a new dataset version without the forgotten samples, tracked and pushed with DVC."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import pipeline
from forgetflow.project import Project
from tasks import versioning


@dataclass
class Erased:
    before: dict
    after: dict
    saved_dvc: str | None  # data.dvc before the erase (for rollback)


@task(name="erase", cache_policy=NO_CACHE)
def erase(project: Project, batch_id: str, forget_ids: list[str], saved_dvc: str | None) -> Erased:
    """Write version n+1 without ``forget_ids`` (shards compacted), ``dvc add`` and push it."""
    version = pipeline.current_version(project)
    before = {"dataset": version.meta["dataset"], "version": version.version, "fingerprint": version.fingerprint,
              "dvc_md5": versioning.data_md5(project)}
    new = version.without(forget_ids, batch_id, pipeline.tombstone_key(project))
    new.write(project.version_dir)
    md5 = versioning.track_and_push(project)
    after = {"dataset": new.meta["dataset"], "version": new.version, "fingerprint": new.fingerprint, "dvc_md5": md5,
             "train_samples": new.meta["counts"]["train"], "erased_total": new.meta["erased"]}
    return Erased(before, after, saved_dvc)
