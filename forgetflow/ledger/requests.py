"""Erasure requests: parsing and validating one request or a CSV of them, before anything is stored.

A request names exactly one of a data subject or a sample, a reason and when it was received (ISO-8601;
a time without a zone is read as UTC; a time more than ``CLOCK_SKEW`` in the future is refused, and so is
one more than ``intake.max_age_days`` in the past). Its content hash covers everything but the id, so a
retried request (same id, same content) is recognised and a reused id with other content is refused.

Why a lower bound: requests are claimed oldest first and the backlog rule fires on the oldest one, so a
wrong date far in the past (year 1, the Unix epoch) would jump the queue and trigger a batch at once. Every
intake path applies the same bound: the HTTP intake and ``forgetflow request add|import`` pass the
project's ``intake.max_age_days``; the Python functions here default to that setting's default.

A request file is all-or-nothing: every bad row is reported with its line, and nothing is imported. A row
whose number of fields differs from the header's is bad (a truncated line would otherwise be read with
empty trailing fields, e.g. no ``received_at`` and so the import time).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from forgetflow.config import IntakeParams
from forgetflow.errors import RequestError
from forgetflow.ledger.reasons import REASONS

CSV_COLUMNS = ("request_id", "subject_id", "sample_id", "reason", "received_at")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")
CLOCK_SKEW = dt.timedelta(minutes=5)
DEFAULT_MAX_AGE_DAYS: float = IntakeParams.model_fields["max_age_days"].default


@dataclass(frozen=True)
class ErasureRequest:
    """A validated request, ready for the ledger."""

    request_id: str
    reason: str
    received_at: dt.datetime  # timezone-aware, UTC
    subject_id: str | None = None
    sample_id: str | None = None

    @property
    def content_sha256(self) -> str:
        """Hash of the request's content (everything but its id)."""
        data = {"subject_id": self.subject_id, "sample_id": self.sample_id, "reason": self.reason,
                "received_at": self.received_at.isoformat()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def as_dict(self) -> dict[str, str | None]:
        return {"request_id": self.request_id, "subject_id": self.subject_id, "sample_id": self.sample_id,
                "reason": self.reason, "received_at": self.received_at.isoformat()}


def parse_time(text: str | dt.datetime | None, now: dt.datetime | None = None,
               max_age_days: float | None = DEFAULT_MAX_AGE_DAYS) -> dt.datetime:
    """ISO-8601 (``Z`` allowed; no zone = UTC) → aware UTC datetime.

    Args:
        text: the time; empty or None means ``now``.
        now: the current time (tests pin it).
        max_age_days: refuse a time more than this many days before ``now``; None = no lower bound (times
            the ledger already holds, re-validated on a retry).

    Raises:
        RequestError: not ISO-8601, out of datetime's range, in the future, or older than ``max_age_days``.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if text is None or (isinstance(text, str) and not text.strip()):
        return now
    if isinstance(text, dt.datetime):
        value = text
    else:
        try:
            value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise RequestError(f"received_at {text!r} is not an ISO-8601 time") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    try:
        value = value.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise RequestError(f"received_at {str(text)!r} is out of range (before year 1 in UTC)") from None
    if value > now + CLOCK_SKEW:
        raise RequestError(f"received_at {value.isoformat()} is in the future")
    if max_age_days is not None and value < now - dt.timedelta(days=max_age_days):
        raise RequestError(f"received_at {value.isoformat()} is more than {max_age_days:g} days ago "
                           "(intake.max_age_days): a wrong date, or raise the setting to accept an older request")
    return value


def make_request(
    request_id: str,
    reason: str,
    subject_id: str | None = None,
    sample_id: str | None = None,
    received_at: str | dt.datetime | None = None,
    now: dt.datetime | None = None,
    max_age_days: float | None = DEFAULT_MAX_AGE_DAYS,
) -> ErasureRequest:
    """Validate one request; the error names the field that is wrong.

    ``max_age_days`` bounds ``received_at`` from below (see :func:`parse_time`); callers with a project pass
    ``project.params.intake.max_age_days``.
    """
    request_id = (request_id or "").strip()
    subject_id = (subject_id or "").strip() or None
    sample_id = (sample_id or "").strip() or None
    reason = (reason or "").strip()
    if not request_id:
        raise RequestError("request_id is empty")
    if not ID_PATTERN.match(request_id):
        raise RequestError(f"request_id {request_id!r} must be 1-128 characters of letters, digits and ._:@/-")
    if (subject_id is None) == (sample_id is None):
        raise RequestError("give exactly one of subject_id and sample_id")
    for name, value in (("subject_id", subject_id), ("sample_id", sample_id)):
        if value is not None and not ID_PATTERN.match(value):
            raise RequestError(f"{name} {value!r} must be 1-128 characters of letters, digits and ._:@/-")
    if reason not in REASONS:
        raise RequestError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
    return ErasureRequest(request_id, reason, parse_time(received_at, now, max_age_days), subject_id, sample_id)


@dataclass(frozen=True)
class RowProblem:
    """One bad row of a request file."""

    line: int
    request_id: str
    message: str

    def __str__(self) -> str:
        rid = f" ({self.request_id})" if self.request_id else ""
        return f"line {self.line}{rid}: {self.message}"


def parse_csv(text: str, source: str = "<csv>", now: dt.datetime | None = None,
              max_age_days: float | None = DEFAULT_MAX_AGE_DAYS) -> list[ErasureRequest]:
    """Parse a request CSV; on any bad row raise ``RequestError`` listing every bad row (nothing accepted).

    Rows are numbered by the file line they start on; blank lines are skipped.
    """
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise RequestError(f"{source}: empty file (expected header {','.join(CSV_COLUMNS)})")
    missing = [c for c in CSV_COLUMNS if c not in header]
    extra = [c for c in header if c not in CSV_COLUMNS]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else [])
        raise RequestError(f"{source}: line 1: bad header ({'; '.join(parts)}); expected {','.join(CSV_COLUMNS)}")
    problems: list[RowProblem] = []
    requests: list[ErasureRequest] = []
    seen: dict[str, tuple[int, str]] = {}
    while True:
        line = reader.line_num + 1  # where the next row starts (a quoted field may span lines)
        cells = next(reader, None)
        if cells is None:
            break
        if all(not c.strip() for c in cells):
            continue  # blank line
        row = dict(zip(header, cells))
        rid = (row.get("request_id") or "").strip()
        if len(cells) != len(header):
            problems.append(RowProblem(line, rid, f"{len(cells)} fields where the header has {len(header)} "
                                                  "(a truncated or shifted row)"))
            continue
        try:
            req = make_request(rid, row["reason"], row["subject_id"], row["sample_id"], row["received_at"],
                               now=now, max_age_days=max_age_days)
        except RequestError as exc:
            problems.append(RowProblem(line, rid, str(exc)))
            continue
        if req.request_id in seen:
            first_line, first_hash = seen[req.request_id]
            if first_hash != req.content_sha256:
                problems.append(RowProblem(line, rid, f"request_id repeats line {first_line} with different content"))
            continue  # an identical repeat is the same request: accepted once
        seen[req.request_id] = (line, req.content_sha256)
        requests.append(req)
    if problems:
        shown = "; ".join(str(p) for p in problems[:20])
        more = f"; … {len(problems) - 20} more" if len(problems) > 20 else ""
        raise RequestError(f"{source}: {len(problems)} bad row(s), nothing imported: {shown}{more}")
    return requests


def read_csv(path: Path, now: dt.datetime | None = None,
             max_age_days: float | None = DEFAULT_MAX_AGE_DAYS) -> list[ErasureRequest]:
    """Read and validate a request CSV file (see :func:`parse_csv`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise RequestError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise RequestError(f"{path}: not UTF-8 text") from exc
    return parse_csv(text, str(path), now, max_age_days)


def to_csv(requests: Iterable[ErasureRequest]) -> str:
    """Requests back to the CSV import format."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in requests:
        writer.writerow({k: v or "" for k, v in r.as_dict().items()})
    return out.getvalue()
