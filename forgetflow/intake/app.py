"""The HTTP intake's FastAPI app, and the guard in front of it.

``forgetflow intake --host H --port P`` serves it with uvicorn (server.py). What a request may be, and how
retries and conflicts are told apart, is :mod:`forgetflow.ledger.intake`; this module maps it to HTTP.

Authentication: ``Authorization: Bearer <token>``, the token from ``$FORGETFLOW_INTAKE_TOKEN`` (compared in
constant time). Without a token configured the intake refuses to start. ``/health``, ``/docs`` and
``/openapi.json`` need no token. A token is never taken from the query string: the intake has no query
parameters at all, and a token sent there is refused like a missing one.

FastAPI reads and parses a body before it runs a route's dependencies, so a token check in a dependency
comes too late: a malformed body without a token was answered 422 (not 401), and a large chunked body was
read whole first. :class:`Guard` therefore wraps the app and, before FastAPI sees the request,

1. masks every value of the query string in place: uvicorn's access log prints the path and query from
   the same ASGI scope after the app answered, and a token sent as ``?token=...`` landed there in clear;
2. answers 401 to a request without the right token before one byte of its body is read;
3. reads the body as it arrives, chunked or not, counting bytes: past the limit it answers 413 and reads
   no further (the ``Content-Length`` check alone let a chunked body through).

After each write the intake queues the new ids on a :class:`~forgetflow.intake.notifier.Notifier` whose
sender is injected (``send_accepted``); the core knows nothing about where the notice goes.
"""

# no `from __future__ import annotations`: FastAPI resolves these annotations at runtime
import contextlib
import hmac
import json
import logging
from typing import Annotated, Any, AsyncIterator
from urllib.parse import parse_qsl, urlencode

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from forgetflow.errors import ForgetflowError
from forgetflow.intake.notifier import AcceptedSender, Notifier
from forgetflow.ledger import Ledger
from forgetflow.ledger.intake import (EXAMPLE, ConflictingRequests, InvalidRequests, ManyOut, RequestIn, RequestIntake,
                                      RequestOut)
from forgetflow.masking import MASK
from forgetflow.project import Project

log = logging.getLogger(__name__)

TOKEN_ENV = "FORGETFLOW_INTAKE_TOKEN"
MIN_TOKEN_LENGTH = 16
MAX_BYTES_PER_ITEM = 2048  # a request object is under 700 bytes of JSON even with 128-character ids
BODY_SLACK = 64 * 1024  # brackets, whitespace and a small request's headroom on top of the per-item bound
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
UNAUTHORISED = "missing or wrong bearer token"


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


def body_limit(max_items: int) -> int:
    """The most bytes a request body may have: ``intake.max_items`` requests of JSON, plus slack."""
    return max_items * MAX_BYTES_PER_ITEM + BODY_SLACK


def _bearer_matches(authorization: bytes | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>`` with the right token (constant-time comparison)."""
    scheme, _, given = (authorization or b"").strip().partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


def create_app(project: Project, token: str | None, ledger: Ledger | None = None,
               send_accepted: AcceptedSender | None = None) -> "Guard":
    """The intake app for a project, wrapped in its :class:`Guard`.

    Args:
        project: whose ledger and ``intake`` settings to use.
        token: the bearer token (checked by :func:`check_token`).
        ledger: the ledger to write to (default: the project's).
        send_accepted: called from a background thread with newly accepted ids (``forgetflow intake``
            injects the Prefect event sender); None = no notices.
    """
    token_bytes = check_token(token).encode()
    book = ledger or project.open_ledger()
    settings = project.params.intake
    intake = RequestIntake(book, settings.max_items, settings.max_age_days, source="http")
    notifier = Notifier(send_accepted) if send_accepted is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if notifier is not None:
            notifier.start()
        try:
            yield
        finally:
            if notifier is not None:
                notifier.close()

    app = FastAPI(
        title="forgetflow intake",
        version="1",
        summary="File erasure requests for a forgetflow project; follow them to their deletion receipts.",
        description=(
            "Bearer-token authentication (`Authorization: Bearer <token>`, the token from `FORGETFLOW_INTAKE_TOKEN`; "
            "never in the query string). POST is idempotent per `request_id`: a retry with the same content gets the "
            "same answer (200), the same id with other content gets 409 and changes nothing. A list is all-or-nothing."
        ),
        lifespan=lifespan,
    )
    app.state.intake = intake
    app.state.notifier = notifier
    bearer = HTTPBearer(auto_error=False, description=f"the token in ${TOKEN_ENV}")

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        # the guard has checked already; this declares the scheme in OpenAPI and holds if the app is served bare
        given = f"Bearer {credentials.credentials}".encode() if credentials is not None else None
        if not _bearer_matches(given, token_bytes):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=UNAUTHORISED, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(_body_errors(exc))})

    @app.exception_handler(InvalidRequests)
    async def _invalid_requests(_: Request, exc: InvalidRequests) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [p.as_dict() for p in exc.problems]})

    @app.exception_handler(ConflictingRequests)
    async def _conflict(_: Request, exc: ConflictingRequests) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": [p.as_dict() for p in exc.problems]})

    errors = {401: {"model": ErrorOut, "description": UNAUTHORISED},
              422: {"model": ErrorOut, "description": "invalid request(s): one error per bad field, nothing stored"}}

    @app.post("/requests", status_code=201, dependencies=[Depends(authorised)],
              response_model=RequestOut | ManyOut,
              responses={200: {"model": RequestOut | ManyOut, "description": "already accepted with the same content"},
                         201: {"description": "accepted (for a list: at least one new request)"},
                         409: {"model": ErrorOut, "description": "a request id was accepted before with other content"},
                         413: {"model": ErrorOut, "description": "body larger than intake.max_items requests"},
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
        submitted = intake.submit([body] if single else body, single)
        if notifier is not None:
            notifier.accepted(submitted.accepted)
        response.status_code = 201 if submitted.accepted else 200
        if single:
            return intake.describe(submitted.requests[0].request_id)
        return {"accepted": submitted.accepted, "duplicates": submitted.duplicates,
                "requests": [intake.describe(r.request_id) for r in submitted.requests]}

    @app.get("/requests/{request_id:path}/receipt", dependencies=[Depends(authorised)],
             responses={404: {"model": ErrorOut, "description": "no such request"},
                        409: {"model": ErrorOut, "description": "the request is not done yet"},
                        500: {"model": ErrorOut, "description": "the receipt cannot be read (the intake's log says why)"},
                        **errors})
    def get_receipt(request_id: str) -> dict[str, Any]:
        """The deletion receipt (hash-chained JSON) of a request once its batch is done."""
        row = book.get(request_id)
        if row is None:
            raise HTTPException(404, detail=f"no request {request_id!r}")
        if row["state"] != "done":
            raise HTTPException(409, detail=f"request {request_id!r} is {row['state']}: "
                                            "its receipt is issued when its deletion batch completes")
        receipt = book.receipt_of(request_id)
        if receipt is None:
            raise HTTPException(404, detail=f"request {request_id!r} is done but no receipt is recorded")
        path = project.root / receipt["path"]
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            # the detail (a server path, an errno) is for the operator, not for the caller
            log.error("receipt of request %r unreadable at %s: %s", request_id, path, exc)
            raise HTTPException(500, detail=f"the receipt of request {request_id!r} cannot be read; "
                                            "the intake's log has the detail") from None

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
        return {"status": "ok", "events": "on" if notifier is not None else "off"}

    return Guard(app, token_bytes, body_limit(settings.max_items))


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
        out.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", "value_error"))})
    return out


class Guard:
    """ASGI wrapper: masks the query string, checks the token, then reads and bounds the body (module docstring).

    Everything else (``openapi``, ``state``, routes) is the wrapped app's.
    """

    def __init__(self, app: FastAPI, token: bytes, limit: int) -> None:
        self.app = app
        self.token = token
        self.limit = limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("query_string"):
            # in place: uvicorn's access log reads this very scope when the response starts
            scope["query_string"] = masked_query(scope["query_string"])
        if scope["path"] not in OPEN_PATHS and not _bearer_matches(dict(scope["headers"]).get(b"authorization"), self.token):
            await JSONResponse(status_code=401, content={"detail": UNAUTHORISED},
                               headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the client to disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, scope: dict[str, Any], receive: Any, send: Any) -> bytes | None:
        """The whole body, or None when the request was answered (413) or the client went away."""
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send, f"body of {int(declared)} bytes")
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send, f"body of more than {self.limit} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope: dict[str, Any], receive: Any, send: Any, what: str) -> None:
        await JSONResponse(status_code=413, content={
            "detail": f"{what}; at most {self.limit} (intake.max_items requests)"},
            headers={"Connection": "close"})(scope, receive, send)


def masked_query(raw: bytes) -> bytes:
    """A query string with every value replaced by ``***`` (the names stay, for debugging)."""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    return urlencode([(name, MASK) for name, _ in pairs], safe="*").encode("latin-1")
