"""Serving end to end on real servers: `prefect server start`, `forgetflow serve` and `forgetflow intake`.

Requests posted over HTTP make N pending; intake emits forgetflow.request.accepted with the batch-due label;
the triggered-batch deployment's trigger fires; the served process runs the deletion batch; the requests
reach `done` and their receipts are served. Bounded: every wait has a deadline and a message.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from forgetflow.data import DatasetVersion
from forgetflow.ledger import make_request
from forgetflow.project import Project
from tests.conftest import make_project_dir
from tests.serving.conftest import TOKEN, forgetflow_cmd, free_port, quiet_env

DEADLINE_S = 420
SERVE_PARAMS = """
serve:
  name: live-test
  schedule_cron: null
  check_cron: null
  trigger_pending: 2
  trigger_oldest_hours: 1000
  review_window_minutes: 0
  trigger_cooldown_minutes: 0
  wait_for_batch_minutes: 5
"""


def _wait(what: str, check, timeout: float, logs=(), interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n" + "\n".join(c.tail() for c in logs))


def _api(url: str, path: str, body: dict | None = None) -> Any:
    return httpx.post(f"{url}{path}", json=body or {}, timeout=10).json()


@pytest.mark.slow
def test_posted_requests_trigger_a_served_batch(digits_project, prefect_server, start_child):
    project = digits_project
    with (project.root / "params.yaml").open("a") as fh:
        fh.write(SERVE_PARAMS)
    version = DatasetVersion.load(project.version_dir)
    subjects = version.subjects()[:2]
    env = quiet_env(PREFECT_API_URL=prefect_server, PREFECT_RUNNER_POLL_FREQUENCY="2",
                    PREFECT_LOGGING_LEVEL="INFO", FORGETFLOW_INTAKE_TOKEN=TOKEN)

    served = start_child("forgetflow serve", forgetflow_cmd("serve"), project.root, env)
    port = free_port()
    intake = start_child("forgetflow intake", forgetflow_cmd("intake", "--host", "127.0.0.1", "--port", str(port)),
                         project.root, env)
    base = f"http://127.0.0.1:{port}"
    intake.wait_http(f"{base}/health", timeout=120)
    assert httpx.get(f"{base}/health").json()["events"] == "on"

    # the served deployment and its trigger (an automation) are registered before anything is posted
    def registered():
        deployments = [d["name"] for d in _api(prefect_server, "/deployments/filter")]
        automations = [a["name"] for a in _api(prefect_server, "/automations/filter")]
        return "live-test" in deployments and any("live-test" in a for a in automations)

    _wait("forgetflow serve to register the triggered deployment", registered, 180, [served])

    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = httpx.post(f"{base}/requests", headers=auth, timeout=30,
                       json={"request_id": "live-1", "subject_id": subjects[0], "reason": "privacy"})
    assert first.status_code == 201, first.text
    assert first.json()["state"] == "pending"
    # one pending request is below N=2: no batch yet; a retry is idempotent and changes nothing
    retry = httpx.post(f"{base}/requests", headers=auth, timeout=30,
                       json={"request_id": "live-1", "subject_id": subjects[0], "reason": "privacy"})
    assert retry.status_code == 200 and retry.json() == first.json()
    second = httpx.post(f"{base}/requests", headers=auth, timeout=30,
                        json=[{"request_id": "live-2", "subject_id": subjects[1], "reason": "privacy"}])
    assert second.status_code == 201, second.text

    def both_done():
        states = [httpx.get(f"{base}/requests/{rid}", headers=auth, timeout=10).json()["state"]
                  for rid in ("live-1", "live-2")]
        assert "quarantined" not in states, states
        return states == ["done", "done"]

    _wait("the triggered batch to finish both requests", both_done, DEADLINE_S, [served, intake], interval=2.0)

    # the triggered run (which finishes its report after the requests are done) completes, naming its event
    flows = {f["id"]: f["name"] for f in _api(prefect_server, "/flows/filter")}

    def completed_runs():
        runs = _api(prefect_server, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}})
        names = [flows.get(r["flow_id"]) for r in runs]
        return runs if {"triggered-batch", "deletion-batch"} <= set(names) else None

    runs = _wait("the triggered-batch flow run to complete", completed_runs, 120, [served])
    triggered = [r for r in runs if flows.get(r["flow_id"]) == "triggered-batch"]
    assert all(r["parameters"].get("event_id") for r in triggered)

    # the receipts are served, and they are the ledger's
    for rid in ("live-1", "live-2"):
        receipt = httpx.get(f"{base}/requests/{rid}/receipt", headers=auth, timeout=10)
        assert receipt.status_code == 200, receipt.text
        assert receipt.json()["request"]["request_id"] == rid
        assert project.open_ledger().receipt_of(rid)["sha256"] == receipt.json()["sha256"]
    events = _api(prefect_server, "/events/filter", {"filter": {"event": {"prefix": ["forgetflow."]}}})["events"]
    accepted = [e for e in events if e["event"] == "forgetflow.request.accepted"]
    assert {rid for e in accepted for rid in e["payload"]["request_ids"]} == {"live-1", "live-2"}
    # the label is the rule evaluated on the ledger when the event was built: due exactly when N=2 pending
    for e in accepted:
        assert (e["resource"]["forgetflow.batch-due"] == "true") == (e["payload"]["pending"] >= 2), e["payload"]
    assert any(e["resource"]["forgetflow.batch-due"] == "true" for e in accepted)


@pytest.mark.slow
def test_backlog_check_signals_an_overdue_request(tmp_path, prefect_server):
    """One request below N but older than T: the backlog-check flow (run against the server) emits the due event."""
    root = make_project_dir(tmp_path / "p", "serve: {name: overdue-test, trigger_pending: 50, trigger_oldest_hours: 2}\n")
    book = Project.load(root / "params.yaml").open_ledger()
    three_hours_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)).isoformat()
    book.add([make_request("old-1", "privacy", subject_id="subj-00001", received_at=three_hours_ago)])
    code = ("import json; from flows.serving import backlog_check; "
            f"print('RESULT=' + json.dumps(backlog_check(params_path={str(root / 'params.yaml')!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300,
                         env=quiet_env(PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "ph")))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT=", 1)[1])
    assert result["status"] == "signalled"
    assert result["backlog"]["pending"] == 1 and result["backlog"]["oldest_age_hours"] >= 3.0

    body = {"filter": {"event": {"name": ["forgetflow.backlog.due"]},
                       "resource": {"labels": {"forgetflow.project": ["overdue-test"]}}}}
    found = _wait("the backlog.due event on the server", lambda: _api(prefect_server, "/events/filter", body)["events"], 30)
    assert found[0]["resource"]["forgetflow.batch-due"] == "true"
    assert found[0]["payload"]["due_reason"].startswith("oldest pending request waited 3.0")
    assert book.get("old-1")["state"] == "pending"  # the check only signals; the triggered batch does the work
