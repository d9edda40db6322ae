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

This is the Prefect adapter of events, used by tasks, flows and commands; it holds no service. The HTTP
intake (forgetflow/intake/, which never imports Prefect) gets :func:`intake_sender` injected by
``forgetflow intake`` and calls it from its own background thread. Server URLs are logged masked
(``forgetflow.masking``): ``PREFECT_API_URL`` may carry credentials.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import Any, Callable, Sequence

from forgetflow.config import ServeParams
from forgetflow.ledger import Ledger
from forgetflow.ledger.backlog import Backlog, read_backlog
from forgetflow.masking import mask_text
from forgetflow.project import Project

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
                    ", ".join(sorted({e["event"] for e in events})), mask_text(server_url() or "-"), describe_error(exc))
        return False
    return True


def describe_error(exc: BaseException) -> str:
    """One line: the exception's type and first line (URL credentials masked)."""
    text = mask_text(str(exc).strip().splitlines()[0]) if str(exc).strip() else ""
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


def intake_sender(project: Project, ledger: Ledger) -> Callable[[Sequence[str]], bool] | None:
    """The HTTP intake's sender of ``forgetflow.request.accepted`` (injected by ``forgetflow intake``).

    Returns None when events are off (``serve.emit_events: false`` or no ``PREFECT_API_URL``); otherwise a
    function that sends one event for a burst of accepted ids, with the backlog read at sending time.
    """
    serve = project.params.serve
    if not serve.emit_events or server_url() is None:
        return None
    log.info("intake events go to %s", mask_text(server_url() or ""))

    def send_accepted(request_ids: Sequence[str]) -> bool:
        return send([accepted_event(serve, request_ids, "http", read_backlog(ledger))])

    return send_accepted
