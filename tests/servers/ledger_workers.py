"""Functions run in separate processes by the PostgreSQL ledger tests (spawned: importable, no fixtures)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from forgetflow.errors import LedgerConflict, NothingToDo
from forgetflow.ledger import Ledger, make_request


def request(i: int):
    return make_request(f"r{i:05d}", "privacy", subject_id=f"s{i}",
                        received_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i))


def open_ledger(url: str) -> str:
    """Construct a Ledger (which creates the schema) and return the tables it sees."""
    from sqlalchemy import inspect

    book = Ledger(url)
    try:
        return ",".join(sorted(inspect(book.engine).get_table_names()))
    finally:
        book.close()


def wait_for_all(barrier: str, name: str, parties: int, timeout: float = 120.0) -> None:
    """A start line shared through a folder: every process marks itself ready, then waits for the others.

    Spawned processes start seconds apart; without this the first one can drain the queue before the
    last one has imported torch, and the test would exercise no concurrency at all."""
    folder = Path(barrier)
    (folder / name).touch()
    deadline = time.monotonic() + timeout
    while len(list(folder.iterdir())) < parties:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(list(folder.iterdir()))} of {parties} processes reached the start line")
        time.sleep(0.01)


def claim_until_empty(url: str, name: str, size: int, barrier: str | None = None, parties: int = 1) -> list[str]:
    """Claim batches of ``size`` until nothing is pending; returns every request id this process got.

    With ``barrier`` (a folder), the process opens its ledger, then waits until ``parties`` processes have,
    so that the claims really race."""
    book = Ledger(url)
    got: list[str] = []
    if barrier:
        wait_for_all(barrier, name, parties)
    try:
        for i in range(10_000):
            try:
                got += [r["request_id"] for r in book.claim(f"{name}-{i}", size)]
            except NothingToDo:
                if not book.counts()["pending"]:
                    return got
    finally:
        book.close()
    raise RuntimeError("claim loop did not end")


def add_range(url: str, start: int, stop: int) -> tuple[int, int]:
    """Add requests [start, stop); returns (accepted, duplicates)."""
    book = Ledger(url)
    try:
        result = book.add([request(i) for i in range(start, stop)], source="import")
        return len(result.accepted), len(result.duplicates)
    finally:
        book.close()


def start_batch(url: str, batch_id: str) -> str:
    """Try to take the batch lock: 'won' or 'conflict'."""
    book = Ledger(url)
    try:
        book.start_batch(batch_id)
        return "won"
    except LedgerConflict:
        return "conflict"
    finally:
        book.close()


def claim_once(url: str, name: str, size: int) -> int:
    """One claim of up to ``size``; returns how many this process got (0 when it was told nothing is pending)."""
    book = Ledger(url)
    try:
        return len(book.claim(name, size))
    except NothingToDo:
        return 0
    finally:
        book.close()
