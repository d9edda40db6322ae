"""Prefect events: what request intake and the backlog check tell the Prefect server.

The only module that emits events. Two kinds, both labelled with the project (``serve.name``) and with
whether a batch is due by the backlog rule (forgetflow.ledger.backlog):

- ``forgetflow.request.accepted``: after intake stored new requests (CLI ``request add/import``, HTTP
  intake). Resource ``forgetflow.request.<id>`` (one request) or ``forgetflow.requests.<uuid>`` (several);
  payload: the ids (first 100), their number, the source and the backlog (pending count, oldest age, due).
- ``forgetflow.backlog.due``: from the periodic backlog check, when a batch is due and none is running
  (the oldest request crossed T hours, or an earlier event was lost or ignored during the cooldown).

The triggered-batch deployment (flows/deployments.py) reacts to either, when its label
``forgetflow.batch-due`` is ``true``. Sending never raises: the ledger write has already happened, a lost
event is logged, and the next backlog check emits the due event again. Events go out only when a Prefect
server is configured (``PREFECT_API_URL`` in the environment); never to a temporary ephemeral server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from typing import Any, Callable, Sequence

from forgetflow.config import ServeParams
from forgetflow.ledger.backlog import Backlog

log = logging.getLogger(__name__)

ACCEPTED = "forgetflow.request.accepted"
DUE = "forgetflow.backlog.due"
PROJECT_LABEL = "forgetflow.project"
DUE_LABEL = "forgetflow.batch-due"
SEND_TIMEOUT_S = 10.0
MAX_IDS_IN_PAYLOAD = 100


def server_url() -> str | None:
    """The Prefect API events go to (``PREFECT_API_URL``), or None: then nothing is emitted."""
    return os.environ.get("PREFECT_API_URL") or None


def accepted_event(serve: ServeParams, request_ids: Sequence[str], source: str, backlog: Backlog) -> dict[str, Any]:
    """The ``forgetflow.request.accepted`` event (as keyword arguments of ``prefect.events.Event``)."""
    state = backlog.as_payload(serve.trigger_pending, serve.trigger_oldest_hours)
    one = len(request_ids) == 1
    resource_id = f"forgetflow.request.{request_ids[0]}" if one else f"forgetflow.requests.{uuid.uuid4().hex}"
    return {
        "event": ACCEPTED,
        "resource": {"prefect.resource.id": resource_id,
                     "prefect.resource.name": request_ids[0] if one else f"{len(request_ids)} requests",
                     PROJECT_LABEL: serve.name, DUE_LABEL: "true" if state["due"] else "false"},
        "payload": {"request_ids": list(request_ids[:MAX_IDS_IN_PAYLOAD]), "accepted": len(request_ids),
                    "source": source, **state},
    }


def due_event(serve: ServeParams, backlog: Backlog) -> dict[str, Any]:
    """The ``forgetflow.backlog.due`` event of the periodic backlog check."""
    return {
        "event": DUE,
        "resource": {"prefect.resource.id": f"forgetflow.backlog.{serve.name}", "prefect.resource.name": serve.name,
                     PROJECT_LABEL: serve.name, DUE_LABEL: "true"},
        "payload": backlog.as_payload(serve.trigger_pending, serve.trigger_oldest_hours),
    }


def emit(events: Sequence[dict[str, Any]]) -> None:
    """Send events to the Prefect server now and wait for its acknowledgement; raises when that fails."""
    if server_url() is None:
        raise ConnectionError("PREFECT_API_URL is not set")
    if events:
        asyncio.run(asyncio.wait_for(_send(events), SEND_TIMEOUT_S))


def send(events: Sequence[dict[str, Any]]) -> bool:
    """:func:`emit`, but a failure is logged (one warning) and returns False instead of raising."""
    try:
        emit(events)
    except Exception as exc:  # noqa: BLE001 - the requests are stored; a lost event must never fail intake
        log.warning("could not emit %s to %s (%s); the backlog check will catch up",
                    ", ".join(sorted({e["event"] for e in events})), server_url(), describe_error(exc))
        return False
    return True


def describe_error(exc: BaseException) -> str:
    """One line: the exception's type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _send(events: Sequence[dict[str, Any]]) -> None:
    from prefect.events import Event, get_events_client

    # the client logs its own connection warning; ours (one line, with what happens next) replaces it
    client_log = logging.getLogger("prefect.events.clients")
    level = client_log.level
    client_log.setLevel(logging.ERROR)
    try:
        # checkpoint_every=1: the client pings after each event, so returning means the server has it
        async with get_events_client(reconnection_attempts=1, checkpoint_every=1) as client:
            for event in events:
                await client.emit(Event(**event))
    finally:
        client_log.setLevel(level)


def announce_accepted(serve: ServeParams, request_ids: Sequence[str], source: str, backlog: Backlog) -> bool:
    """Emit ``forgetflow.request.accepted`` for newly stored requests (no-op for none, or when disabled)."""
    if not request_ids or not serve.emit_events or server_url() is None:
        return False
    return send([accepted_event(serve, request_ids, source, backlog)])


def announce_due(serve: ServeParams, backlog: Backlog) -> bool:
    """Emit ``forgetflow.backlog.due``."""
    return send([due_event(serve, backlog)])


class Announcer:
    """Emits intake events from a background thread, one event per burst of accepted requests.

    The HTTP intake calls :meth:`accepted` after each ledger write and answers at once; the thread reads
    the backlog (``read_backlog``) and sends one event for everything accepted since its last send, so
    a thousand requests a second cost a handful of events, and a slow or absent Prefect server never
    slows intake down.
    """

    def __init__(self, serve: ServeParams, read_backlog: Callable[[], Backlog], source: str = "http") -> None:
        self.serve = serve
        self.read_backlog = read_backlog
        self.source = source
        self.sent = 0
        self.failed = 0
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="forgetflow-events", daemon=True)
        self.enabled = serve.emit_events and server_url() is not None

    def start(self) -> "Announcer":
        if self.enabled:
            self._thread.start()
        return self

    def accepted(self, request_ids: Sequence[str]) -> None:
        """Queue newly accepted ids for the next event (never blocks on the network)."""
        if not self.enabled or not request_ids:
            return
        with self._lock:
            self._ids.extend(request_ids)
        self._wake.set()

    def close(self, timeout: float = SEND_TIMEOUT_S + 2) -> None:
        """Send what is queued, then stop the thread."""
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                ids, self._ids = self._ids, []
            if ids:
                try:
                    ok = send([accepted_event(self.serve, ids, self.source, self.read_backlog())])
                except Exception as exc:  # noqa: BLE001 - e.g. the ledger is briefly unavailable
                    log.warning("could not read the backlog for an event (%s); the backlog check will catch up", exc)
                    ok = False
                self.sent += ok
                self.failed += not ok
            if self._stop.is_set():
                with self._lock:
                    if not self._ids:
                        return
                self._wake.set()  # ids arrived while sending: one more round before stopping
