"""The HTTP intake: upstream privacy systems file erasure requests over HTTP (webhook style).

``forgetflow intake --host H --port P`` serves this FastAPI app with uvicorn. The rules are the CLI's:
every request is validated by ``forgetflow.ledger.make_request``; a list is all-or-nothing (any bad item
rejects the whole list, with one error per bad item); the ledger write is one transaction.

Upstream systems retry, so every POST is idempotent per request id: the same id with the same content is
answered again (200, same body), the same id with other content is a conflict (409) and changes nothing.
A request sent without ``received_at`` is stamped with the time it first arrived; a retry without it is
recognised by its other fields, so a retry never turns into a conflict.

Authentication: ``Authorization: Bearer <token>``, the token from ``$FORGETFLOW_INTAKE_TOKEN`` (compared in
constant time). Without a token configured the intake refuses to start. ``/health``, ``/docs`` and
``/openapi.json`` need no token.

After each write the intake queues a ``forgetflow.request.accepted`` event (tasks/events.py); the event
goes out from a background thread, so neither a slow nor an absent Prefect server can fail or slow intake.
"""

# no `from __future__ import annotations`: FastAPI resolves these annotations at runtime
import contextlib
import hmac
import json
import logging
import os
import socket
from typing import Annotated, Any, AsyncIterator, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from forgetflow.errors import ForgetflowError, LedgerConflict, RequestError
from forgetflow.ledger import ErasureRequest, Ledger, make_request
from forgetflow.ledger.backlog import read_backlog
from forgetflow.ledger.reasons import REASONS
from forgetflow.project import Project
from tasks.events import Announcer

log = logging.getLogger(__name__)

TOKEN_ENV = "FORGETFLOW_INTAKE_TOKEN"
MIN_TOKEN_LENGTH = 16
MAX_BYTES_PER_ITEM = 2048  # a request object is under 700 bytes of JSON even with 128-character ids
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
                                                      "(no zone = UTC); default: when it first reached the intake")


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


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: list[ErrorItem] | str


def check_token(token: str | None) -> str:
    """The configured intake token; refuses (``ForgetflowError``) when it is missing or too short."""
    token = (token or "").strip()
    if not token:
        raise ForgetflowError(f"{TOKEN_ENV} is not set: the intake refuses to start without a bearer token "
                              "(e.g. export FORGETFLOW_INTAKE_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))'))")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ForgetflowError(f"{TOKEN_ENV} is too short ({len(token)} characters; use at least {MIN_TOKEN_LENGTH}, "
                              "e.g. secrets.token_urlsafe(32))")
    return token


def _field_of(message: str) -> str:
    """The request field a ``RequestError`` message is about (messages start with the field's name)."""
    first = message.split(" ", 1)[0]
    if first in FIELDS:
        return first
    return "subject_id" if "subject_id" in message else "body"


def _error(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


class Intake:
    """The intake's behaviour, independent of HTTP: validate, store all-or-nothing, describe."""

    def __init__(self, project: Project, ledger: Ledger, max_items: int) -> None:
        self.project = project
        self.ledger = ledger
        self.max_items = max_items

    def validate(self, items: list[RequestIn], single: bool) -> tuple[list[ErasureRequest], list[bool]]:
        """Every item through ``make_request``; raises ``RequestValidationError`` listing every bad item."""
        errors: list[dict[str, Any]] = []
        requests: list[ErasureRequest] = []
        stamped: list[bool] = []
        first_seen: dict[str, tuple[int, ErasureRequest]] = {}
        for i, item in enumerate(items):
            prefix: list[str | int] = ["body"] if single else ["body", i]
            try:
                req = make_request(item.request_id, item.reason, item.subject_id, item.sample_id, item.received_at)
            except RequestError as exc:
                errors.append(_error(prefix + [_field_of(str(exc))], str(exc), "value_error"))
                continue
            if req.request_id in first_seen:
                j, earlier = first_seen[req.request_id]
                if _same(earlier, req, item.received_at is None):
                    continue  # the same request twice in one list: accepted once
                errors.append(_error(prefix + ["request_id"], f"request_id repeats item {j} with different content",
                                     "value_error"))
                continue
            first_seen[req.request_id] = (i, req)
            requests.append(req)
            stamped.append(item.received_at is None)
        if errors:
            raise RequestValidationError(errors)
        return requests, stamped

    def store(self, requests: list[ErasureRequest], stamped: list[bool], single: bool) -> tuple[list[str], list[str]]:
        """All-or-nothing ledger write; returns (accepted ids, duplicate ids); 409 on any conflict.

        Requests the intake stamped with its own time (no ``received_at``) that conflict only in that time
        are retries of an earlier request: they take the stored time and the write is tried once more.
        """
        try:
            result = self.ledger.add(requests, source="http")
            return result.accepted, result.duplicates
        except LedgerConflict:
            pass
        existing = {r.request_id: self.ledger.get(r.request_id) for r in requests}
        retried, conflicts = [], []
        for i, (req, was_stamped) in enumerate(zip(requests, stamped)):
            row = existing[req.request_id]
            if row is None or row["content_sha256"] == req.content_sha256:
                retried.append(req)
            elif was_stamped and all(row[k] == getattr(req, k) for k in ("subject_id", "sample_id", "reason")):
                retried.append(make_request(req.request_id, req.reason, req.subject_id, req.sample_id, row["received_at"]))
            else:
                conflicts.append(_error((["body"] if single else ["body", i]) + ["request_id"],
                                        f"request_id {req.request_id!r} was already accepted with different content",
                                        "conflict"))
        if conflicts:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=conflicts)
        try:
            result = self.ledger.add(retried, source="http")
        except LedgerConflict as exc:  # a concurrent writer changed the picture between the two attempts
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
        return result.accepted, result.duplicates

    def describe(self, request_id: str) -> dict[str, Any] | None:
        """The request's ledger row as the API shows it, or None."""
        row = self.ledger.get(request_id)
        if row is None:
            return None
        receipt = self.ledger.receipt_of(request_id) if row["state"] == "done" else None
        return {k: row[k] for k in RequestOut.model_fields if k in row} | {"receipt": receipt["path"] if receipt else None}


def _body_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's errors with the union branch that does not apply removed from each location.

    The body is ``RequestIn | list[RequestIn]``; pydantic reports both branches (``body.RequestIn.reason``
    and ``body.list[RequestIn]``). An object is judged as one request, a list as a list.
    """
    branch = "list[RequestIn]" if isinstance(exc.body, list) else "RequestIn"
    out = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        if len(loc) > 1 and loc[0] == "body" and loc[1] in ("RequestIn", "list[RequestIn]"):
            if loc[1] != branch:
                continue
            loc = ["body", *loc[2:]]
        out.append(_error(loc, str(e.get("msg", "")), str(e.get("type", "value_error"))))
    return out


def _same(a: ErasureRequest, b: ErasureRequest, ignore_time: bool) -> bool:
    if ignore_time:
        return (a.subject_id, a.sample_id, a.reason) == (b.subject_id, b.sample_id, b.reason)
    return a.content_sha256 == b.content_sha256


def create_app(project: Project, token: str, ledger: Ledger | None = None, announce: bool = True) -> FastAPI:
    """The intake app for a project (``token`` is checked by :func:`check_token`)."""
    token_bytes = check_token(token).encode()
    book = ledger or project.open_ledger()
    intake = Intake(project, book, project.params.intake.max_items)
    serve = project.params.serve
    announcer = Announcer(serve, lambda: read_backlog(book), source="http")
    announcer.enabled = announcer.enabled and announce

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        announcer.start()
        if announcer.enabled:
            log.info("intake events go to %s", os.environ.get("PREFECT_API_URL"))
        try:
            yield
        finally:
            announcer.close()

    app = FastAPI(
        title="forgetflow intake",
        version="1",
        summary="File erasure requests for a forgetflow project; follow them to their deletion receipts.",
        description=(
            "Bearer-token authentication (`Authorization: Bearer <token>`, the token from `FORGETFLOW_INTAKE_TOKEN`). "
            "POST is idempotent per `request_id`: a retry with the same content gets the same answer (200), "
            "the same id with other content gets 409 and changes nothing. A list is all-or-nothing."
        ),
        lifespan=lifespan,
    )
    app.state.intake = intake
    app.state.announcer = announcer
    bearer = HTTPBearer(auto_error=False, description=f"the token in ${TOKEN_ENV}")

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, token_bytes):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(_body_errors(exc))})

    errors = {401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
              422: {"model": ErrorOut, "description": "invalid request(s): one error per bad field, nothing stored"}}

    @app.post("/requests", status_code=201, dependencies=[Depends(authorised)],
              response_model=RequestOut | ManyOut,
              responses={200: {"model": RequestOut | ManyOut, "description": "already accepted with the same content"},
                         201: {"description": "accepted (for a list: at least one new request)"},
                         409: {"model": ErrorOut, "description": "a request id was accepted before with other content"},
                         **errors})
    def post_requests(
        response: Response,
        body: Annotated[RequestIn | list[RequestIn], Body(openapi_examples={
            "one subject": {"value": EXAMPLE},
            "one sample": {"value": {"request_id": "qa-77", "sample_id": "s-000123", "reason": "mislabelled"}},
            "a list (all-or-nothing)": {"value": [EXAMPLE, {"request_id": "qa-78", "sample_id": "s-000124",
                                                           "reason": "poisoned", "received_at": "2026-11-20T10:00:00Z"}]},
        })],
    ) -> dict[str, Any]:
        """File one erasure request (an object) or several (a list, all-or-nothing)."""
        single = not isinstance(body, list)
        items = [body] if single else body
        if not items:
            raise RequestValidationError([_error(["body"], "empty list: send at least one request", "value_error")])
        if len(items) > intake.max_items:
            raise RequestValidationError([_error(["body"], f"{len(items)} requests in one POST; at most "
                                                           f"{intake.max_items} (intake.max_items)", "value_error")])
        requests, stamped = intake.validate(items, single)
        accepted, duplicates = intake.store(requests, stamped, single)
        announcer.accepted(accepted)
        response.status_code = 201 if accepted else 200
        if single:
            return intake.describe(requests[0].request_id)
        return {"accepted": accepted, "duplicates": duplicates,
                "requests": [intake.describe(r.request_id) for r in requests]}

    @app.get("/requests/{request_id:path}/receipt", dependencies=[Depends(authorised)],
             responses={404: {"model": ErrorOut, "description": "no such request"},
                        409: {"model": ErrorOut, "description": "the request is not done yet"}, **errors})
    def get_receipt(request_id: str) -> dict[str, Any]:
        """The deletion receipt (hash-chained JSON) of a request once its batch is done."""
        row = intake.ledger.get(request_id)
        if row is None:
            raise HTTPException(404, detail=f"no request {request_id!r}")
        if row["state"] != "done":
            raise HTTPException(409, detail=f"request {request_id!r} is {row['state']}: "
                                            "its receipt is issued when its deletion batch completes")
        receipt = intake.ledger.receipt_of(request_id)
        if receipt is None:
            raise HTTPException(404, detail=f"request {request_id!r} is done but no receipt is recorded")
        path = project.root / receipt["path"]
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HTTPException(500, detail=f"receipt {receipt['path']} unreadable: {exc}") from None

    @app.get("/requests/{request_id:path}", response_model=RequestOut, dependencies=[Depends(authorised)],
             responses={404: {"model": ErrorOut, "description": "no such request"}, **errors})
    def get_request(request_id: str) -> dict[str, Any]:
        """A request's state: pending, claimed (in a running batch), done (receipt issued) or quarantined."""
        found = intake.describe(request_id)
        if found is None:
            raise HTTPException(404, detail=f"no request {request_id!r}")
        return found

    @app.get("/health", responses={503: {"description": "the ledger is unreachable"}})
    def health() -> dict[str, Any]:
        """Liveness and ledger reachability (no token needed)."""
        try:
            book.running_batch()
        except Exception as exc:  # noqa: BLE001 - report, don't crash the probe
            raise HTTPException(503, detail=f"ledger unreachable: {type(exc).__name__}") from None
        return {"status": "ok", "events": "on" if announcer.enabled else "off"}

    return BodyLimit(app, intake.max_items * MAX_BYTES_PER_ITEM + 64 * 1024)  # type: ignore[return-value]


class BodyLimit:
    """ASGI wrapper: a POST whose declared body exceeds ``limit`` bytes gets 413 before anything is read.

    ``intake.max_items`` bounds a list only after it is parsed; this bounds the bytes a client can make the
    intake read and parse. Everything else (``openapi``, ``state``, routes) is the wrapped app's.
    """

    def __init__(self, app: FastAPI, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                response = JSONResponse(status_code=413, content={
                    "detail": f"body of {int(length)} bytes; at most {self.limit} (intake.max_items requests)"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def app_from_environment() -> FastAPI:
    """The uvicorn factory of each worker process: the project from ``$FORGETFLOW_PARAMS`` (+ overrides)."""
    from forgetflow import runtime_env

    overrides = json.loads(os.environ.get("FORGETFLOW_INTAKE_OVERRIDES") or "{}")
    project = Project.load(os.environ["FORGETFLOW_PARAMS"], overrides)
    runtime_env.apply(project)
    return create_app(project, os.environ.get(TOKEN_ENV))


def serve_http(project: Project, host: str, port: int, token: str | None, workers: int = 1,
               overrides: dict[str, Any] | None = None, log_level: str = "info") -> None:
    """Run the intake with uvicorn until interrupted; ``workers`` > 1 = that many processes on one port."""
    import uvicorn

    if workers <= 1:
        uvicorn.run(create_app(project, token or ""), host=host, port=port, log_level=log_level, server_header=False)
        return
    from uvicorn.supervisors import Multiprocess

    check_token(token)
    # each worker process builds its own app (and ledger connection pool) from the same project
    os.environ["FORGETFLOW_PARAMS"] = str(project.params_path)
    os.environ["FORGETFLOW_INTAKE_OVERRIDES"] = json.dumps(overrides or {})
    config = uvicorn.Config("tasks.intake:app_from_environment", factory=True, workers=workers, host=host, port=port,
                            log_level=log_level, server_header=False)
    sock = _listening_socket(host, port)
    logging.getLogger("uvicorn.error").info("intake on http://%s:%d with %d worker processes", host, port, workers)
    Multiprocess(config, sockets=[sock]).run()


def _listening_socket(host: str, port: int) -> socket.socket:
    """The shared listening socket of the worker processes.

    Created with ``proto=IPPROTO_TCP``, unlike uvicorn's own (proto 0): asyncio sets TCP_NODELAY only on
    connections accepted from a socket whose proto is TCP. Without it every response waits for Nagle's
    algorithm and the client's delayed ACK: measured here, 2 workers answered 74 POSTs/s against 230 for one.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ForgetflowError(f"intake: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(True)
    return sock
