"""The backlog of pending requests, and when it makes a deletion batch due.

A batch is due when at least ``trigger_pending`` (N) requests are pending, or when the oldest pending
request was received at least ``trigger_oldest_hours`` (T) ago: erasure deadlines are counted from the
time a request was received, not from when it reached the ledger. Both the intake (on every accepted
request) and the periodic backlog check evaluate this one rule, so the event that fires the trigger and
the flow that finally runs the batch can never disagree about it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from forgetflow.ledger.store import Ledger, utcnow


@dataclass(frozen=True)
class Backlog:
    """What is waiting in the ledger at one moment."""

    pending: int
    oldest_received_at: dt.datetime | None
    running_batch: str | None
    at: dt.datetime

    @property
    def oldest_age_hours(self) -> float | None:
        """Hours since the oldest pending request was received (None when nothing is pending)."""
        if self.oldest_received_at is None:
            return None
        return max(0.0, (self.at - self.oldest_received_at).total_seconds() / 3600.0)

    def due(self, trigger_pending: int, trigger_oldest_hours: float) -> str | None:
        """Why a batch is due now (a sentence), or None when it is not."""
        if self.pending >= trigger_pending:
            return f"{self.pending} request(s) pending (threshold {trigger_pending})"
        age = self.oldest_age_hours
        if age is not None and self.pending and age >= trigger_oldest_hours:
            return f"oldest pending request waited {age:.2f} h (threshold {trigger_oldest_hours:g} h)"
        return None

    def as_payload(self, trigger_pending: int, trigger_oldest_hours: float) -> dict[str, Any]:
        """The JSON-able description carried by events and returned by the served flows."""
        reason = self.due(trigger_pending, trigger_oldest_hours)
        age = self.oldest_age_hours
        return {
            "pending": self.pending,
            "oldest_received_at": self.oldest_received_at.isoformat() if self.oldest_received_at else None,
            "oldest_age_hours": round(age, 4) if age is not None else None,
            "running_batch": self.running_batch,
            "due": reason is not None,
            "due_reason": reason,
            "thresholds": {"pending": trigger_pending, "oldest_hours": trigger_oldest_hours},
            "at": self.at.isoformat(),
        }


def read_backlog(ledger: Ledger, now: dt.datetime | None = None) -> Backlog:
    """The ledger's backlog now: pending count, oldest pending request, the running batch if any."""
    running = ledger.running_batch()
    return Backlog(pending=ledger.counts()["pending"], oldest_received_at=ledger.oldest_pending(),
                   running_batch=running["batch_id"] if running else None, at=now or utcnow())
