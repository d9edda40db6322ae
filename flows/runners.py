"""Task runners for the fan-out flows (benchmark cells and their oracles, reference models), chosen by params.yaml
``runner``; command-line flags override it for one run (:func:`override`).

``runner.kind: local`` runs tasks in threads of the flow's own process (``max_workers: 1`` = one at a time,
so that measured wall times are not shared with other tasks). ``runner.kind: dask`` hands them to a Dask
cluster through prefect-dask: ``runner.address: tcp://scheduler:8786`` for an existing cluster, or
``address: null`` for a ``distributed.LocalCluster`` of worker *processes* started for the flow run and
stopped after it (dashboard off, nothing listens beyond loopback).

Dask workers run tasks in other processes, and each of them talks to the Prefect API itself. With a real
server (``prefect server start``) they all report to it. Without ``PREFECT_API_URL`` in their environment
each worker starts its own temporary Prefect server (slow, and racing on one SQLite file), so
:func:`task_runner` puts the API URL of the current settings into the environment that local workers
inherit, and logs a warning when there is none. Workers of a remote cluster need ``PREFECT_API_URL`` in
their own environment (see docs/scale-out.md).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from forgetflow.config import Params

log = logging.getLogger(__name__)


def task_runner(params: Params) -> Any:
    """The Prefect task runner that ``params.runner`` names: ``ThreadPoolTaskRunner`` or ``DaskTaskRunner``."""
    settings = params.runner
    if settings.kind == "local":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings.max_workers)
    from prefect_dask import DaskTaskRunner

    if settings.address:
        return DaskTaskRunner(address=settings.address)
    _share_api_with_workers()
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": settings.n_workers,
                                          "threads_per_worker": settings.threads_per_worker,
                                          "processes": True, "dashboard_address": None, "host": "127.0.0.1"})


def override(params: Params, workers: int | None = None, dask: str | None = None) -> Params:
    """``params`` with its ``runner`` section overridden by command-line flags (None = keep params.yaml's).

    ``dask`` (a scheduler address) selects a Dask runner on that cluster; ``workers`` alone selects local
    threads (``forgetflow bench --workers N``).
    """
    if dask:
        update = {"kind": "dask", "address": dask}
    elif workers is not None:
        update = {"kind": "local", "max_workers": workers}
    else:
        return params
    from forgetflow.config import RunnerParams

    runner = RunnerParams.model_validate({**params.runner.model_dump(), **update})
    return params.model_copy(update={"runner": runner})


def describe(params: Params) -> str:
    """A short label of the runner, recorded next to benchmark results (timings depend on it)."""
    r = params.runner
    if r.kind == "local":
        return f"local threads:{r.max_workers}"
    return f"dask {r.address}" if r.address else f"dask LocalCluster {r.n_workers}x{r.threads_per_worker}"


def _share_api_with_workers() -> None:
    """Local Dask workers inherit the environment: make sure it names the API this process uses."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if url:
        os.environ["PREFECT_API_URL"] = url
    else:
        log.warning("runner.kind is dask but no Prefect API is configured: every Dask worker will start its own "
                    "temporary Prefect server; run `prefect server start` and set PREFECT_API_URL")
