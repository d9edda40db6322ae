"""The request queue in the ledger: accept (all or nothing), read, claim atomically, release, quarantine.

Every function takes the ledger's engine; ``forgetflow.ledger.store.Ledger`` is the one way callers reach them.
Nothing accepted is ever deleted: a request moves pending → claimed → done, or to quarantined and back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from forgetflow.errors import LedgerConflict, NothingToDo
from forgetflow.ledger.requests import ErasureRequest
from forgetflow.ledger.schema import STATES, as_dict, aware, requests_t, utcnow


@dataclass(frozen=True)
class ImportResult:
    """What an import or add did: ids newly accepted and ids already present with the same content."""

    accepted: list[str]
    duplicates: list[str]


def add(engine: Engine, requests: Sequence[ErasureRequest], source: str) -> ImportResult:
    """Accept requests all-or-nothing: a reused id with other content aborts everything."""
    for attempt in range(3):
        try:
            return _add_once(engine, requests, source)
        except IntegrityError:
            # a concurrent writer inserted one of these ids between our check and insert: re-check
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _add_once(engine: Engine, requests: Sequence[ErasureRequest], source: str) -> ImportResult:
    now = utcnow()
    ids = [r.request_id for r in requests]
    with engine.begin() as conn:
        existing: dict[str, str] = {}
        for chunk in chunks(ids, 500):
            rows = conn.execute(select(requests_t.c.request_id, requests_t.c.content_sha256)
                                .where(requests_t.c.request_id.in_(chunk)))
            existing.update({r.request_id: r.content_sha256 for r in rows})
        conflicts = [r.request_id for r in requests
                     if r.request_id in existing and existing[r.request_id] != r.content_sha256]
        if conflicts:
            raise LedgerConflict(
                f"request id(s) already accepted with different content, nothing imported: {', '.join(conflicts[:10])}"
            )
        new = [r for r in requests if r.request_id not in existing]
        if new:
            conn.execute(insert(requests_t), [
                {"request_id": r.request_id, "subject_id": r.subject_id, "sample_id": r.sample_id,
                 "reason": r.reason, "received_at": r.received_at, "content_sha256": r.content_sha256,
                 "source": source, "state": "pending", "batch_id": None, "note": None,
                 "accepted_at": now, "updated_at": now}
                for r in new
            ])
    return ImportResult([r.request_id for r in new], [r.request_id for r in requests if r.request_id in existing])


def get(engine: Engine, request_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(requests_t).where(requests_t.c.request_id == request_id)).mappings().first()
    return as_dict(row) if row else None


def list_requests(engine: Engine, state: str | None = None, batch_id: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
    query = select(requests_t).order_by(requests_t.c.received_at, requests_t.c.request_id)
    if state:
        query = query.where(requests_t.c.state == state)
    if batch_id:
        query = query.where(requests_t.c.batch_id == batch_id)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [as_dict(r) for r in conn.execute(query).mappings()]


def counts(engine: Engine) -> dict[str, int]:
    """Number of requests per state (every state listed)."""
    with engine.connect() as conn:
        rows = conn.execute(select(requests_t.c.state, func.count()).group_by(requests_t.c.state)).all()
    found = {state: int(n) for state, n in rows}
    return {s: found.get(s, 0) for s in STATES}


def oldest_pending(engine: Engine) -> dt.datetime | None:
    with engine.connect() as conn:
        value = conn.execute(select(func.min(requests_t.c.received_at))
                             .where(requests_t.c.state == "pending")).scalar()
    return aware(value)


def claim(engine: Engine, batch_id: str, limit: int) -> list[dict[str, Any]]:
    """Atomically move up to ``limit`` pending requests (oldest first) to ``claimed`` for this batch."""
    now = utcnow()
    oldest = (select(requests_t.c.request_id).where(requests_t.c.state == "pending")
              .order_by(requests_t.c.received_at, requests_t.c.request_id).limit(limit))
    claiming = update(requests_t).values(state="claimed", batch_id=batch_id, updated_at=now, note=None)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # one statement: SQLite serialises writers, and a read-then-write transaction could deadlock
            conn.execute(claiming.where(and_(requests_t.c.request_id.in_(oldest.scalar_subquery()),
                                             requests_t.c.state == "pending")))
        else:
            # lock the rows first, skipping those another claimer holds: concurrent claimers take different
            # rows instead of queueing on the same ones and coming back empty (a LIMIT ... SKIP LOCKED
            # subquery inside the UPDATE may be re-run by the planner and take more than ``limit``)
            ids = conn.execute(oldest.with_for_update(skip_locked=True)).scalars().all()
            for chunk in chunks(list(ids), 5000):
                conn.execute(claiming.where(and_(requests_t.c.request_id.in_(chunk), requests_t.c.state == "pending")))
    claimed = list_requests(engine, state="claimed", batch_id=batch_id)
    if not claimed:
        raise NothingToDo("no pending requests to claim")
    return claimed


def release(engine: Engine, batch_id: str, note: str | None = None) -> int:
    """Give a batch's claimed requests back (state pending); returns how many."""
    with engine.begin() as conn:
        return release_in(conn, batch_id, note, utcnow())


def release_in(conn: Any, batch_id: str, note: str | None, now: dt.datetime) -> int:
    """:func:`release` inside the caller's transaction."""
    result = conn.execute(update(requests_t)
                          .where(and_(requests_t.c.batch_id == batch_id, requests_t.c.state == "claimed"))
                          .values(state="pending", batch_id=None, updated_at=now, note=note))
    return int(result.rowcount or 0)


def mark_done_in(conn: Any, batch_id: str, request_ids: Iterable[str], now: dt.datetime) -> None:
    """Inside the caller's transaction: the batch's honoured requests are done."""
    for rid in request_ids:
        conn.execute(update(requests_t)
                     .where(and_(requests_t.c.request_id == rid, requests_t.c.batch_id == batch_id))
                     .values(state="done", updated_at=now))


def quarantine(engine: Engine, batch_id: str, reasons: dict[str, str]) -> None:
    """Move claimed requests of this batch to ``quarantined`` with a readable reason each."""
    now = utcnow()
    with engine.begin() as conn:
        for request_id, reason in reasons.items():
            conn.execute(update(requests_t)
                         .where(and_(requests_t.c.request_id == request_id, requests_t.c.batch_id == batch_id,
                                     requests_t.c.state == "claimed"))
                         .values(state="quarantined", note=reason, updated_at=now))


def requeue(engine: Engine, request_id: str) -> None:
    """Put a quarantined request back to pending (after someone fixed the data or the request)."""
    with engine.begin() as conn:
        result = conn.execute(update(requests_t)
                              .where(and_(requests_t.c.request_id == request_id, requests_t.c.state == "quarantined"))
                              .values(state="pending", batch_id=None, updated_at=utcnow()))
    if not result.rowcount:
        raise LedgerConflict(f"request {request_id!r} is not quarantined")


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
