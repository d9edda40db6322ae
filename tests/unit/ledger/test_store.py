"""The ledger against a real SQLite database in a temporary folder."""

import datetime as dt
import threading

import pytest

from forgetflow.errors import LedgerConflict, NothingToDo
from forgetflow.ledger import Ledger, make_request
from forgetflow.ledger.lease import held


def _req(i: int, reason: str = "privacy", subject: str | None = None):
    return make_request(f"r{i:04d}", reason, subject_id=subject or f"s{i}", max_age_days=None,  # fixed dates
                        received_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i))


def stop_leases(ledger: Ledger) -> None:
    """Stop the leases this process still renews on ``ledger``'s batches: these tests start batches and leave
    them running (a batch's owner would stop its lease), so without this the heartbeat threads outlive the test
    and keep renewing against a database that is gone (a PostgreSQL server stopped at the session's end)."""
    for row in ledger.batches(limit=1000):
        lease = held(row["batch_id"], ledger.url)
        if lease is not None:
            lease.stop()


@pytest.fixture
def book(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    stop_leases(ledger)


def test_add_is_idempotent_and_refuses_reused_ids(book):
    assert book.add([_req(1), _req(2)]).accepted == ["r0001", "r0002"]
    again = book.add([_req(1)])
    assert again.accepted == [] and again.duplicates == ["r0001"]
    with pytest.raises(LedgerConflict, match="r0002"):
        book.add([_req(3), make_request("r0002", "other", subject_id="s2", received_at="2026-01-01T00:02:00Z",
                                                max_age_days=None)])
    assert book.get("r0003") is None  # all or nothing
    assert book.counts() == {"pending": 2, "claimed": 0, "done": 0, "quarantined": 0}


def test_claim_oldest_first_and_release(book):
    book.add([_req(i) for i in range(5)])
    book.start_batch("b1")
    claimed = book.claim("b1", 3)
    assert [r["request_id"] for r in claimed] == ["r0000", "r0001", "r0002"]
    assert book.release("b1") == 3
    assert book.counts()["pending"] == 5


def test_one_batch_at_a_time_and_failure_gives_requests_back(book):
    book.add([_req(i) for i in range(3)])
    book.start_batch("b1")
    book.claim("b1", 10)
    with pytest.raises(LedgerConflict, match="b1 is already running"):
        book.start_batch("b2")
    book.quarantine("b1", {"r0002": "bad"})
    assert book.fail_batch("b1", "boom") == 2
    states = {r["request_id"]: r["state"] for r in book.list()}
    assert states == {"r0000": "pending", "r0001": "pending", "r0002": "quarantined"}
    assert book.batch("b1")["state"] == "failed"
    book.start_batch("b2")  # the lock is free again


def test_concurrent_claims_never_share_a_request(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).add([_req(i) for i in range(200)])
    got: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        book = Ledger(url)
        try:
            got[name] = [r["request_id"] for r in book.claim(name, 60)]
        except NothingToDo:
            got[name] = []

    threads = [threading.Thread(target=worker, args=(f"b{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [r for ids in got.values() for r in ids]
    assert len(everything) == len(set(everything)) == 200


def test_dead_owner_is_recovered(book):
    """A holder whose process is gone on this host is stale at once, long before its lease expires."""
    import subprocess
    import sys

    from sqlalchemy import update

    from forgetflow.ledger.lease import process_identity
    from forgetflow.ledger.store import batch_lock_t

    book.add([_req(1)])
    book.start_batch("b1", lease_seconds=3600, heartbeat=False)
    book.claim("b1", 10)
    assert book.stale_holders() == []
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    identity = process_identity(child.pid)
    child.kill()
    child.wait()
    with book.engine.begin() as conn:  # the lock as that process would have written it
        conn.execute(update(batch_lock_t).values(owner_process=identity, owner=f"elsewhere:{child.pid}"))
    stale = book.stale_holders()
    assert [h["batch_id"] for h in stale] == ["b1"] and "is gone" in stale[0]["stale"]
    lease = book.take_over("b1", stale[0]["token"], heartbeat=False)
    assert lease is not None and book.take_over("b1", stale[0]["token"], heartbeat=False) is None  # once
    lease.start()  # the recoverer renews (and fences with) the new token
    try:
        assert book.fail_batch("b1", "owner died") == 1
    finally:
        lease.stop()
    assert book.counts()["pending"] == 1 and book.running_batch() is None


def test_requeue_only_quarantined(book):
    book.add([_req(1)])
    with pytest.raises(LedgerConflict):
        book.requeue("r0001")
    book.start_batch("b")
    book.claim("b", 1)
    book.quarantine("b", {"r0001": "bad"})
    book.fail_batch("b", "x")
    book.requeue("r0001")
    assert book.get("r0001")["state"] == "pending"
