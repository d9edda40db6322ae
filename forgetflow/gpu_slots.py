"""GPU slots: at most ``batch.gpu_concurrency`` GPU tasks at once, held by locks that die with their holder.

Each slot is a file ``slot-<i>.lock`` in ``batch.gpu_slots_dir`` (default ``state/locks/gpu``), held with an
exclusive ``flock``. The kernel drops the lock when its holder exits, however it exits (``kill -9`` too),
so a dead process never keeps a slot and nothing has to release it afterwards.

Why not Prefect's tag concurrency limit (``tag:gpu``), which forgetflow used before: in Prefect 3.8.8 a tag
limit is a global concurrency limit named ``tag:<tag>`` whose slot count lives in the database while the
leases that would give a dead holder's slot back live in the *server's memory*
(``server.concurrency.lease_storage`` defaults to the in-memory store) and are revoked by the server's
``repossessor`` service, which an ephemeral server (no ``PREFECT_API_URL``: every CLI batch) never runs.
A batch killed while it held the slot therefore left ``active_slots = 1`` behind for good, and every later
batch waited for it forever, in a wait that SIGTERM did not end. A file lock needs no server, frees itself,
and its wait below is a plain sleep loop that a signal interrupts.

A waiter polls the slots every ``POLL_SECONDS`` (a blocking ``flock`` would not be interruptible by the
signal handlers that turn SIGTERM and Ctrl-C into exceptions). Needs ``fcntl`` (Linux, macOS). The files
are on the machine that runs the tasks: slots serialise the GPUs of one host, which is what a GPU is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


@contextlib.contextmanager
def gpu_slot(folder: Path, slots: int, on_wait: Callable[[], None] | None = None,
             poll_seconds: float = POLL_SECONDS) -> Iterator[int]:
    """Hold one of ``slots`` GPU slots in ``folder`` for the ``with`` block; yields the slot's number.

    Args:
        folder: where the slot lock files live (created if missing).
        slots: how many slots exist (``batch.gpu_concurrency``).
        on_wait: called before every wait (e.g. to check the batch still holds its lease).
        poll_seconds: time between attempts while every slot is taken.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for number in range(slots):
            fd = os.open(folder / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for people reading the folder
                yield number
            finally:
                os.close(fd)  # closing the last descriptor releases the lock
            return
        if not waited:
            log.info("every GPU slot in %s is taken (%d); waiting", folder, slots)
            waited = True
        if on_wait is not None:
            on_wait()
        time.sleep(poll_seconds)


def holders(folder: Path, slots: int) -> list[int | None]:
    """The pid written by each slot's holder, None for a free slot (a probe: takes and drops free slots)."""
    import fcntl

    out: list[int | None] = []
    for number in range(slots):
        path = Path(folder) / f"slot-{number}.lock"
        if not path.exists():
            out.append(None)
            continue
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text().strip()
            out.append(int(text) if text.isdigit() else -1)
        else:
            out.append(None)
        finally:
            os.close(fd)
    return out
