"""flows/runners.py against real servers: a flow with mapped tasks on a local Dask cluster of worker
processes, reporting to a real `prefect server start` (on PostgreSQL). Workers must share the flow's API
(docs/scale-out.md: otherwise each worker starts a temporary server of its own): the test checks that every
task run reached that server from a worker process."""

from __future__ import annotations

import os

import pytest

from forgetflow.config import Params
from flows import runners
from tests.servers import dask_flows

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_local_kind_is_a_thread_pool():
    from prefect.task_runners import ThreadPoolTaskRunner

    runner = runners.task_runner(Params())
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1
    assert runners.describe(Params()) == "local threads:1"


def _task_runs(api_url: str, flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        assert str(client.api_url).rstrip("/") == api_url.rstrip("/")
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def _run(params: Params):
    state = dask_flows.fanout.with_options(task_runner=runners.task_runner(params))(8, return_state=True)
    return state.state_details.flow_run_id, state.result()


def test_mapped_tasks_run_on_dask_worker_processes_against_the_server(prefect_server_pg, monkeypatch):
    from distributed import Client, LocalCluster
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server_pg)  # what the worker processes inherit
    with temporary_settings({PREFECT_API_URL: prefect_server_pg}):
        # an existing cluster, by address (what `dask scheduler` + `dask worker` give on other machines)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                          host="127.0.0.1") as cluster, Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
            params = Params.model_validate({"runner": {"kind": "dask", "address": cluster.scheduler_address}})
            assert runners.describe(params) == f"dask {cluster.scheduler_address}"
            flow_run_id, rows = _run(params)
        assert [r["square"] for r in rows] == [i * i for i in range(8)]
        used = {r["pid"] for r in rows}
        assert used <= worker_pids and len(used) == 2 and os.getpid() not in used
        runs = _task_runs(prefect_server_pg, flow_run_id)
        assert len(runs) == 8 and {r.state.type.value for r in runs} == {"COMPLETED"}

        # address null: the runner starts (and stops) a LocalCluster of its own for the flow run
        params = Params.model_validate({"runner": {"kind": "dask", "n_workers": 2}})
        flow_run_id, rows = _run(params)
        used = {r["pid"] for r in rows}
        assert len(used) == 2 and os.getpid() not in used
        assert len(_task_runs(prefect_server_pg, flow_run_id)) == 8
