"""Reference-model tasks: one Prefect task per reference training, so that the flow fans the K trainings out
through the configured task runner (threads or Dask); each task ships a path-only job description and writes
only its own files (forgetflow/references.py)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import references
from forgetflow.references import ReferenceJob
from tasks.unlearn import GPU_TAG


@task(name="train-reference", tags=[GPU_TAG], cache_policy=NO_CACHE)
def train_reference(job: ReferenceJob) -> dict[str, Any]:
    """Train one reference model on its half of the training split and score every sample of the version."""
    return references.train_one(job)


def submit_all(fn: Callable[[ReferenceJob], dict[str, Any]], jobs: list[ReferenceJob]) -> Iterator[dict[str, Any]]:
    """A ``map`` for :func:`forgetflow.references.train_references`: every job submitted at once to the flow's
    task runner, results yielded in job order as they finish (``fn`` is the core's ``train_one``, which the
    task wraps)."""
    if fn is not references.train_one:
        raise ValueError("submit_all runs forgetflow.references.train_one jobs only")
    futures = [train_reference.submit(job) for job in jobs]
    for future in futures:
        yield future.result()
