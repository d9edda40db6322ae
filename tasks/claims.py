"""Ledger tasks: open a batch (lease on the batch lock + atomic claim), quarantine, fail (release every claim)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import faults
from forgetflow.errors import NothingToDo
from forgetflow.ledger import Ledger
from forgetflow.ledger import lease
from forgetflow.ledger.lease import BatchLease
from forgetflow.project import Project


def ledger(project: Project) -> Ledger:
    """The project's ledger."""
    return project.open_ledger()


def lease_settings(project: Project) -> dict[str, float]:
    """The lease arguments of ``Ledger.start_batch`` / ``take_over`` from ``batch:`` in params.yaml."""
    return {"lease_seconds": project.params.batch.lease_seconds,
            "heartbeat_seconds": project.params.batch.heartbeat_seconds}


def take_lock(project: Project, batch_id: str, flow_run_id: str | None = None) -> BatchLease:
    """Take the batch lock as a lease for ``batch_id`` and start renewing it; a lost lease interrupts the main
    thread (the batch stops)."""
    return ledger(project).start_batch(batch_id, flow_run_id=flow_run_id, on_lost=lease.interrupt_main,
                                       **lease_settings(project))


@task(name="claim-requests", cache_policy=NO_CACHE)
def open_batch(project: Project, batch_id: str, flow_run_id: str | None = None) -> list[dict[str, Any]]:
    """Take the batch lock and claim the oldest pending requests (at most ``batch.max_requests``).

    Returns an empty list (and releases the lock) when nothing is pending.
    """
    book = ledger(project)
    take_lock(project, batch_id, flow_run_id).bind()  # this thread's step boundaries check this lease
    try:
        claimed = book.claim(batch_id, project.params.batch.max_requests)
    except NothingToDo:
        book.end_empty_batch(batch_id)
        return []
    except BaseException as exc:
        book.fail_batch(batch_id, f"claim failed: {exc}")
        raise
    faults.kill_point("claim")  # drill: dies holding the lock and the claimed requests
    return claimed


@task(name="quarantine-requests", cache_policy=NO_CACHE)
def quarantine(project: Project, batch_id: str, reasons: dict[str, str]) -> None:
    if reasons:
        ledger(project).quarantine(batch_id, reasons)


def fail_batch(project: Project, batch_id: str, error: str) -> int:
    """Record the failure and give the batch's claimed requests back; returns how many were released."""
    return ledger(project).fail_batch(batch_id, error)


def journal(project: Project, batch_id: str, **entries: Any) -> None:
    """Record what recovery will need should this batch die (``tasks/recovery.py``)."""
    ledger(project).record_journal(batch_id, **entries)
