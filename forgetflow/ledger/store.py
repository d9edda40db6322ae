"""The request ledger: requests, batches, dataset versions, alias moves and receipts in one SQL database.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL in production). Every state change is one
transaction; a batch claims its requests with a single conditional UPDATE, so two concurrent claimers never
get the same request, and a failed batch gives its claims back. Nothing accepted is ever deleted.

:class:`Ledger` is the one door; the rooms behind it:

- ``schema.py``: the tables, one engine per URL for the process, Alembic migrations;
- ``request_rows.py``: the request queue (accept, read, claim, release, quarantine);
- ``batch_rows.py``: the batch lock held as a lease, batch records, recovery journals;
- ``history_rows.py``: dataset versions, alias moves, receipt rows, quality, superseded models;
- ``lease.py``: the lease's heartbeat and who holds it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy.engine import Engine

from forgetflow.ledger import batch_rows, history_rows, request_rows
from forgetflow.ledger import lease as leases
from forgetflow.ledger.lease import BatchLease
from forgetflow.ledger.request_rows import ImportResult
from forgetflow.ledger.requests import ErasureRequest
from forgetflow.ledger.schema import (  # noqa: F401 - the tables stay importable from here
    STATES,
    alias_moves_t,
    batch_lock_t,
    batches_t,
    dispose_engine,
    engine_for,
    quality_t,
    receipts_t,
    requests_t,
    superseded_t,
    utcnow,
    versions_t,
)

__all__ = ["ImportResult", "Ledger", "STATES", "utcnow"]


class Ledger:
    """The request ledger behind one SQLAlchemy URL (the engine is shared by every Ledger on that URL)."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.engine: Engine = engine_for(url, echo)

    def close(self) -> None:
        """Close the URL's pooled connections (every Ledger on it shares them; they reopen on next use)."""
        dispose_engine(self.url)

    # ---- requests ------------------------------------------------------------------------------
    def add(self, requests: Sequence[ErasureRequest], source: str = "cli") -> ImportResult:
        """Accept requests all-or-nothing: a reused id with other content aborts everything."""
        return request_rows.add(self.engine, requests, source)

    def get(self, request_id: str) -> dict[str, Any] | None:
        """One request as a dict (times ISO-8601), or None."""
        return request_rows.get(self.engine, request_id)

    def list(self, state: str | None = None, batch_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Requests oldest first, optionally of one state and/or batch."""
        return request_rows.list_requests(self.engine, state, batch_id, limit)

    def counts(self) -> dict[str, int]:
        """Number of requests per state (every state listed)."""
        return request_rows.counts(self.engine)

    def oldest_pending(self) -> dt.datetime | None:
        """``received_at`` of the oldest pending request, or None."""
        return request_rows.oldest_pending(self.engine)

    def claim(self, batch_id: str, limit: int) -> list[dict[str, Any]]:
        """Atomically move up to ``limit`` pending requests (oldest first) to ``claimed`` for this batch."""
        return request_rows.claim(self.engine, batch_id, limit)

    def release(self, batch_id: str, note: str | None = None) -> int:
        """Give a batch's claimed requests back (state pending); returns how many."""
        return request_rows.release(self.engine, batch_id, note)

    def quarantine(self, batch_id: str, reasons: dict[str, str]) -> None:
        """Move claimed requests of this batch to ``quarantined`` with a readable reason each."""
        request_rows.quarantine(self.engine, batch_id, reasons)

    def requeue(self, request_id: str) -> None:
        """Put a quarantined request back to pending (after someone fixed the data or the request)."""
        request_rows.requeue(self.engine, request_id)

    # ---- the batch lock (a lease) and batches --------------------------------------------------
    def running_batch(self) -> dict[str, Any] | None:
        """The holder of the batch lock (batch_id, owner, taken_at, its lease and ``stale``), or None."""
        return batch_rows.holder(self.engine)

    def start_batch(self, batch_id: str, lease_seconds: float = 60.0, heartbeat_seconds: float = 10.0,
                    flow_run_id: str | None = None, on_lost: Callable[[], None] | None = None,
                    heartbeat: bool = True) -> BatchLease:
        """Take the batch lock as a lease, record the batch, and start renewing the lease (a daemon thread).

        Nothing stale is recovered here: what a dead batch left (registry versions, data, files) is cleaned
        by ``tasks/recovery.py`` before a batch starts, and the ledger alone cannot do that.

        Raises:
            LedgerConflict: another batch holds the lock (the message says whether its lease is stale).
        """
        token = batch_rows.start(self.engine, batch_id, lease_seconds, flow_run_id)
        return self._lease(batch_id, token, lease_seconds, heartbeat_seconds, on_lost, heartbeat)

    def renew_lease(self, batch_id: str, token: str, lease_seconds: float) -> bool:
        """Push the lease's expiry forward; False when the lock no longer carries this token (lost)."""
        return batch_rows.renew(self.engine, batch_id, token, lease_seconds)

    def stale_holders(self, default_lease_seconds: float = 60.0) -> list[dict[str, Any]]:
        """Lock holders whose lease expired or (same process table) whose process is gone."""
        return batch_rows.stale_holders(self.engine, default_lease_seconds)

    def take_over(self, batch_id: str, token: str | None, lease_seconds: float = 60.0,
                  heartbeat_seconds: float = 10.0, on_lost: Callable[[], None] | None = None,
                  heartbeat: bool = True) -> BatchLease | None:
        """Take a (stale) batch's lock over to recover it: compare-and-swap on its lease token.

        Returns the new lease, or None when someone else changed the lock first (another recoverer, or the
        owner renewed after all).
        """
        token = batch_rows.take_over(self.engine, batch_id, token, lease_seconds)
        if token is None:
            return None
        return self._lease(batch_id, token, lease_seconds, heartbeat_seconds, on_lost, heartbeat)

    def _lease(self, batch_id: str, token: str, lease_seconds: float, heartbeat_seconds: float,
               on_lost: Callable[[], None] | None, heartbeat: bool) -> BatchLease:
        lease = BatchLease(self.renew_lease, batch_id, token, lease_seconds, heartbeat_seconds, on_lost, self.url)
        return lease.start() if heartbeat else lease

    def journal(self, batch_id: str) -> dict[str, Any]:
        """The batch's recovery journal (empty when it recorded nothing)."""
        return batch_rows.journal(self.engine, batch_id)

    def record_journal(self, batch_id: str, **entries: Any) -> None:
        """Add entries to the batch's recovery journal (fenced by this process's lease on the batch)."""
        batch_rows.record_journal(self.engine, batch_id, entries, self.url)

    def finish_batch(self, batch_id: str, done_ids: Iterable[str], receipts: Sequence[dict[str, Any]],
                     info: dict[str, Any], version_row: dict[str, Any] | None) -> None:
        """In one transaction: requests done, receipts and the new dataset version recorded, lock released.

        Fenced: when this process holds a lease on the batch, the lock must still carry its token, else
        nothing is recorded (``LeaseLost``).
        """
        batch_rows.finish(self.engine, batch_id, done_ids, receipts, info, version_row, self.url)
        self._drop_lease(batch_id)

    def fail_batch(self, batch_id: str, error: str) -> int:
        """In one transaction: the failure recorded, every claimed request given back, the lock released.

        Returns how many requests were released. Fenced like :meth:`finish_batch`.
        """
        released = batch_rows.fail(self.engine, batch_id, error, self.url)
        self._drop_lease(batch_id)
        return released

    def end_empty_batch(self, batch_id: str) -> None:
        """A batch that found nothing to claim: forget it entirely and release the lock."""
        batch_rows.end_empty(self.engine, batch_id, self.url)
        self._drop_lease(batch_id)

    def set_batch_info(self, batch_id: str, **info: Any) -> None:
        batch_rows.set_info(self.engine, batch_id, info)

    def batches(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest batches (newest first)."""
        return batch_rows.batches(self.engine, limit)

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        return batch_rows.batch(self.engine, batch_id)

    # ---- history -------------------------------------------------------------------------------
    def record_version(self, row: dict[str, Any]) -> None:
        """Record a dataset version once."""
        history_rows.record_version(self.engine, row)

    def versions(self, dataset: str | None = None) -> list[dict[str, Any]]:
        return history_rows.versions(self.engine, dataset)

    def record_alias_move(self, model_name: str, alias: str, from_version: str | None, to_version: str | None,
                          reason: str, actor: str, batch_id: str | None = None) -> None:
        history_rows.record_alias_move(self.engine, model_name, alias, from_version, to_version, reason, actor,
                                       batch_id)

    def alias_history(self, model_name: str | None = None) -> list[dict[str, Any]]:
        return history_rows.alias_history(self.engine, model_name)

    def delete_alias_moves(self, batch_id: str) -> None:
        """Undo the alias-history rows of a batch that is being rolled back (its moves were undone too)."""
        history_rows.delete_alias_moves(self.engine, batch_id)

    def receipts(self) -> list[dict[str, Any]]:
        return history_rows.receipts(self.engine)

    def receipt_of(self, request_id: str) -> dict[str, Any] | None:
        """The ledger row of a request's receipt (the latest, should a request ever get two), or None."""
        return history_rows.receipt_of(self.engine, request_id)

    def last_receipt(self) -> dict[str, Any] | None:
        return history_rows.last_receipt(self.engine)

    def record_quality(self, batch_id: str | None, model_version: str | None, metrics: dict[str, float]) -> None:
        history_rows.record_quality(self.engine, batch_id, model_version, metrics)

    def quality(self, metric: str) -> list[dict[str, Any]]:
        return history_rows.quality(self.engine, metric)

    def delete_quality(self, batch_id: str) -> None:
        """Remove the quality rows of a batch that is being rolled back."""
        history_rows.delete_quality(self.engine, batch_id)

    def record_superseded(self, model_name: str, rows: Sequence[dict[str, Any]], recorded_in: str | None) -> None:
        """Record versions that hold erased data: ``{"version", "erased_by_batch", "reason"}`` each."""
        history_rows.record_superseded(self.engine, model_name, rows, recorded_in)

    def superseded(self, model_name: str | None = None) -> list[dict[str, Any]]:
        return history_rows.superseded(self.engine, model_name)

    def delete_superseded(self, recorded_in: str) -> None:
        """Undo the supersession rows a rolled-back batch recorded."""
        history_rows.delete_superseded(self.engine, recorded_in)

    def _drop_lease(self, batch_id: str) -> None:
        """Stop renewing this process's lease on a batch that just ended."""
        lease = leases.held(batch_id, self.url)
        if lease is not None:
            lease.stop()
