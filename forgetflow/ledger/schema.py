"""The ledger's tables, one engine per database URL for the process, and schema upgrades through Alembic.

Tables: ``requests`` (the queue), ``batches`` and ``batch_lock`` (one batch at a time, held as a lease:
``forgetflow/ledger/lease.py``), and the history: ``dataset_versions``, ``alias_moves``, ``receipts``,
``quality``, ``superseded``. The tables below are the schema at the newest migration; the migrations in
``forgetflow/ledger/migrations/versions/`` are how a database gets there.

Engines: :func:`engine_for` keeps one SQLAlchemy engine per URL for the whole process (its connection pool is
shared by every ``Ledger`` on that URL) and brings the database to the newest schema the first time it is
opened. A forked child gets fresh engines (an engine's pooled connections must not cross a fork);
:func:`dispose_engines` drops them all (tests, shutdown).

Migrations: a database without Alembic's ``alembic_version`` table is either new (upgraded from nothing) or
made by a forgetflow that used ``create_all`` (its tables exist: it is stamped with the baseline revision
``0001``, which is exactly that schema, and upgraded from there). A new schema change is one more file in
``migrations/versions/`` whose ``down_revision`` is the previous head, plus the change in the tables below,
plus :data:`HEAD`.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping

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
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from forgetflow.ledger.requests import REASON_MAX_LENGTH

STATES = ("pending", "claimed", "done", "quarantined")
HEAD = "0002"  # the newest migration: the tables below
BASELINE = "0001"  # the schema every forgetflow made with create_all before migrations existed
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MAX_ENGINES = 16  # engines kept at once; the least recently used one is disposed beyond that
_PG_SCHEMA_LOCK = 7405372019  # advisory lock: processes opening a fresh PostgreSQL database take turns

metadata = MetaData()

requests_t = Table(
    "requests", metadata,
    Column("request_id", String(128), primary_key=True),
    Column("subject_id", String(128), nullable=True, index=True),
    Column("sample_id", String(128), nullable=True, index=True),
    Column("reason", String(REASON_MAX_LENGTH), nullable=False),
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
    Column("owner", String(128), nullable=False),  # host:pid of the process that started it
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


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones; every time stored is UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def as_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A result row as a plain dict, times as ISO-8601 UTC strings."""
    return {k: (aware(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}


# ---- engines --------------------------------------------------------------------------------------
_ENGINES: "collections.OrderedDict[str, Engine]" = collections.OrderedDict()
_ENGINES_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def engine_for(url: str, echo: bool = False) -> Engine:
    """The process's engine for ``url``, created (and the database upgraded to :data:`HEAD`) on first use."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is not None and not echo:
            _ENGINES.move_to_end(url)
            return engine
        engine = _new_engine(url, echo)
        upgrade(engine)
        if not echo:
            _ENGINES[url] = engine
            while len(_ENGINES) > MAX_ENGINES:
                _, old = _ENGINES.popitem(last=False)
                old.dispose()  # its Ledger objects still work: the engine just opens new connections
        return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of ``url``'s engine and forget it (the next use makes a new one)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()


def dispose_engines() -> None:
    """Close and forget every engine of this process."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.dispose()


def _forget_after_fork() -> None:
    # the child must not use (or close) the parent's pooled connections: drop them without closing
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _new_engine(url: str, echo: bool) -> Engine:
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


# ---- migrations -----------------------------------------------------------------------------------
def revision(engine: Engine) -> str | None:
    """The database's Alembic revision; None when it has none (new, or made by ``create_all``)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> None:
    """Bring the database to :data:`HEAD` (Alembic is imported only when there is something to do).

    A database whose tables exist but that has no revision was made by ``create_all``: it is stamped with
    :data:`BASELINE` first. PostgreSQL upgrades hold an advisory lock, so processes opening a fresh database at
    once take turns (its ``CREATE TABLE`` is not race-free).
    """
    for attempt in range(3):
        if revision(engine) == HEAD:
            return
        try:
            _upgrade_once(engine)
            return
        except DBAPIError:
            # SQLite: another process created the tables between our look and our CREATE (PostgreSQL takes
            # turns under the lock instead); look again, the other process may have finished the job
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))


def _upgrade_once(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        logging.getLogger("alembic").setLevel(logging.WARNING)
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables and "requests" in tables:
            log.info("ledger made before migrations: stamping revision %s", BASELINE)
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
