"""Batches in the ledger: the batch lock held as a lease, the batch records, their recovery journals.

One batch (or oracle audit) at a time: :func:`start` inserts the single lock row (a second inserter gets a
primary-key conflict) together with the batch record. The lock is a lease (``forgetflow/ledger/lease.py``):
:func:`renew` pushes its expiry forward, :func:`stale_holders` finds expired or dead holders, and
:func:`take_over` swaps a stale holder's token for a recoverer's. A batch ends in one transaction
(:func:`finish` or :func:`fail`), fenced by the lease this process holds (:func:`fence`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Iterable, Sequence

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from forgetflow.errors import LeaseLost, LedgerConflict
from forgetflow.ledger import lease as leases
from forgetflow.ledger import request_rows
from forgetflow.ledger.schema import as_dict, aware, batch_lock_t, batches_t, receipts_t, utcnow, versions_t


def holder(engine: Engine, default_lease_seconds: float = 60.0) -> dict[str, Any] | None:
    """The holder of the batch lock (batch_id, owner, taken_at, its lease and ``stale``), or None."""
    with engine.connect() as conn:
        row = conn.execute(select(batch_lock_t)).mappings().first()
    return _holder(row, utcnow(), default_lease_seconds) if row else None


def start(engine: Engine, batch_id: str, lease_seconds: float, flow_run_id: str | None) -> str:
    """Insert the lock row (a lease) and the batch record; returns the lease token.

    Raises:
        LedgerConflict: another batch holds the lock (the message says whether its lease is stale).
    """
    now = utcnow()
    token = uuid.uuid4().hex
    lock = {"name": "batch", "batch_id": batch_id, "owner": leases.owner_id(), "taken_at": now, "token": token,
            "owner_process": leases.process_identity(), "heartbeat_at": now,
            "expires_at": now + dt.timedelta(seconds=lease_seconds)}
    try:
        with engine.begin() as conn:
            conn.execute(insert(batch_lock_t).values(**lock))
            conn.execute(insert(batches_t).values(batch_id=batch_id, state="running", started_at=now,
                                                  owner=lock["owner"], flow_run_id=flow_run_id))
    except IntegrityError:
        # read the holder in a new transaction: PostgreSQL refuses every statement in the failed one
        found = holder(engine, lease_seconds)
        if found is None:
            raise LedgerConflict(f"batch id {batch_id} was used before") from None
        state = (f"; it is stale ({found['stale']}): run `forgetflow batch recover`" if found["stale"]
                 else f"; its lease runs to {found['expires_at']}")
        raise LedgerConflict(f"batch {found['batch_id']} is already running (owner {found['owner']}, since "
                             f"{found['taken_at']}){state}") from None
    return token


def renew(engine: Engine, batch_id: str, token: str, lease_seconds: float) -> bool:
    """Push the lease's expiry forward; False when the lock no longer carries this token (lost)."""
    now = utcnow()
    with engine.begin() as conn:
        result = conn.execute(update(batch_lock_t)
                              .where(and_(batch_lock_t.c.batch_id == batch_id, batch_lock_t.c.token == token))
                              .values(heartbeat_at=now, expires_at=now + dt.timedelta(seconds=lease_seconds)))
    return bool(result.rowcount)


def stale_holders(engine: Engine, default_lease_seconds: float = 60.0) -> list[dict[str, Any]]:
    """Lock holders that are stale: lease expired, or (same process table) their process is gone.

    A lock row written before leases existed (no expiry) counts as expiring ``default_lease_seconds`` after
    it was taken.
    """
    with engine.connect() as conn:
        rows = conn.execute(select(batch_lock_t)).mappings().all()
    now = utcnow()
    return [h for h in (_holder(r, now, default_lease_seconds) for r in rows) if h["stale"]]


def take_over(engine: Engine, batch_id: str, token: str | None, lease_seconds: float) -> str | None:
    """Compare-and-swap the lock's lease token; the new token, or None when the lock changed meanwhile."""
    now = utcnow()
    new = uuid.uuid4().hex
    match = batch_lock_t.c.token.is_(None) if token is None else batch_lock_t.c.token == token
    with engine.begin() as conn:
        result = conn.execute(update(batch_lock_t).where(and_(batch_lock_t.c.batch_id == batch_id, match))
                              .values(token=new, owner=leases.owner_id(), owner_process=leases.process_identity(),
                                      heartbeat_at=now, expires_at=now + dt.timedelta(seconds=lease_seconds)))
    return new if result.rowcount else None


def fence(conn: Any, batch_id: str, scope: str) -> None:
    """Inside a transaction: refuse when this process holds a lease on the batch (in the ledger ``scope``)
    that the lock no longer carries."""
    lease = leases.held(batch_id, scope)
    if lease is None:
        return
    token = conn.execute(select(batch_lock_t.c.token).where(batch_lock_t.c.batch_id == batch_id)).scalar()
    if token != lease.token:
        raise LeaseLost(f"batch {batch_id} no longer holds the batch lock (recovered by another process); "
                        "nothing recorded")


def journal(engine: Engine, batch_id: str) -> dict[str, Any]:
    """The batch's recovery journal (empty when it recorded nothing)."""
    with engine.connect() as conn:
        text = conn.execute(select(batches_t.c.journal).where(batches_t.c.batch_id == batch_id)).scalar()
    return json.loads(text) if text else {}


def record_journal(engine: Engine, batch_id: str, entries: dict[str, Any], scope: str) -> None:
    """Add entries to the batch's recovery journal (fenced)."""
    with engine.begin() as conn:
        fence(conn, batch_id, scope)
        text = conn.execute(select(batches_t.c.journal).where(batches_t.c.batch_id == batch_id)).scalar()
        merged = {**(json.loads(text) if text else {}), **entries}
        conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id)
                     .values(journal=json.dumps(merged, sort_keys=True, default=str)))


def finish(engine: Engine, batch_id: str, done_ids: Iterable[str], receipts: Sequence[dict[str, Any]],
           info: dict[str, Any], version_row: dict[str, Any] | None, scope: str) -> None:
    """In one fenced transaction: requests done, receipts and the new dataset version recorded, lock released."""
    now = utcnow()
    with engine.begin() as conn:
        fence(conn, batch_id, scope)
        request_rows.mark_done_in(conn, batch_id, done_ids, now)
        if receipts:
            conn.execute(insert(receipts_t), [dict(r) for r in receipts])
        if version_row:
            conn.execute(insert(versions_t).values(**version_row))
        conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id)
                     .values(state="done", finished_at=now, **info))
        conn.execute(batch_lock_t.delete().where(batch_lock_t.c.batch_id == batch_id))


def fail(engine: Engine, batch_id: str, error: str, scope: str) -> int:
    """In one fenced transaction: failure recorded, claimed requests given back, lock released; how many."""
    now = utcnow()
    with engine.begin() as conn:
        fence(conn, batch_id, scope)
        released = request_rows.release_in(conn, batch_id, f"batch {batch_id} failed: {error[:300]}", now)
        conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id)
                     .values(state="failed", finished_at=now, error=error[:4000]))
        conn.execute(batch_lock_t.delete().where(batch_lock_t.c.batch_id == batch_id))
    return released


def end_empty(engine: Engine, batch_id: str, scope: str) -> None:
    """A batch that found nothing to claim: forget it entirely and release the lock."""
    with engine.begin() as conn:
        fence(conn, batch_id, scope)
        conn.execute(batches_t.delete().where(batches_t.c.batch_id == batch_id))
        conn.execute(batch_lock_t.delete().where(batch_lock_t.c.batch_id == batch_id))


def set_info(engine: Engine, batch_id: str, info: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id).values(**info))


def batches(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(batches_t).order_by(batches_t.c.started_at.desc()).limit(limit)).mappings().all()
    return [as_dict(r) for r in rows]


def batch(engine: Engine, batch_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(batches_t).where(batches_t.c.batch_id == batch_id)).mappings().first()
    return as_dict(row) if row else None


def _holder(row: Any, now: dt.datetime, default_lease_seconds: float) -> dict[str, Any]:
    """A lock row as a dict with ISO times and ``stale``: why it is stale (a sentence), or None."""
    expires = aware(row["expires_at"]) or aware(row["taken_at"]) + dt.timedelta(seconds=default_lease_seconds)
    stale = None
    if leases.holder_state(row["owner_process"]) == "dead":
        stale = f"its process {row['owner']} is gone"
    elif expires < now:
        stale = f"its lease expired at {expires.isoformat()}"
    return {**as_dict(row), "expires_at": expires.isoformat(), "stale": stale}
