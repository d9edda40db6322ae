"""The ledger's schema: Alembic migrations (fresh databases, and ledgers an older forgetflow made with
``create_all``), one engine per URL for the process, and the width of ``reason``."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from forgetflow.ledger.reasons import REASONS
from forgetflow.errors import RequestError
from forgetflow.ledger import Ledger, make_request, schema
from forgetflow.ledger.requests import REASON_MAX_LENGTH

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _old_schema() -> sa.MetaData:
    """The ledger's tables as forgetflow created them before migrations (store.py at commit a5f7a16)."""
    md = sa.MetaData()
    sa.Table("requests", md,
             sa.Column("request_id", sa.String(128), primary_key=True),
             sa.Column("subject_id", sa.String(128), nullable=True, index=True),
             sa.Column("sample_id", sa.String(128), nullable=True, index=True),
             sa.Column("reason", sa.String(16), nullable=False),
             sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
             sa.Column("content_sha256", sa.String(64), nullable=False),
             sa.Column("source", sa.String(16), nullable=False, default="cli"),
             sa.Column("state", sa.String(16), nullable=False, index=True, default="pending"),
             sa.Column("batch_id", sa.String(64), nullable=True, index=True),
             sa.Column("note", sa.Text, nullable=True),
             sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
             sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False))
    sa.Table("batches", md,
             sa.Column("batch_id", sa.String(64), primary_key=True),
             sa.Column("state", sa.String(16), nullable=False),
             sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
             sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
             sa.Column("owner", sa.String(128), nullable=False),
             sa.Column("flow_run_id", sa.String(64), nullable=True),
             sa.Column("method", sa.String(64), nullable=True),
             sa.Column("requests", sa.Integer, nullable=True),
             sa.Column("forget_samples", sa.Integer, nullable=True),
             sa.Column("model_version", sa.String(32), nullable=True),
             sa.Column("promoted", sa.Boolean, nullable=True),
             sa.Column("data_version", sa.Integer, nullable=True),
             sa.Column("decision", sa.String(32), nullable=True),
             sa.Column("error", sa.Text, nullable=True))
    sa.Table("batch_lock", md,
             sa.Column("name", sa.String(16), primary_key=True),
             sa.Column("batch_id", sa.String(64), nullable=False),
             sa.Column("owner", sa.String(128), nullable=False),
             sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False))
    sa.Table("dataset_versions", md,
             sa.Column("dataset", sa.String(64), primary_key=True),
             sa.Column("version", sa.Integer, primary_key=True),
             sa.Column("fingerprint", sa.String(64), nullable=False),
             sa.Column("dvc_md5", sa.String(64), nullable=True),
             sa.Column("parent", sa.Integer, nullable=True),
             sa.Column("batch_id", sa.String(64), nullable=True),
             sa.Column("train_samples", sa.Integer, nullable=False),
             sa.Column("erased_total", sa.Integer, nullable=False),
             sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))
    sa.Table("alias_moves", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("model_name", sa.String(128), nullable=False),
             sa.Column("alias", sa.String(32), nullable=False),
             sa.Column("from_version", sa.String(32), nullable=True),
             sa.Column("to_version", sa.String(32), nullable=True),
             sa.Column("at", sa.DateTime(timezone=True), nullable=False),
             sa.Column("reason", sa.Text, nullable=False),
             sa.Column("actor", sa.String(128), nullable=False),
             sa.Column("batch_id", sa.String(64), nullable=True))
    sa.Table("receipts", md,
             sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("request_id", sa.String(128), nullable=False, index=True),
             sa.Column("batch_id", sa.String(64), nullable=False),
             sa.Column("sha256", sa.String(64), nullable=False, unique=True),
             sa.Column("prev_sha256", sa.String(64), nullable=True),
             sa.Column("path", sa.Text, nullable=False),
             sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False))
    sa.Table("quality", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("batch_id", sa.String(64), nullable=True),
             sa.Column("model_version", sa.String(32), nullable=True),
             sa.Column("metric", sa.String(64), nullable=False),
             sa.Column("value", sa.Float, nullable=False),
             sa.Column("at", sa.DateTime(timezone=True), nullable=False))
    sa.Table("superseded", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("model_name", sa.String(128), nullable=False),
             sa.Column("version", sa.String(32), nullable=False),
             sa.Column("erased_by_batch", sa.String(64), nullable=False),
             sa.Column("recorded_in", sa.String(64), nullable=True),
             sa.Column("at", sa.DateTime(timezone=True), nullable=False),
             sa.Column("reason", sa.Text, nullable=False))
    return md


def _differences(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.metadata)
    finally:
        engine.dispose()


def test_a_new_ledger_is_migrated_to_exactly_the_declared_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    book = Ledger(url)
    assert schema.revision(book.engine) == schema.HEAD
    assert _differences(url) == []


def test_a_ledger_made_by_create_all_is_upgraded_in_place(tmp_path):
    check_upgrade_in_place(f"sqlite:///{tmp_path / 'old.db'}")


def check_upgrade_in_place(url: str) -> None:
    """An old ledger with data at ``url`` (an empty database) is upgraded on first open, its rows kept."""
    old = sa.create_engine(url)
    md = _old_schema()
    md.create_all(old)
    with old.begin() as conn:  # what an older forgetflow left: requests, a finished batch, a running lock
        conn.execute(md.tables["requests"].insert(), [
            {"request_id": f"r{i}", "subject_id": f"s{i}", "sample_id": None, "reason": "privacy",
             "received_at": NOW, "content_sha256": "0" * 64, "source": "cli", "state": "pending",
             "batch_id": None, "note": None, "accepted_at": NOW, "updated_at": NOW} for i in range(3)])
        conn.execute(md.tables["batches"].insert(), [
            {"batch_id": "b-old", "state": "done", "started_at": NOW, "owner": "h:1", "requests": 0},
            {"batch_id": "b-live", "state": "running", "started_at": NOW, "owner": "h:2", "requests": None}])
        conn.execute(md.tables["batch_lock"].insert(), {"name": "batch", "batch_id": "b-live", "owner": "h:2",
                                                        "taken_at": NOW})
        conn.execute(md.tables["alias_moves"].insert(), {"model_name": "m", "alias": "champion", "from_version": None,
                                                         "to_version": "1", "at": NOW, "reason": "trained",
                                                         "actor": "me", "batch_id": None})
    assert "alembic_version" not in sa.inspect(old).get_table_names()
    old.dispose()

    book = Ledger(url)

    assert schema.revision(book.engine) == schema.HEAD
    assert _differences(url) == []  # the same schema as a new ledger, reason widened included
    assert book.counts()["pending"] == 3 and book.batch("b-old")["state"] == "done"
    assert book.alias_history()[0]["to_version"] == "1"
    # the lock an old process held has no lease: stale once the default lease has passed since it was taken
    assert [h["batch_id"] for h in book.stale_holders()] == ["b-live"]
    assert book.take_over("b-live", None, heartbeat=False) is not None
    long = "x" * REASON_MAX_LENGTH
    with book.engine.begin() as conn:  # the widened column takes the longest reason the model allows
        conn.execute(schema.requests_t.update().where(schema.requests_t.c.request_id == "r0").values(reason=long))
    assert book.get("r0")["reason"] == long


def test_every_reason_fits_and_a_longer_one_is_refused_before_the_database():
    assert max(len(r) for r in REASONS) <= REASON_MAX_LENGTH == schema.requests_t.c.reason.type.length
    with pytest.raises(RequestError, match="reason"):
        make_request("r1", "x" * (REASON_MAX_LENGTH + 1), subject_id="s")
    from forgetflow.ledger.requests import ErasureRequest

    with pytest.raises(RequestError, match="longer than"):
        ErasureRequest("r1", "y" * (REASON_MAX_LENGTH + 1), NOW, subject_id="s")


def test_one_engine_per_url_for_the_process(tmp_path):
    import threading

    url = f"sqlite:///{tmp_path / 'one.db'}"
    engines = []
    threads = [threading.Thread(target=lambda: engines.append(Ledger(url).engine)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in engines}) == 1 and engines[0] is Ledger(url).engine
    assert Ledger(f"sqlite:///{tmp_path / 'other.db'}").engine is not engines[0]
    Ledger(url).close()  # disposed and forgotten: the next Ledger makes a new one
    assert Ledger(url).engine is not engines[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    parent = Ledger(url)
    parent.add([make_request("r1", "privacy", subject_id="s1", received_at=NOW)])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no engine inherited, a new one works
        try:
            fresh = url not in schema._ENGINES
            ok = fresh and Ledger(url).engine is not parent.engine and Ledger(url).counts()["pending"] == 1
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert parent.counts()["pending"] == 1  # the parent's pool is untouched


def _open(url: str) -> int:
    return Ledger(url).counts()["pending"]


def test_processes_opening_a_new_ledger_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.map(_open, [url] * 3) == [0, 0, 0]
    assert schema.revision(Ledger(url).engine) == schema.HEAD
