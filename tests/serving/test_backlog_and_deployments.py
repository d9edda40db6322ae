"""The backlog rule (N pending or the oldest waited T hours) on a real ledger, the deployment objects built
from params.yaml, and the serve/intake/request commands when no server is there to talk to."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from forgetflow.ledger import make_request
from forgetflow.ledger.backlog import Backlog, read_backlog
from forgetflow.project import Project
from tests.conftest import make_project_dir
from tests.serving.conftest import free_port, quiet_env

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)


def _backlog(pending: int, hours_old: float | None) -> Backlog:
    oldest = NOW - dt.timedelta(hours=hours_old) if hours_old is not None else None
    return Backlog(pending=pending, oldest_received_at=oldest, running_batch=None, at=NOW)


@pytest.mark.parametrize("pending, hours_old, due", [
    (0, None, None),
    (4, 1.0, None),
    (5, 1.0, "5 request(s) pending (threshold 5)"),
    (9, 0.0, "9 request(s) pending (threshold 5)"),
    (1, 24.0, "oldest pending request waited 24.00 h (threshold 24 h)"),
    (1, 23.99, None),
])
def test_due_rule(pending, hours_old, due):
    assert _backlog(pending, hours_old).due(5, 24) == due


def test_payload_is_what_events_carry():
    payload = _backlog(2, 30.0).as_payload(5, 24)
    assert payload["due"] and payload["pending"] == 2 and payload["oldest_age_hours"] == 30.0
    assert payload["oldest_received_at"] == "2026-11-19T06:00:00+00:00"
    assert payload["thresholds"] == {"pending": 5, "oldest_hours": 24}


def test_read_backlog_from_a_real_ledger(tmp_path):
    project = Project.load(make_project_dir(tmp_path / "p") / "params.yaml")
    book = project.open_ledger()
    assert read_backlog(book, NOW) == Backlog(0, None, None, NOW)
    book.add([make_request("a", "privacy", subject_id="s1", received_at="2026-11-20T02:00:00Z", now=NOW),
              make_request("b", "privacy", subject_id="s2", received_at="2026-11-19T12:00:00Z", now=NOW)])
    state = read_backlog(book, NOW)
    assert state.pending == 2 and state.oldest_age_hours == 24.0 and state.running_batch is None
    book.start_batch("b-1")
    book.claim("b-1", 1)  # the oldest goes first
    state = read_backlog(book, NOW)
    assert state.pending == 1 and state.oldest_age_hours == 10.0 and state.running_batch == "b-1"


def test_deployments_follow_params(tmp_path):
    from flows import deployments
    from tasks import events

    extra = ("serve: {name: nightly, schedule_cron: '30 1 * * *', timezone: Europe/Berlin, trigger_pending: 7,\n"
             "        review_window_minutes: 45, trigger_cooldown_minutes: 20, check_cron: null}\n")
    project = Project.load(make_project_dir(tmp_path / "p", extra) / "params.yaml")
    built = {d.flow_name: d for d in deployments.build(project, {"unlearn.method": "finetune"})}
    assert {"scheduled-batch", "triggered-batch"} <= set(built) and "backlog-check" not in built
    assert all(d.name == "nightly" for d in built.values())
    expected = {"params_path": str(project.params_path), "overrides": {"unlearn.method": "finetune"}}
    assert built["scheduled-batch"].parameters == expected
    schedule = built["scheduled-batch"].schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("30 1 * * *", "Europe/Berlin")

    (trigger,) = built["triggered-batch"].triggers
    assert trigger.expect == {events.ACCEPTED, events.DUE}
    assert trigger.match.model_dump() == {events.PROJECT_LABEL: "nightly", events.DUE_LABEL: "true"}
    assert trigger.schedule_after == dt.timedelta(minutes=45) and trigger.within == dt.timedelta(minutes=20)
    assert trigger.parameters == {**expected, "event_id": "{{ event.id | string }}"}
    if "promotion" in built:  # flows/promotion.py is optional here
        assert built["promotion"].triggers[0].parameters["version"] == "{{ event.payload.version }}"
    if "oracle-audit" in built:  # so is flows/audit.py
        audit = built["oracle-audit"].schedules[0].schedule
        assert (audit.cron, audit.timezone) == (project.params.audit.cron, "Europe/Berlin")

    default = Project.load(make_project_dir(tmp_path / "q") / "params.yaml")
    names = {d.flow_name for d in deployments.build(default)}
    assert {"scheduled-batch", "triggered-batch", "backlog-check"} <= names


def _ff(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forgetflow.cli", *args], cwd=cwd, env=quiet_env(**env),
                          capture_output=True, text=True, timeout=300)


def test_serve_refuses_without_a_server(tmp_path):
    root = make_project_dir(tmp_path / "p")
    home = str(tmp_path / "prefect-home")
    out = _ff("serve", cwd=root, PREFECT_HOME=home)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "PREFECT_API_URL is not set" in out.stderr and "prefect server start" in out.stderr
    out = _ff("serve", cwd=root, PREFECT_HOME=home, PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api")
    assert out.returncode == 1 and "no Prefect server answers" in out.stderr and out.stderr.count("\n") == 1


def test_intake_refuses_without_a_token(tmp_path):
    root = make_project_dir(tmp_path / "p")
    out = _ff("intake", cwd=root, FORGETFLOW_INTAKE_TOKEN="")
    assert out.returncode == 1 and out.stderr.startswith("error: FORGETFLOW_INTAKE_TOKEN is not set")
    assert out.stderr.count("\n") == 1


def test_a_lost_event_never_loses_a_request(tmp_path):
    """Prefect unreachable: the request is stored, the command succeeds and says the event was not emitted."""
    root = make_project_dir(tmp_path / "p")
    dead = f"http://127.0.0.1:{free_port()}/api"
    out = _ff("request", "add", "--id", "r-1", "--subject", "subj-00001", "--reason", "privacy", cwd=root,
              PREFECT_API_URL=dead, PREFECT_HOME=str(tmp_path / "ph"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "r-1: accepted"
    assert "event was not emitted" in out.stderr
    rows = Project.load(root / "params.yaml").open_ledger().list()
    assert [(r["request_id"], r["state"]) for r in rows] == [("r-1", "pending")]


def test_the_intake_sender_is_off_without_a_server_and_logs_a_lost_event_masked(tmp_path, monkeypatch, caplog):
    import logging

    from tasks import events

    project = Project.load(make_project_dir(tmp_path / "p") / "params.yaml")
    book = project.open_ledger()
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert events.intake_sender(project, book) is None
    monkeypatch.setenv("PREFECT_API_URL", f"http://ops:Api-Pw-7@127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "ph"))
    send = events.intake_sender(project, book)
    with caplog.at_level(logging.INFO, logger="tasks.events"):
        assert send is not None and send(["r-1"]) is False  # nobody listens: logged, not raised
    assert "could not emit forgetflow.request.accepted" in caplog.text and "ops:***@127.0.0.1" in caplog.text
    assert "Api-Pw-7" not in caplog.text
