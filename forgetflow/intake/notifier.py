"""Accepted request ids leave the HTTP intake from a background thread, one call per burst.

The intake answers as soon as the ledger write is committed; what is sent afterwards (a Prefect event, in
``forgetflow intake``) is a courtesy that must neither fail nor slow intake. So the request handler only
queues ids here, and a thread hands everything queued since its last call to the injected ``send``: a
thousand requests a second cost a handful of calls, and a slow or absent receiver slows nothing down.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

from forgetflow.masking import mask_text

log = logging.getLogger(__name__)

AcceptedSender = Callable[[Sequence[str]], bool]
"""Sends one notice for newly accepted request ids; returns False (or raises) when it could not."""

CLOSE_TIMEOUT_S = 12.0


class Notifier:
    """Calls ``send`` from a background thread with the ids queued since the last call."""

    def __init__(self, send: AcceptedSender) -> None:
        self.send = send
        self.sent = 0
        self.failed = 0
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="forgetflow-intake-notifier", daemon=True)

    def start(self) -> "Notifier":
        self._thread.start()
        return self

    def accepted(self, request_ids: Sequence[str]) -> None:
        """Queue newly accepted ids for the next call (never blocks on the receiver)."""
        if not request_ids:
            return
        with self._lock:
            self._ids.extend(request_ids)
        self._wake.set()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
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
                    ok = bool(self.send(ids))
                except Exception as exc:  # noqa: BLE001 - the requests are stored; a lost notice must never fail intake
                    log.warning("could not send the notice of %d accepted request(s) (%s: %s); the backlog check "
                                "will catch up", len(ids), type(exc).__name__, mask_text(str(exc)))
                    ok = False
                self.sent += ok
                self.failed += not ok
            if self._stop.is_set():
                with self._lock:
                    if not self._ids:
                        return
                self._wake.set()  # ids arrived while sending: one more round before stopping
