"""The request ledger: requests, batches, dataset versions, alias moves and receipts in one SQL database.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL in production). Every state change is one
transaction; a batch claims its requests with a single conditional UPDATE, so two concurrent claimers never
get the same request, and a failed batch gives its claims back. Nothing accepted is ever deleted.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from forgetflow.errors import LeaseLost, LedgerConflict, NothingToDo
from forgetflow.ledger import lease as leases
from forgetflow.ledger.lease import BatchLease, owner_id
from forgetflow.ledger.requests import ErasureRequest

STATES = ("pending", "claimed", "done", "quarantined")

metadata = MetaData()

requests_t = Table(
    "requests", metadata,
    Column("request_id", String(128), primary_key=True),
    Column("subject_id", String(128), nullable=True, index=True),
    Column("sample_id", String(128), nullable=True, index=True),
    Column("reason", String(16), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("source", String(16), nullable=False, default="cli"),
    Column("state", String(16), nullable=False, index=True, default="pending"),
    Column("batch_id", String(64), nullable=True, index=True),
    Column("note", Text, nullable=True),
    Column("accepted_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

batches_t = Table(
    "batches", metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # running | done | failed
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("owner", String(128), nullable=False),  # host:pid of the process running it
    Column("flow_run_id", String(64), nullable=True),
    Column("method", String(64), nullable=True),
    Column("requests", Integer, nullable=True),
    Column("forget_samples", Integer, nullable=True),
    Column("model_version", String(32), nullable=True),
    Column("promoted", Boolean, nullable=True),
    Column("data_version", Integer, nullable=True),
    Column("decision", String(32), nullable=True),
    Column("error", Text, nullable=True),
    # what recovery needs if the batch dies: data.dvc before the erase, and the commit record (JSON)
    Column("journal", Text, nullable=True),
)

# At most one running batch: a single-row lock held as a lease (forgetflow/ledger/lease.py), so a crashed
# owner is recognised on any host once its lease expires, and at once on its own host.
batch_lock_t = Table(
    "batch_lock", metadata,
    Column("name", String(16), primary_key=True),
    Column("batch_id", String(64), nullable=False),
    Column("owner", String(128), nullable=False),  # host:pid, for people
    Column("taken_at", DateTime(timezone=True), nullable=False),
    Column("token", String(36), nullable=True),  # the lease token; a take-over writes a new one
    Column("owner_process", String(160), nullable=True),  # boot id|pid namespace|pid|start ticks (Linux)
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)

versions_t = Table(
    "dataset_versions", metadata,
    Column("dataset", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("dvc_md5", String(64), nullable=True),
    Column("parent", Integer, nullable=True),
    Column("batch_id", String(64), nullable=True),
    Column("train_samples", Integer, nullable=False),
    Column("erased_total", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

alias_moves_t = Table(
    "alias_moves", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(128), nullable=False),
    Column("alias", String(32), nullable=False),
    Column("from_version", String(32), nullable=True),
    Column("to_version", String(32), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("batch_id", String(64), nullable=True),
)

receipts_t = Table(
    "receipts", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("request_id", String(128), nullable=False, index=True),
    Column("batch_id", String(64), nullable=False),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("prev_sha256", String(64), nullable=True),
    Column("path", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)

# Measured quality of each champion over time (for drift and the unlearn-or-retrain decision).
quality_t = Table(
    "quality", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(64), nullable=True),
    Column("model_version", String(32), nullable=True),
    Column("metric", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Models that still hold erased data: once recorded, such a version never serves again (rollback refuses it).
superseded_t = Table(
    "superseded", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(128), nullable=False),
    Column("version", String(32), nullable=False),
    Column("erased_by_batch", String(64), nullable=False),  # the batch whose erased samples the model holds
    Column("recorded_in", String(64), nullable=True),  # the batch (or audit) that found it
    Column("at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; every time we store is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


@dataclass(frozen=True)
class ImportResult:
    """What an import or add did: ids newly accepted and ids already present with the same content."""

    accepted: list[str]
    duplicates: list[str]


class Ledger:
    """The request ledger behind one SQLAlchemy URL."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # several processes may open a fresh database at once; PostgreSQL's CREATE TABLE is not
                # race-free (duplicate pg_type rows), so the schema is created under a transaction lock
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7405372019)")
            metadata.create_all(conn)
            _add_missing_columns(conn)

    def close(self) -> None:
        self.engine.dispose()

    # ---- intake --------------------------------------------------------------------------------
    def add(self, requests: Sequence[ErasureRequest], source: str = "cli") -> ImportResult:
        """Accept requests all-or-nothing: a reused id with other content aborts everything."""
        for attempt in range(3):
            try:
                return self._add_once(requests, source)
            except IntegrityError:
                # a concurrent writer inserted one of these ids between our check and insert: re-check
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _add_once(self, requests: Sequence[ErasureRequest], source: str) -> ImportResult:
        now = utcnow()
        ids = [r.request_id for r in requests]
        with self.engine.begin() as conn:
            existing: dict[str, str] = {}
            for chunk in _chunks(ids, 500):
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

    # ---- queries -------------------------------------------------------------------------------
    def get(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(requests_t).where(requests_t.c.request_id == request_id)).mappings().first()
        return _request_dict(row) if row else None

    def list(self, state: str | None = None, batch_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        query = select(requests_t).order_by(requests_t.c.received_at, requests_t.c.request_id)
        if state:
            query = query.where(requests_t.c.state == state)
        if batch_id:
            query = query.where(requests_t.c.batch_id == batch_id)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_request_dict(r) for r in conn.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        """Number of requests per state (every state listed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(requests_t.c.state, func.count()).group_by(requests_t.c.state)).all()
        found = {state: int(n) for state, n in rows}
        return {s: found.get(s, 0) for s in STATES}

    def oldest_pending(self) -> dt.datetime | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(func.min(requests_t.c.received_at))
                                 .where(requests_t.c.state == "pending")).scalar()
        return _aware(value)

    def running_batch(self) -> dict[str, Any] | None:
        """The holder of the batch lock (batch_id, owner, taken_at, its lease and ``stale``), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(batch_lock_t)).mappings().first()
        return _holder(row, utcnow()) if row else None

    # ---- batches -------------------------------------------------------------------------------
    def start_batch(self, batch_id: str, lease_seconds: float = 60.0, heartbeat_seconds: float = 10.0,
                    flow_run_id: str | None = None, on_lost: Callable[[], None] | None = None,
                    heartbeat: bool = True) -> BatchLease:
        """Take the batch lock as a lease, record the batch, and start renewing the lease (a daemon thread).

        Nothing stale is recovered here: what a dead batch left (registry versions, data, files) is cleaned
        by ``tasks/recovery.py`` before a batch starts, and the ledger alone cannot do that.

        Raises:
            LedgerConflict: another batch holds the lock (the message says whether its lease is stale).
        """
        now = utcnow()
        token = uuid.uuid4().hex
        lock = {"name": "batch", "batch_id": batch_id, "owner": owner_id(), "taken_at": now, "token": token,
                "owner_process": leases.process_identity(), "heartbeat_at": now,
                "expires_at": now + dt.timedelta(seconds=lease_seconds)}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(batch_lock_t).values(**lock))
                conn.execute(insert(batches_t).values(batch_id=batch_id, state="running", started_at=now,
                                                      owner=lock["owner"], flow_run_id=flow_run_id))
        except IntegrityError:
            # read the holder in a new transaction: PostgreSQL refuses every statement in the failed one
            holder = self.running_batch()
            if holder is None:
                raise LedgerConflict(f"batch id {batch_id} was used before") from None
            stale = f"; it is stale ({holder['stale']}): run `forgetflow batch recover`" if holder["stale"] else \
                f"; its lease runs to {holder['expires_at']}"
            raise LedgerConflict(f"batch {holder['batch_id']} is already running (owner {holder['owner']}, since "
                                 f"{holder['taken_at']}){stale}") from None
        return self._lease(batch_id, token, lease_seconds, heartbeat_seconds, on_lost, heartbeat)

    def _lease(self, batch_id: str, token: str, lease_seconds: float, heartbeat_seconds: float,
               on_lost: Callable[[], None] | None, heartbeat: bool) -> BatchLease:
        lease = BatchLease(self.renew_lease, batch_id, token, lease_seconds, heartbeat_seconds, on_lost)
        return lease.start() if heartbeat else lease

    def renew_lease(self, batch_id: str, token: str, lease_seconds: float) -> bool:
        """Push the lease's expiry forward; False when the lock no longer carries this token (lost)."""
        now = utcnow()
        with self.engine.begin() as conn:
            result = conn.execute(update(batch_lock_t)
                                  .where(and_(batch_lock_t.c.batch_id == batch_id, batch_lock_t.c.token == token))
                                  .values(heartbeat_at=now, expires_at=now + dt.timedelta(seconds=lease_seconds)))
        return bool(result.rowcount)

    def stale_holders(self, default_lease_seconds: float = 60.0) -> list[dict[str, Any]]:
        """Lock holders that are stale: lease expired, or (same process table) their process is gone.

        A lock row written before leases existed (no expiry) counts as expiring ``default_lease_seconds``
        after it was taken.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(select(batch_lock_t)).mappings().all()
        now = utcnow()
        holders = [_holder(r, now, default_lease_seconds) for r in rows]
        return [h for h in holders if h["stale"]]

    def take_over(self, batch_id: str, token: str | None, lease_seconds: float = 60.0,
                  heartbeat_seconds: float = 10.0, on_lost: Callable[[], None] | None = None,
                  heartbeat: bool = True) -> BatchLease | None:
        """Take a (stale) batch's lock over, to recover it: compare-and-swap on its lease token.

        Returns the new lease, or None when someone else changed the lock first (another recoverer, or the
        owner renewed after all: it was alive).
        """
        now = utcnow()
        new = uuid.uuid4().hex
        match = batch_lock_t.c.token.is_(None) if token is None else batch_lock_t.c.token == token
        with self.engine.begin() as conn:
            result = conn.execute(update(batch_lock_t).where(and_(batch_lock_t.c.batch_id == batch_id, match))
                                  .values(token=new, owner=owner_id(), owner_process=leases.process_identity(),
                                          heartbeat_at=now, expires_at=now + dt.timedelta(seconds=lease_seconds)))
        if not result.rowcount:
            return None
        return self._lease(batch_id, new, lease_seconds, heartbeat_seconds, on_lost, heartbeat)

    def journal(self, batch_id: str) -> dict[str, Any]:
        """The batch's recovery journal (empty when it recorded nothing)."""
        with self.engine.connect() as conn:
            text = conn.execute(select(batches_t.c.journal).where(batches_t.c.batch_id == batch_id)).scalar()
        return json.loads(text) if text else {}

    def record_journal(self, batch_id: str, **entries: Any) -> None:
        """Add entries to the batch's recovery journal (fenced by this process's lease on the batch)."""
        with self.engine.begin() as conn:
            self._fence(conn, batch_id)
            text = conn.execute(select(batches_t.c.journal).where(batches_t.c.batch_id == batch_id)).scalar()
            journal = {**(json.loads(text) if text else {}), **entries}
            conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id)
                         .values(journal=json.dumps(journal, sort_keys=True, default=str)))

    def _fence(self, conn: Any, batch_id: str) -> None:
        """Inside a transaction: refuse when this process holds a lease on the batch that the lock lost."""
        lease = leases.held(batch_id)
        if lease is None:
            return
        token = conn.execute(select(batch_lock_t.c.token).where(batch_lock_t.c.batch_id == batch_id)).scalar()
        if token != lease.token:
            raise LeaseLost(f"batch {batch_id} no longer holds the batch lock (recovered by another process); "
                            "nothing recorded")

    def claim(self, batch_id: str, limit: int) -> list[dict[str, Any]]:
        """Atomically move up to ``limit`` pending requests (oldest first) to ``claimed`` for this batch."""
        now = utcnow()
        oldest = (select(requests_t.c.request_id).where(requests_t.c.state == "pending")
                  .order_by(requests_t.c.received_at, requests_t.c.request_id).limit(limit))
        claim = update(requests_t).values(state="claimed", batch_id=batch_id, updated_at=now, note=None)
        with self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # one statement: SQLite serialises writers, and a read-then-write transaction could deadlock
                conn.execute(claim.where(and_(requests_t.c.request_id.in_(oldest.scalar_subquery()),
                                              requests_t.c.state == "pending")))
            else:
                # lock the rows first, skipping those another claimer holds: concurrent claimers take different
                # rows instead of queueing on the same ones and coming back empty (a LIMIT ... SKIP LOCKED
                # subquery inside the UPDATE may be re-run by the planner and take more than ``limit``)
                ids = conn.execute(oldest.with_for_update(skip_locked=True)).scalars().all()
                for chunk in _chunks(list(ids), 5000):
                    conn.execute(claim.where(and_(requests_t.c.request_id.in_(chunk), requests_t.c.state == "pending")))
        claimed = self.list(state="claimed", batch_id=batch_id)
        if not claimed:
            raise NothingToDo("no pending requests to claim")
        return claimed

    def release(self, batch_id: str, note: str | None = None) -> int:
        """Give a batch's claimed requests back (state pending); returns how many."""
        with self.engine.begin() as conn:
            result = conn.execute(update(requests_t)
                                  .where(and_(requests_t.c.batch_id == batch_id, requests_t.c.state == "claimed"))
                                  .values(state="pending", batch_id=None, updated_at=utcnow(), note=note))
        return int(result.rowcount or 0)

    def quarantine(self, batch_id: str, reasons: dict[str, str]) -> None:
        """Move claimed requests of this batch to ``quarantined`` with a readable reason each."""
        now = utcnow()
        with self.engine.begin() as conn:
            for request_id, reason in reasons.items():
                conn.execute(update(requests_t)
                             .where(and_(requests_t.c.request_id == request_id, requests_t.c.batch_id == batch_id,
                                         requests_t.c.state == "claimed"))
                             .values(state="quarantined", note=reason, updated_at=now))

    def requeue(self, request_id: str) -> None:
        """Put a quarantined request back to pending (after someone fixed the data or the request)."""
        with self.engine.begin() as conn:
            result = conn.execute(update(requests_t)
                                  .where(and_(requests_t.c.request_id == request_id, requests_t.c.state == "quarantined"))
                                  .values(state="pending", batch_id=None, updated_at=utcnow()))
        if not result.rowcount:
            raise LedgerConflict(f"request {request_id!r} is not quarantined")

    def finish_batch(self, batch_id: str, done_ids: Iterable[str], receipts: Sequence[dict[str, Any]],
                     info: dict[str, Any], version_row: dict[str, Any] | None) -> None:
        """In one transaction: requests done, receipts and the new dataset version recorded, lock released.

        Fenced: when this process holds a lease on the batch, the lock must still carry its token, else
        nothing is recorded (:class:`LeaseLost`).
        """
        now = utcnow()
        with self.engine.begin() as conn:
            self._fence(conn, batch_id)
            for rid in done_ids:
                conn.execute(update(requests_t)
                             .where(and_(requests_t.c.request_id == rid, requests_t.c.batch_id == batch_id))
                             .values(state="done", updated_at=now))
            if receipts:
                conn.execute(insert(receipts_t), [dict(r) for r in receipts])
            if version_row:
                conn.execute(insert(versions_t).values(**version_row))
            conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id)
                         .values(state="done", finished_at=now, **info))
            conn.execute(batch_lock_t.delete().where(batch_lock_t.c.batch_id == batch_id))
        self._drop_lease(batch_id)

    def fail_batch(self, batch_id: str, error: str) -> int:
        """In one transaction: the failure recorded, every claimed request given back, the lock released.

        Returns how many requests were released. Fenced like :meth:`finish_batch`.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            self._fence(conn, batch_id)
            result = conn.execute(update(requests_t)
                                  .where(and_(requests_t.c.batch_id == batch_id, requests_t.c.state == "claimed"))
                                  .values(state="pending", batch_id=None, updated_at=now,
                                          note=f"batch {batch_id} failed: {error[:300]}"))
            conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id)
                         .values(state="failed", finished_at=now, error=error[:4000]))
            conn.execute(batch_lock_t.delete().where(batch_lock_t.c.batch_id == batch_id))
        self._drop_lease(batch_id)
        return int(result.rowcount or 0)

    def end_empty_batch(self, batch_id: str) -> None:
        """A batch that found nothing to claim: forget it entirely and release the lock."""
        with self.engine.begin() as conn:
            self._fence(conn, batch_id)
            conn.execute(batches_t.delete().where(batches_t.c.batch_id == batch_id))
            conn.execute(batch_lock_t.delete().where(batch_lock_t.c.batch_id == batch_id))
        self._drop_lease(batch_id)

    @staticmethod
    def _drop_lease(batch_id: str) -> None:
        lease = leases.held(batch_id)
        if lease is not None:
            lease.stop()

    def set_batch_info(self, batch_id: str, **info: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(batches_t).where(batches_t.c.batch_id == batch_id).values(**info))

    def batches(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(batches_t).order_by(batches_t.c.started_at.desc()).limit(limit)).mappings().all()
        return [{k: (_aware(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()} for r in rows]

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(batches_t).where(batches_t.c.batch_id == batch_id)).mappings().first()
        return {k: (_aware(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()} if row else None

    # ---- dataset versions ----------------------------------------------------------------------
    def record_version(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            exists = conn.execute(select(versions_t.c.version).where(and_(
                versions_t.c.dataset == row["dataset"], versions_t.c.version == row["version"]))).first()
            if exists is None:
                conn.execute(insert(versions_t).values(**row))

    def versions(self, dataset: str | None = None) -> list[dict[str, Any]]:
        query = select(versions_t).order_by(versions_t.c.dataset, versions_t.c.version)
        if dataset:
            query = query.where(versions_t.c.dataset == dataset)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # ---- alias history -------------------------------------------------------------------------
    def record_alias_move(self, model_name: str, alias: str, from_version: str | None, to_version: str | None,
                          reason: str, actor: str, batch_id: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(alias_moves_t).values(model_name=model_name, alias=alias, from_version=from_version,
                                                      to_version=to_version, at=utcnow(), reason=reason,
                                                      actor=actor, batch_id=batch_id))

    def alias_history(self, model_name: str | None = None) -> list[dict[str, Any]]:
        query = select(alias_moves_t).order_by(alias_moves_t.c.id)
        if model_name:
            query = query.where(alias_moves_t.c.model_name == model_name)
        with self.engine.connect() as conn:
            return [{k: (_aware(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}
                    for r in conn.execute(query).mappings()]

    def delete_alias_moves(self, batch_id: str) -> None:
        """Undo the alias-history rows of a batch that is being rolled back (its moves were undone too)."""
        with self.engine.begin() as conn:
            conn.execute(alias_moves_t.delete().where(alias_moves_t.c.batch_id == batch_id))

    # ---- receipts ------------------------------------------------------------------------------
    def receipts(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(receipts_t).order_by(receipts_t.c.seq)).mappings()]

    def receipt_of(self, request_id: str) -> dict[str, Any] | None:
        """The ledger row of a request's receipt (the latest, should a request ever get two), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(receipts_t).where(receipts_t.c.request_id == request_id)
                               .order_by(receipts_t.c.seq.desc()).limit(1)).mappings().first()
        return dict(row) if row else None

    def last_receipt(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(receipts_t).order_by(receipts_t.c.seq.desc()).limit(1)).mappings().first()
        return dict(row) if row else None

    # ---- quality -------------------------------------------------------------------------------
    def record_quality(self, batch_id: str | None, model_version: str | None, metrics: dict[str, float]) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(insert(quality_t), [{"batch_id": batch_id, "model_version": model_version, "metric": k,
                                              "value": float(v), "at": now} for k, v in metrics.items()])

    def quality(self, metric: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [{k: (_aware(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}
                    for r in conn.execute(select(quality_t).where(quality_t.c.metric == metric)
                                          .order_by(quality_t.c.id)).mappings()]

    def delete_quality(self, batch_id: str) -> None:
        """Remove the quality rows of a batch that is being rolled back."""
        with self.engine.begin() as conn:
            conn.execute(quality_t.delete().where(quality_t.c.batch_id == batch_id))

    # ---- superseded models ---------------------------------------------------------------------
    def record_superseded(self, model_name: str, rows: Sequence[dict[str, Any]], recorded_in: str | None) -> None:
        """Record versions that hold erased data: ``{"version", "erased_by_batch", "reason"}`` each."""
        if not rows:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(insert(superseded_t), [{"model_name": model_name, "version": str(r["version"]),
                                                 "erased_by_batch": r["erased_by_batch"], "recorded_in": recorded_in,
                                                 "at": now, "reason": r["reason"]} for r in rows])

    def superseded(self, model_name: str | None = None) -> list[dict[str, Any]]:
        query = select(superseded_t).order_by(superseded_t.c.id)
        if model_name:
            query = query.where(superseded_t.c.model_name == model_name)
        with self.engine.connect() as conn:
            return [{k: (_aware(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}
                    for r in conn.execute(query).mappings()]

    def delete_superseded(self, recorded_in: str) -> None:
        """Undo the supersession rows a rolled-back batch recorded."""
        with self.engine.begin() as conn:
            conn.execute(superseded_t.delete().where(superseded_t.c.recorded_in == recorded_in))


def _holder(row: Any, now: dt.datetime, default_lease_seconds: float = 60.0) -> dict[str, Any]:
    """A lock row as a dict with ISO times and ``stale``: why it is stale (a sentence), or None."""
    expires = _aware(row["expires_at"]) or _aware(row["taken_at"]) + dt.timedelta(seconds=default_lease_seconds)
    state = leases.holder_state(row["owner_process"])
    stale = None
    if state == "dead":
        stale = f"its process {row['owner']} is gone"
    elif expires < now:
        stale = f"its lease expired at {expires.isoformat()}"
    out = {k: (_aware(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}
    return {**out, "expires_at": expires.isoformat(), "stale": stale}


def _request_dict(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in ("received_at", "accepted_at", "updated_at"):
        if out.get(key) is not None:
            out[key] = _aware(out[key]).isoformat()
    return out


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _add_missing_columns(conn: Any) -> None:
    """Add columns a ledger made by an older forgetflow lacks (all of them nullable)."""
    from sqlalchemy import inspect

    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()
