"""Ledger tasks: open a batch (lock + atomic claim), quarantine, fail (release every claim)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.errors import NothingToDo
from forgetflow.ledger import Ledger
from forgetflow.project import Project


def ledger(project: Project) -> Ledger:
    """The project's ledger."""
    return project.open_ledger()


@task(name="claim-requests", cache_policy=NO_CACHE)
def open_batch(project: Project, batch_id: str) -> list[dict[str, Any]]:
    """Take the batch lock and claim the oldest pending requests (at most ``batch.max_requests``).

    Returns an empty list (and releases the lock) when nothing is pending.
    """
    book = ledger(project)
    book.start_batch(batch_id)
    try:
        return book.claim(batch_id, project.params.batch.max_requests)
    except NothingToDo:
        book.end_empty_batch(batch_id)
        return []
    except BaseException as exc:
        book.fail_batch(batch_id, f"claim failed: {exc}")
        raise


@task(name="quarantine-requests", cache_policy=NO_CACHE)
def quarantine(project: Project, batch_id: str, reasons: dict[str, str]) -> None:
    if reasons:
        ledger(project).quarantine(batch_id, reasons)


def fail_batch(project: Project, batch_id: str, error: str) -> int:
    """Record the failure and give the batch's claimed requests back; returns how many were released."""
    return ledger(project).fail_batch(batch_id, error)
