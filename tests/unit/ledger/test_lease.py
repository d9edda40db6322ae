"""The batch lock as a lease (forgetflow/ledger/lease.py) on a real SQLite ledger: expiry, heartbeat, pid
reuse, another host's holder, take-over, and the fence that stops a holder which lost its lease."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from sqlalchemy import insert, update

from forgetflow.errors import LeaseLost, LedgerConflict
from forgetflow.ledger import Ledger, make_request
from forgetflow.ledger import lease as leases
from forgetflow.ledger.store import batch_lock_t, batches_t


@pytest.fixture
def book(tmp_path) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.add([make_request(f"r{i}", "privacy", subject_id=f"s{i}", received_at="2026-01-01T00:00:00Z")
                for i in range(3)])
    return ledger


def _set_lock(book: Ledger, **values) -> None:
    with book.engine.begin() as conn:
        conn.execute(update(batch_lock_t).values(**values))


def test_a_live_lease_is_not_stale_and_an_expired_one_is_on_any_host(book):
    book.start_batch("b1", lease_seconds=3600, heartbeat=False)
    book.claim("b1", 10)
    # a holder on another machine: its pid means nothing here, only the lease can tell
    _set_lock(book, owner="other-host:4242", owner_process="another-boot|pid:[1]|4242|999")
    assert book.stale_holders() == []
    with pytest.raises(LedgerConflict, match="already running.*lease runs to"):
        book.start_batch("b2", heartbeat=False)
    _set_lock(book, expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    stale = book.stale_holders()
    assert [h["batch_id"] for h in stale] == ["b1"] and "lease expired" in stale[0]["stale"]
    with pytest.raises(LedgerConflict, match="stale .*batch recover"):
        book.start_batch("b2", heartbeat=False)


def test_a_reused_pid_does_not_keep_a_dead_holder_alive(book):
    """The old check (host:pid alive?) kept a dead batch forever once its pid was reused: here this very
    test process plays the live process that reused the pid, with another start time."""
    book.start_batch("b1", lease_seconds=3600, heartbeat=False)
    mine = leases.process_identity()
    assert mine is not None and leases.holder_state(mine) == "alive"
    reused = mine.rsplit("|", 1)[0] + "|1"  # same pid, started at another time
    _set_lock(book, owner_process=reused)
    assert leases.holder_state(reused) == "dead"
    assert [h["batch_id"] for h in book.stale_holders()] == ["b1"]


def test_the_heartbeat_keeps_the_lease_and_stopping_it_lets_it_expire(book):
    lease = book.start_batch("b1", lease_seconds=1.0, heartbeat_seconds=0.2)
    _set_lock(book, owner_process=None)  # as another host would see it: only the lease counts
    try:
        time.sleep(1.6)
        assert book.stale_holders() == []
        lease.check()
    finally:
        lease.stop()
    time.sleep(1.3)
    assert [h["batch_id"] for h in book.stale_holders()] == ["b1"]
    unrenewed = book.take_over("b1", lease.token, lease_seconds=1.0, heartbeat=False)
    time.sleep(1.2)
    with pytest.raises(LeaseLost, match="not renewed"):
        unrenewed.check()  # a holder whose renewals stopped knows its lease is gone without asking the ledger


def test_a_holder_that_lost_its_lease_stops_and_commits_nothing(book):
    lost = []
    owner = book.start_batch("b1", lease_seconds=30, heartbeat_seconds=0.2, on_lost=lambda: lost.append(1))
    book.claim("b1", 10)
    _set_lock(book, expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1), owner_process=None)
    # another host recovers the batch: take-over on the lease token, then its requests go back
    stale = book.stale_holders()
    other = Ledger(book.url)
    recoverer = other.take_over("b1", stale[0]["token"], heartbeat=False)
    assert recoverer is not None and recoverer.token != owner.token
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lost == [1]  # the owner's heartbeat noticed and called on_lost once
    with pytest.raises(LeaseLost):
        owner.check()
    # the owner's final transaction is fenced: nothing recorded, its requests untouched
    with pytest.raises(LeaseLost, match="no longer holds"):
        book.finish_batch("b1", ["r0", "r1", "r2"], [], {"requests": 3}, None)
    with pytest.raises(LeaseLost):
        book.record_journal("b1", commit={"x": 1})
    assert book.counts()["claimed"] == 3 and book.journal("b1") == {}
    owner.stop()
    recoverer.start()  # the recoverer registers its lease in this process and finishes the recovery
    try:
        assert book.fail_batch("b1", "recovered") == 3
    finally:
        recoverer.stop()
    assert book.counts()["pending"] == 3


def test_a_lock_written_before_leases_existed_is_recoverable(book):
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    with book.engine.begin() as conn:  # the row an older forgetflow wrote: no token, no expiry
        conn.execute(insert(batch_lock_t).values(name="batch", batch_id="b0", owner="somewhere:1", taken_at=old))
        conn.execute(insert(batches_t).values(batch_id="b0", state="running", started_at=old, owner="somewhere:1"))
    assert [h["batch_id"] for h in book.stale_holders(default_lease_seconds=60)] == ["b0"]
    assert book.stale_holders(default_lease_seconds=3600) == []
    lease = book.take_over("b0", None, heartbeat=False)
    assert lease is not None
    assert book.running_batch()["token"] == lease.token


def test_the_journal_accumulates(book):
    book.start_batch("b1", heartbeat=False)
    book.record_journal("b1", data_before="outs: []")
    book.record_journal("b1", commit={"manifest": {"path": "m"}})
    assert book.journal("b1") == {"data_before": "outs: []", "commit": {"manifest": {"path": "m"}}}


def test_process_identity_reads_this_process():
    mine = leases.process_identity()
    assert mine is not None and f"|{os.getpid()}|" in mine
    assert leases.holder_state(None) == "unknown"


def test_step_boundaries_check_the_lease_of_this_threads_batch_only(book):
    other = book.start_batch("b1", lease_seconds=1.0, heartbeat=False)  # never renewed: lost after a second
    time.sleep(1.2)
    leases.check_held()  # a lease no batch of this thread runs under (an unrelated or leaked one) is ignored
    other.bind()
    with pytest.raises(LeaseLost):
        leases.check_held()
    other.stop()  # the batch ended: nothing to check any more
    leases.check_held()
