"""Serving the HTTP intake with uvicorn: one process, or several processes sharing one listening socket.

The command that starts the server (``forgetflow intake``) injects what happens after a write as an
``events`` factory ``(project, ledger) -> sender | None``. With several workers each process builds its
own app (and ledger connection pool), so the factory travels to them by its import path
(``module:function``, the way uvicorn names the app factory itself) and is imported there.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import socket
from typing import Any, Callable

from forgetflow import runtime_env
from forgetflow.errors import ForgetflowError
from forgetflow.intake.app import TOKEN_ENV, Guard, check_token, create_app
from forgetflow.intake.notifier import AcceptedSender
from forgetflow.ledger import Ledger
from forgetflow.project import Project

EventsFactory = Callable[[Project, Ledger], AcceptedSender | None]

PARAMS_ENV = "FORGETFLOW_PARAMS"
OVERRIDES_ENV = "FORGETFLOW_INTAKE_OVERRIDES"
EVENTS_ENV = "FORGETFLOW_INTAKE_EVENTS"


def build_app(project: Project, token: str | None, events: EventsFactory | None = None) -> Guard:
    """The guarded intake app over the project's ledger, with the sender ``events`` makes (if any)."""
    book = project.open_ledger()
    return create_app(project, token, book, events(project, book) if events is not None else None)


def app_from_environment() -> Guard:
    """The uvicorn factory of each worker process: project, overrides and events factory from the environment."""
    overrides = json.loads(os.environ.get(OVERRIDES_ENV) or "{}")
    project = Project.load(os.environ[PARAMS_ENV], overrides)
    runtime_env.apply(project)
    spec = os.environ.get(EVENTS_ENV)
    return build_app(project, os.environ.get(TOKEN_ENV), _import(spec) if spec else None)


def serve_http(project: Project, host: str, port: int, token: str | None, workers: int = 1,
               overrides: dict[str, Any] | None = None, log_level: str = "info",
               events: EventsFactory | None = None) -> None:
    """Run the intake with uvicorn until interrupted.

    Args:
        project: the project (already loaded with ``overrides``).
        host: address to listen on.
        port: port to listen on.
        token: the bearer token (refused when missing or short).
        workers: more than 1 = that many processes on one port.
        overrides: the ``--set`` overrides, handed to worker processes.
        log_level: uvicorn's log level.
        events: factory of the sender of accepted ids; a module-level function (workers import it by name).
    """
    import uvicorn

    check_token(token)
    if workers <= 1:
        uvicorn.run(build_app(project, token, events), host=host, port=port, log_level=log_level, server_header=False)
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[PARAMS_ENV] = str(project.params_path)
    os.environ[OVERRIDES_ENV] = json.dumps(overrides or {})
    if events is not None:
        os.environ[EVENTS_ENV] = f"{events.__module__}:{events.__qualname__}"
    config = uvicorn.Config(f"{__name__}:app_from_environment", factory=True, workers=workers, host=host, port=port,
                            log_level=log_level, server_header=False)
    sock = _listening_socket(host, port)
    logging.getLogger("uvicorn.error").info("intake on http://%s:%d with %d worker processes", host, port, workers)
    Multiprocess(config, sockets=[sock]).run()


def _import(spec: str) -> EventsFactory:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


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
