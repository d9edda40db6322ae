"""Filing requests from upstream systems: the request models and the validate-and-store step, without HTTP.

The HTTP intake (forgetflow/intake/app.py) maps what happens here to status codes; the rules are the CLI's:
every request goes through :func:`forgetflow.ledger.make_request` (with the project's
``intake.max_age_days``), a list is all-or-nothing (any bad item rejects the whole list, with one problem
per bad item) and the ledger write is one transaction.

Upstream systems retry, so a submission is idempotent per request id: the same id with the same content is
a duplicate (answered again), the same id with other content is a conflict and changes nothing. A request
sent without ``received_at`` is stamped with the time it first arrived; a retry without it is recognised by
its other fields and takes the stored time, so a retry never turns into a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from forgetflow.ledger.reasons import REASONS
from forgetflow.errors import LedgerConflict, RequestError
from forgetflow.ledger.requests import ErasureRequest, make_request
from forgetflow.ledger.store import Ledger

FIELDS = ("request_id", "subject_id", "sample_id", "reason", "received_at")
EXAMPLE = {"request_id": "dsar-2026-000123", "subject_id": "subj-00042", "reason": "privacy",
           "received_at": "2026-11-20T09:30:00Z"}


class RequestIn(BaseModel):
    """One erasure request: exactly one of ``subject_id`` (all of that person's samples) or ``sample_id``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    request_id: str = Field(description="the caller's id: 1-128 of letters, digits and ._:@/- (idempotency key)")
    reason: Literal[REASONS] = Field(description="why the data must go")  # type: ignore[valid-type]
    subject_id: str | None = Field(None, description="forget every sample of this data subject")
    sample_id: str | None = Field(None, description="forget this one sample")
    received_at: str | None = Field(None, description="ISO-8601 time the request was received upstream "
                                                      "(no zone = UTC; not older than intake.max_age_days); "
                                                      "default: when it first reached the intake")


class RequestOut(BaseModel):
    """A request as the ledger holds it."""

    request_id: str
    subject_id: str | None
    sample_id: str | None
    reason: str
    received_at: str
    content_sha256: str = Field(description="hash of the content (everything but the id)")
    state: Literal["pending", "claimed", "done", "quarantined"]
    batch_id: str | None = Field(description="the batch that claimed it, once claimed")
    note: str | None = Field(description="why it was quarantined or released, if it was")
    accepted_at: str = Field(description="when the ledger first accepted it")
    receipt: str | None = Field(description="path of its deletion receipt, once done")


class ManyOut(BaseModel):
    """The answer to a list: which ids were new, which were already accepted, and every request."""

    accepted: list[str]
    duplicates: list[str]
    requests: list[RequestOut]


@dataclass(frozen=True)
class Problem:
    """What is wrong with one item: where (``("body", 2, "reason")``), what, and of which kind."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


def _summary(problems: Sequence[Problem]) -> str:
    return "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems)


class InvalidRequests(RequestError):
    """A submission with bad items (HTTP 422); ``problems`` names each one. Nothing was stored."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(_summary(self.problems))


class ConflictingRequests(LedgerConflict):
    """Request ids accepted before with other content (HTTP 409); ``problems`` names each. Nothing was stored."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(_summary(self.problems))


@dataclass(frozen=True)
class Submitted:
    """The outcome of a stored submission: the requests in order, which ids were new, which were known."""

    requests: list[ErasureRequest]
    accepted: list[str]
    duplicates: list[str]


class RequestIntake:
    """Validate, store all-or-nothing, describe: the intake's behaviour over one ledger.

    Args:
        ledger: where requests are stored.
        max_items: most requests in one submission (``intake.max_items``).
        max_age_days: oldest ``received_at`` accepted (``intake.max_age_days``).
        source: recorded with every stored request (``http`` for the HTTP intake).
    """

    def __init__(self, ledger: Ledger, max_items: int, max_age_days: float, source: str = "http") -> None:
        self.ledger = ledger
        self.max_items = max_items
        self.max_age_days = max_age_days
        self.source = source

    def submit(self, items: Sequence[RequestIn], single: bool) -> Submitted:
        """Validate every item, then store them in one transaction.

        Args:
            items: the requests of one submission.
            single: the caller sent one object (problem locations then carry no item index).

        Raises:
            InvalidRequests: an empty or too long list, or any bad item (every one is listed).
            ConflictingRequests: an id was accepted before with other content.
        """
        if not items:
            raise InvalidRequests([Problem(("body",), "empty list: send at least one request")])
        if len(items) > self.max_items:
            raise InvalidRequests([Problem(("body",), f"{len(items)} requests in one POST; at most "
                                                      f"{self.max_items} (intake.max_items)")])
        requests, stamped = self.validate(items, single)
        accepted, duplicates = self.store(requests, stamped, single)
        return Submitted(requests, accepted, duplicates)

    def validate(self, items: Sequence[RequestIn], single: bool) -> tuple[list[ErasureRequest], list[bool]]:
        """Every item through ``make_request``; returns the requests and whether each was stamped with now.

        The same request twice in one list counts once; the same id twice with other content is a problem.
        """
        problems: list[Problem] = []
        requests: list[ErasureRequest] = []
        stamped: list[bool] = []
        first_seen: dict[str, tuple[int, ErasureRequest]] = {}
        for i, item in enumerate(items):
            prefix: tuple[str | int, ...] = ("body",) if single else ("body", i)
            try:
                req = make_request(item.request_id, item.reason, item.subject_id, item.sample_id, item.received_at,
                                   max_age_days=self.max_age_days)
            except RequestError as exc:
                problems.append(Problem((*prefix, _field_of(str(exc))), str(exc)))
                continue
            if req.request_id in first_seen:
                j, earlier = first_seen[req.request_id]
                if not _same(earlier, req, item.received_at is None):
                    problems.append(Problem((*prefix, "request_id"), f"request_id repeats item {j} with different content"))
                continue
            first_seen[req.request_id] = (i, req)
            requests.append(req)
            stamped.append(item.received_at is None)
        if problems:
            raise InvalidRequests(problems)
        return requests, stamped

    def store(self, requests: list[ErasureRequest], stamped: list[bool], single: bool) -> tuple[list[str], list[str]]:
        """All-or-nothing ledger write; returns (accepted ids, duplicate ids).

        Requests the intake stamped with its own time (no ``received_at``) that conflict only in that time
        are retries of an earlier request: they take the stored time and the write is tried once more.

        Raises:
            ConflictingRequests: an id was accepted before with other content (every such item is listed),
                or a concurrent writer changed the ledger between the two attempts.
        """
        try:
            result = self.ledger.add(requests, source=self.source)
            return result.accepted, result.duplicates
        except LedgerConflict:
            pass
        existing = {r.request_id: self.ledger.get(r.request_id) for r in requests}
        retried: list[ErasureRequest] = []
        conflicts: list[Problem] = []
        for i, (req, was_stamped) in enumerate(zip(requests, stamped)):
            row = existing[req.request_id]
            if row is None or row["content_sha256"] == req.content_sha256:
                retried.append(req)
            elif was_stamped and all(row[k] == getattr(req, k) for k in ("subject_id", "sample_id", "reason")):
                # the stored time was valid when it was accepted: a late retry must not be refused for its age
                retried.append(make_request(req.request_id, req.reason, req.subject_id, req.sample_id,
                                            row["received_at"], max_age_days=None))
            else:
                conflicts.append(Problem((*(("body",) if single else ("body", i)), "request_id"),
                                         f"request_id {req.request_id!r} was already accepted with different content",
                                         "conflict"))
        if conflicts:
            raise ConflictingRequests(conflicts)
        try:
            result = self.ledger.add(retried, source=self.source)
        except LedgerConflict as exc:
            raise ConflictingRequests([Problem(("body",), str(exc), "conflict")]) from None
        return result.accepted, result.duplicates

    def describe(self, request_id: str) -> dict[str, Any] | None:
        """The request's ledger row as :class:`RequestOut` shows it, or None."""
        row = self.ledger.get(request_id)
        if row is None:
            return None
        receipt = self.ledger.receipt_of(request_id) if row["state"] == "done" else None
        return {k: row[k] for k in RequestOut.model_fields if k in row} | {"receipt": receipt["path"] if receipt else None}


def _field_of(message: str) -> str:
    """The request field a ``RequestError`` message is about (messages start with the field's name)."""
    first = message.split(" ", 1)[0]
    if first in FIELDS:
        return first
    return "subject_id" if "subject_id" in message else "body"


def _same(a: ErasureRequest, b: ErasureRequest, ignore_time: bool) -> bool:
    if ignore_time:
        return (a.subject_id, a.sample_id, a.reason) == (b.subject_id, b.sample_id, b.reason)
    return a.content_sha256 == b.content_sha256
