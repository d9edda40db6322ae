"""Crashes: a batch SIGKILLed inside each step is recovered by the next plain batch (benchmarks/fault_injection.py
drives real ``forgetflow batch run`` processes against one Prefect server); SIGTERM ends a batch waiting for
the GPU; a batch that lost its lease stops without writing; slots of dead holders are given back.

Real parts throughout: the session's Prefect test server (its URL passed to every child process), MLflow,
DVC, GX and the SQLite ledger in temporary folders.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from benchmarks.fault_injection import KILL_STEPS, Drill
from forgetflow.gpu_slots import gpu_slot

ROLLED_FORWARD = ("purge", "receipts")  # past the commit point


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness sets PREFECT_API_URL"
    return url


@pytest.fixture(scope="module")
def drill(prefect_harness, tmp_path_factory) -> Drill:
    """One digits project for every crash drill of this module (each drill files its own requests)."""
    return Drill(tmp_path_factory.mktemp("drill") / "project", _api_url(), plain_in_process=True).setup()


@pytest.mark.slow
@pytest.mark.parametrize("step", KILL_STEPS)
def test_a_batch_killed_inside_a_step_is_recovered_by_the_next_batch(step, drill):
    before = len(drill.project.open_ledger().receipts())

    row = drill.drill(step)

    assert row["killed_rc"] == -signal.SIGKILL, row
    assert row["recovered"], row["problems"]
    assert len(drill.project.open_ledger().receipts()) == before + 2  # the killed batch's two requests, once each
    action = "rolled forward" if step in ROLLED_FORWARD else "rolled back"
    assert len(row["recovered_lines"]) == 1 and action in row["recovered_lines"][0], row["recovered_lines"]


@pytest.mark.slow
def test_a_served_batch_recovers_a_batch_killed_inside_a_served_run(drill):
    """The served flow (flows/serving.py) recovers in its wait for the lock, then runs its batch."""
    drill.file(2)
    code = ("import sys; from flows.serving import scheduled_batch; "
            "print(scheduled_batch(params_path=sys.argv[1])['status'])")
    env = drill.env(FORGETFLOW_KILL_AT="unlearn")
    params = str(drill.root / "params.yaml")
    killed = subprocess.run([sys.executable, "-c", code, params], cwd=drill.root, env=env, capture_output=True,
                            text=True, timeout=900)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    from flows.serving import scheduled_batch

    dead = drill.project.open_ledger().running_batch()["batch_id"]
    served = scheduled_batch(params_path=params)  # in this process: the same server, no interpreter start-up
    assert served["status"] == "done", served
    recovered = drill.project.open_ledger().batch(dead)
    assert recovered["state"] == "failed" and "recovered" in recovered["error"]  # by the wait for the lock
    assert drill.check() == []


@pytest.mark.slow
def test_batch_recover_cleans_up_a_killed_batch_without_running_one(drill):
    """`forgetflow batch recover` alone: the killed batch is rolled back, nothing else happens."""
    import json

    from typer.testing import CliRunner

    from forgetflow.cli import app
    from tasks import tracking

    project = drill.project
    ids = drill.file(2)
    versions_before = [v["version"] for v in tracking.versions(project)]
    champion = tracking.alias_version(project, tracking.CHAMPION)
    killed = drill.run(kill_at="promote")
    assert killed["rc"] == -signal.SIGKILL, killed["stderr"][-2000:]
    assert tracking.alias_version(project, tracking.CHAMPION) != champion  # the dead batch moved it

    out = CliRunner().invoke(app, ["--params", str(drill.root / "params.yaml"), "batch", "recover", "--json"])

    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert len(result["recovered"]) == 1 and "rolled back" in result["recovered"][0] and result["running"] is None
    book = project.open_ledger()
    assert {book.get(r)["state"] for r in ids} == {"pending"} and book.running_batch() is None
    assert tracking.alias_version(project, tracking.CHAMPION) == champion
    assert [v["version"] for v in tracking.versions(project)] == versions_before
    again = CliRunner().invoke(app, ["--params", str(drill.root / "params.yaml"), "batch", "recover"])
    assert again.exit_code == 0 and "no stale batch" in again.stdout


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _task_run_state(flow_run_id: str, name: str) -> str | None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)])))
    states = [r.state.type.value for r in runs if r.name.startswith(name) and r.state is not None]
    return states[-1] if states else None


def _batch_row(project):
    rows = project.open_ledger().batches(limit=1)
    return rows[0] if rows and rows[0]["state"] == "running" and rows[0].get("flow_run_id") else None


def _leak_prefect_gpu_slot() -> None:
    """What a batch killed inside a GPU task left with forgetflow before this fix: ``tag:gpu`` full, no lease."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu", concurrency_limit=1)
        client.update_global_concurrency_limit("tag:gpu", GlobalConcurrencyLimitUpdate(active_slots=1))


@pytest.mark.slow
def test_sigterm_ends_a_batch_that_waits_for_the_gpu_and_gives_its_requests_back(drill):
    """The user's report: a batch waiting for a GPU slot ignored SIGTERM for more than a minute."""
    from tasks.unlearn import gpu_slots_dir

    project = drill.project
    _leak_prefect_gpu_slot()
    ids = drill.file(2)
    with gpu_slot(gpu_slots_dir(project), project.params.batch.gpu_concurrency):  # the GPU is busy elsewhere
        proc = subprocess.Popen([sys.executable, "-m", "forgetflow.cli", "--params", str(drill.root / "params.yaml"),
                                 "batch", "run"], cwd=drill.root, env=drill.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            row = _wait_for(lambda: _batch_row(project), 600, "the batch to start")
            _wait_for(lambda: _task_run_state(row["flow_run_id"], "unlearn") == "RUNNING", 600,
                      "the unlearn task to wait for the GPU")
            time.sleep(2)
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            _, stderr = proc.communicate(timeout=120)
            ended = time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode != 0 and ended < 60, (ended, stderr[-2000:])
    book = project.open_ledger()
    assert {book.get(r)["state"] for r in ids} == {"pending"}
    assert book.running_batch() is None and book.batch(row["batch_id"])["state"] == "failed"
    assert not list((project.state_dir / "candidates").glob("*"))


@pytest.mark.slow
def test_a_batch_that_lost_its_lease_stops_without_writing(drill):
    """Frozen (SIGSTOP) past its lease inside unlearn, recovered meanwhile by another process, then resumed:
    it must notice and stop, leaving the recoverer's clean-up as it is."""
    from tasks import recovery, tracking

    project = drill.project
    ids = drill.file(2)
    versions_before = [v["version"] for v in tracking.versions(project)]
    proc = subprocess.Popen([sys.executable, "-m", "forgetflow.cli", "--params", str(drill.root / "params.yaml"),
                             "batch", "run"], cwd=drill.root, env=drill.env(FORGETFLOW_STOP_AT="unlearn"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _process_state(proc.pid) == "T", 600, "the batch to freeze inside unlearn")
        row = project.open_ledger().running_batch()
        lease_s = project.params.batch.lease_seconds
        time.sleep(lease_s + 1)
        recovered = recovery.recover(project)  # this process plays the operator on another host
        assert [r.batch_id for r in recovered] == [row["batch_id"]] and recovered[0].action == "rolled back"
        assert {project.open_ledger().get(r)["state"] for r in ids} == {"pending"}
        proc.send_signal(signal.SIGCONT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0 and "lost its lease" in stderr, stderr[-2000:]
    book = project.open_ledger()
    assert {book.get(r)["state"] for r in ids} == {"pending"}  # untouched by the resumed process
    assert [v["version"] for v in tracking.versions(project)] == versions_before
    assert book.running_batch() is None and "recovered" in book.batch(row["batch_id"])["error"]
    # the next batch takes every request left pending by this module's tests (and the leaked Prefect slot of
    # the SIGTERM test is no obstacle: its holder is gone); then everything is consistent
    result = drill.run()
    assert result["rc"] == 0 and result["result"]["status"] == "done", result["stderr"][-2000:]
    assert drill.check() == []


def _process_state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()[0]


def test_release_dead_slots_gives_back_a_leaked_prefect_slot(prefect_harness):
    from prefect.client.orchestration import get_client

    from tasks.recovery import release_dead_slots

    _leak_prefect_gpu_slot()
    note = release_dead_slots()
    assert note and "1 slot(s)" in note
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("tag:gpu").active_slots == 0
        client.delete_concurrency_limit_by_tag("gpu")
    assert release_dead_slots() is None
