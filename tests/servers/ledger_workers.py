"""Functions run in separate processes by the PostgreSQL ledger tests (spawned: importable, no fixtures)."""

from __future__ import annotations

import datetime as dt

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


def claim_until_empty(url: str, name: str, size: int) -> list[str]:
    """Claim batches of ``size`` until nothing is pending; returns every request id this process got."""
    book = Ledger(url)
    got: list[str] = []
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
