"""The request ledger on a real PostgreSQL server (started by tests/servers/conftest.py), through
``postgresql+psycopg2://`` URLs: the SQLite ledger tests again, then several *processes* at once."""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor

import pytest

from forgetflow.ledger import Ledger
from tests.servers import ledger_workers as workers
from tests.unit.ledger.test_store import (  # noqa: F401 - collected here, run with the PostgreSQL `book` below
    test_add_is_idempotent_and_refuses_reused_ids,
    test_claim_oldest_first_and_release,
    test_dead_owner_is_recovered,
    test_one_batch_at_a_time_and_failure_gives_requests_back,
    test_requeue_only_quarantined,
    stop_leases,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres, request) -> str:
    """A fresh database per test."""
    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    return postgres.create_database(f"ledger_{name}")


@pytest.fixture
def book(pg_url):
    ledger = Ledger(pg_url)
    yield ledger
    stop_leases(ledger)
    ledger.close()


def _pool(n: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))


def test_it_is_really_postgresql(book):
    assert book.engine.dialect.name == "postgresql"
    with book.engine.connect() as conn:
        assert conn.exec_driver_sql("select version()").scalar().startswith("PostgreSQL")


def test_schema_created_by_several_processes_at_once(pg_url):
    with _pool(4) as pool:
        seen = list(pool.map(workers.open_ledger, [pg_url] * 4))
    assert len(set(seen)) == 1 and "requests" in seen[0] and "receipts" in seen[0]


def test_concurrent_claims_from_processes_never_share_or_lose_a_request(pg_url, tmp_path):
    Ledger(pg_url).add([workers.request(i) for i in range(400)])
    with _pool(4) as pool:
        got = list(pool.map(workers.claim_until_empty, [pg_url] * 4, [f"p{i}" for i in range(4)], [10] * 4,
                            [str(tmp_path)] * 4, [4] * 4))
    everything = [r for ids in got for r in ids]
    assert len(everything) == len(set(everything)) == 400
    assert sum(1 for ids in got if ids) >= 2, "one process claimed everything: no concurrency was exercised"
    book = Ledger(pg_url)
    assert book.counts() == {"pending": 0, "claimed": 400, "done": 0, "quarantined": 0}


def test_concurrent_adds_of_the_same_requests_accept_each_once(pg_url):
    Ledger(pg_url)  # schema first, so the race is about the rows
    with _pool(4) as pool:
        results = list(pool.map(workers.add_range, [pg_url] * 4, [0, 0, 50, 50], [100, 100, 150, 150]))
    assert sum(accepted for accepted, _ in results) == 150
    assert all(accepted + dup == 100 for accepted, dup in results)
    assert Ledger(pg_url).counts()["pending"] == 150


def test_a_ledger_made_by_create_all_is_upgraded_in_place(pg_url):
    """PostgreSQL enforces VARCHAR lengths: after the upgrade ``reason`` holds the longest allowed reason."""
    from tests.unit.ledger.test_schema import check_upgrade_in_place

    check_upgrade_in_place(pg_url)


def test_a_new_ledger_has_exactly_the_declared_schema(pg_url):
    from forgetflow.ledger import schema
    from tests.unit.ledger.test_schema import _differences

    assert schema.revision(Ledger(pg_url).engine) == schema.HEAD
    assert _differences(pg_url) == []


def test_only_one_process_takes_the_batch_lock(pg_url):
    Ledger(pg_url)
    with _pool(4) as pool:
        outcomes = list(pool.map(workers.start_batch, [pg_url] * 4, [f"b{i}" for i in range(4)]))
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "won"]


def test_finishing_a_batch_records_everything_in_one_transaction(book):
    import datetime as dt

    book.add([workers.request(i) for i in range(3)])
    book.start_batch("b-20260101-000000-abcdef")
    claimed = [r["request_id"] for r in book.claim("b-20260101-000000-abcdef", 10)]
    now = dt.datetime.now(dt.timezone.utc)
    receipts = [{"seq": i + 1, "request_id": rid, "batch_id": "b-20260101-000000-abcdef", "sha256": f"{i:064d}",
                 "prev_sha256": None if i == 0 else f"{i - 1:064d}", "path": f"state/receipts/{i:08d}-{rid}.json",
                 "issued_at": now} for i, rid in enumerate(claimed)]
    version = {"dataset": "fashion-mnist", "version": 2, "fingerprint": "f" * 64, "dvc_md5": "a" * 32 + ".dir",
               "parent": 1, "batch_id": "b-20260101-000000-abcdef", "train_samples": 53997, "erased_total": 3,
               "created_at": now}
    book.record_alias_move("forgetflow-classifier", "champion", "1", "2", "gates passed", "deletion-batch",
                           "b-20260101-000000-abcdef")
    book.finish_batch("b-20260101-000000-abcdef", claimed, receipts,
                      {"method": "neggrad-plus", "requests": 3, "forget_samples": 12, "model_version": "2",
                       "promoted": True, "data_version": 2, "decision": "unlearn"}, version)
    assert book.counts()["done"] == 3
    assert [r["seq"] for r in book.receipts()] == [1, 2, 3]
    assert book.versions()[0]["dvc_md5"].endswith(".dir")
    assert book.batch("b-20260101-000000-abcdef")["state"] == "done"
    assert book.alias_history()[0]["to_version"] == "2"


def test_simultaneous_claimers_each_get_a_full_share(pg_url):
    """Eight claimers released at the same instant: each gets its ``limit``, none is told nothing is pending
    while requests wait (without SKIP LOCKED, seven of them queue on the same rows and come back empty)."""
    import threading

    from forgetflow.errors import NothingToDo

    Ledger(pg_url).add([workers.request(i) for i in range(400)])
    books = [Ledger(pg_url) for _ in range(8)]
    barrier = threading.Barrier(8)
    got: dict[int, list[str]] = {}

    def claim(i: int) -> None:
        barrier.wait()
        try:
            got[i] = [r["request_id"] for r in books[i].claim(f"t{i}", 50)]
        except NothingToDo:
            got[i] = []

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(len(ids) for ids in got.values()) == [50] * 8
    everything = [r for ids in got.values() for r in ids]
    assert len(set(everything)) == 400
    for b in books:
        b.close()
