"""A tiny flow with mapped tasks for the Dask runner test (importable by the Dask worker processes)."""

from __future__ import annotations

import os
import time

from prefect import flow, task


@task(name="probe")
def probe(i: int) -> dict:
    time.sleep(0.3)  # long enough that both workers get tasks
    return {"i": i, "square": i * i, "pid": os.getpid()}


@flow(name="fanout-probe")
def fanout(n: int = 8) -> list[dict]:
    return probe.map(range(n)).result()
