"""Ledger tasks of the served flows: read the backlog, wait for a running batch to end."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from forgetflow.ledger.backlog import Backlog, read_backlog
from forgetflow.project import Project
from tasks import recovery

POLL_S = 5.0


@task(name="read-backlog", cache_policy=NO_CACHE)
def backlog(project: Project) -> Backlog:
    """Pending count, oldest pending request and the running batch, now."""
    return read_backlog(project.open_ledger())


@task(name="wait-for-running-batch", cache_policy=NO_CACHE)
def wait_until_idle(project: Project, timeout_minutes: float, poll_s: float = POLL_S) -> Backlog:
    """Wait (at most ``timeout_minutes``) while another batch holds the lock; return the backlog after.

    A stale lock (its lease expired, or its owner died on this host) is recovered first
    (``tasks/recovery.py``), so a crashed batch never blocks the queue. The returned backlog still names the
    running batch when the wait timed out.
    """
    log = get_run_logger()
    book = project.open_ledger()
    recovery.recover(project)
    deadline = time.monotonic() + timeout_minutes * 60.0
    state = read_backlog(book)
    if state.running_batch:
        log.info("batch %s is running; waiting up to %.0f min for it to end", state.running_batch, timeout_minutes)
    while state.running_batch and time.monotonic() < deadline:
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        recovery.recover(project)
        state = read_backlog(book)
    return state


@task(name="signal-due-batch", cache_policy=NO_CACHE)
def signal_due(project: Project, state: Backlog) -> bool:
    """Emit ``forgetflow.backlog.due`` (tasks/events.py) so the triggered deployment starts a batch."""
    from tasks import events

    return events.announce_due(project.params.serve, state)
