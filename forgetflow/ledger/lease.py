"""The batch lock as a lease: who holds it, whether that holder still lives, and the heartbeat that keeps it.

At most one batch (or oracle audit) runs per ledger. The ledger's single lock row names its holder and a
lease: ``expires_at`` is pushed forward by a background thread of the holding process every
``batch.heartbeat_seconds``; a lease past its expiry is stale, whatever host or process held it, and anyone
may recover the batch (``tasks/recovery.py``). Host and pid alone cannot say that: a pid is reused by
another process, and another host's pid means nothing here.

Besides the lease, a holder on the *same process table* (same boot of the same kernel, same pid namespace)
is checked at once: its pid gone, a zombie, or reused by a process that started at another time means the
holder died and its batch is recoverable without waiting for the expiry. That identity is
``boot_id|pid-namespace|pid|start-ticks`` from ``/proc`` (Linux); elsewhere only the lease decides.

A holder that finds it lost its lease (its renewal matched no row: someone recovered the batch, or it
could not renew for a whole lease) stops: :meth:`BatchLease.check` raises :class:`LeaseLost`, every step
boundary of the batch calls it, the heartbeat thread interrupts the main thread, and the batch's final
ledger transaction is fenced by the lease token (a holder without the current token commits nothing).
There is no fencing of the files a step writes: a process paused longer than its lease and then resumed
can finish the write it was in before it notices (docs/operations.md, "Crashes and leases").
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from forgetflow.errors import LeaseLost

log = logging.getLogger(__name__)

# (ledger URL, batch id) -> the lease this process holds on it (a batch, or an operator's recovery)
_HELD: dict[tuple[str, str], "BatchLease"] = {}
_HELD_LOCK = threading.Lock()
_BOUND = threading.local()  # the lease of the batch the current thread runs (see BatchLease.bind)


def owner_id() -> str:
    """host:pid of this process, for people reading the lock."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of a pid in this pid namespace, or None."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after the last ")"
    fields = text[text.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _space() -> str | None:
    """This process table's identity: kernel boot id and pid namespace (None off Linux)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot}|{namespace}" if boot else None


def process_identity(pid: int | None = None) -> str | None:
    """``boot_id|pid-namespace|pid|start-ticks`` of a process (default: this one), or None off Linux."""
    pid = os.getpid() if pid is None else pid
    space, stat = _space(), _stat(pid)
    if space is None or stat is None:
        return None
    return f"{space}|{pid}|{stat[1]}"


def holder_state(identity: str | None) -> str:
    """``dead``, ``alive`` or ``unknown`` (another host, container or boot: only the lease can tell)."""
    if not identity:
        return "unknown"
    space, _, rest = identity.rpartition("|")  # rest = start ticks
    space, _, pid = space.rpartition("|")
    if space != _space() or not pid.isdigit():
        return "unknown"
    stat = _stat(int(pid))
    if stat is None or stat[0] in ("Z", "X"):  # gone, or a zombie nobody reaped yet
        return "dead"
    return "alive" if stat[1] == rest else "dead"  # another start time: the pid was reused


def held(batch_id: str, scope: str = "") -> "BatchLease | None":
    """The lease this process holds on ``batch_id`` in the ledger ``scope`` (its URL), if any."""
    with _HELD_LOCK:
        return _HELD.get((scope, batch_id))


def interrupt_main() -> None:
    """The ``on_lost`` of a batch: interrupt the main thread (a ``KeyboardInterrupt`` there)."""
    import _thread

    _thread.interrupt_main()


def check_held() -> None:
    """Raise :class:`LeaseLost` if the batch this thread runs lost its lease (every step boundary calls it)."""
    lease = getattr(_BOUND, "lease", None)
    if lease is not None:
        lease.check()


class BatchLease:
    """The lease a process holds on the batch lock, renewed by a daemon thread until :meth:`stop`.

    Args:
        renew: ``renew(batch_id, token, lease_seconds) -> bool``; False means the lease is gone.
        batch_id: the batch (or audit) holding the lock.
        token: the lease token written with the lock row (a new one on every take-over).
        scope: the ledger's URL (leases of different ledgers never mix).
        lease_seconds: how long a renewal keeps the lease.
        heartbeat_seconds: time between renewals.
        on_lost: called once, from the heartbeat thread, when the lease is lost (batches pass
            ``_thread.interrupt_main``, so a batch stuck in a long step stops too); None: only
            :meth:`check` reports the loss.
    """

    def __init__(self, renew: Callable[[str, str, float], bool], batch_id: str, token: str, lease_seconds: float,
                 heartbeat_seconds: float, on_lost: Callable[[], None] | None = None, scope: str = "") -> None:
        self.batch_id = batch_id
        self.scope = scope
        self.token = token
        self.lease_seconds = float(lease_seconds)
        self.heartbeat_seconds = float(heartbeat_seconds)
        self._renew = renew
        self._on_lost = on_lost
        self._renewed = time.monotonic()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> str | None:
        """Why the lease was lost, or None while it is held (or after :meth:`stop`: the batch ended)."""
        if self._stop.is_set() and self._lost is None:
            return None
        if self._lost is None and time.monotonic() - self._renewed > self.lease_seconds:
            return f"not renewed for {self.lease_seconds:g} s (its expiry passed)"
        return self._lost

    def start(self) -> "BatchLease":
        """Register the lease in this process and start renewing it."""
        with _HELD_LOCK:
            _HELD[(self.scope, self.batch_id)] = self
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.batch_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (the lock row itself is removed by the ledger transaction that ends the batch)."""
        self._stop.set()
        with _HELD_LOCK:
            if _HELD.get((self.scope, self.batch_id)) is self:
                del _HELD[(self.scope, self.batch_id)]
        if getattr(_BOUND, "lease", None) is self:
            _BOUND.lease = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def bind(self) -> "BatchLease":
        """Make this the lease of the batch the current thread runs (:func:`check_held` checks it)."""
        _BOUND.lease = self
        return self

    def check(self) -> None:
        """Raise :class:`LeaseLost` when this lease is gone: the batch must stop writing."""
        why = self.lost
        if why is not None:
            raise LeaseLost(f"batch {self.batch_id} lost its lease on the batch lock ({why}); it stops here "
                            "and whoever recovered it cleans up")

    def renew_now(self) -> bool:
        """One renewal; False (and the lease marked lost) when the ledger no longer has it."""
        if self._renew(self.batch_id, self.token, self.lease_seconds):
            self._renewed = time.monotonic()
            return True
        self._lost = "another process recovered the batch (the lock no longer carries this lease's token)"
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                if not self.renew_now():
                    break
            except Exception as exc:  # noqa: BLE001 - a ledger hiccup: retry until the lease would expire
                log.warning("batch %s: lease renewal failed (%s); retrying", self.batch_id, exc)
                if self.lost is None:
                    continue
                self._lost = self.lost
                break
        if self._lost is not None and not self._stop.is_set():
            log.error("batch %s lost its lease: %s; stopping it", self.batch_id, self._lost)
            try:
                if self._on_lost is not None:
                    self._on_lost()
            finally:
                self._stop.set()
