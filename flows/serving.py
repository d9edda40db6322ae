"""The served flows around the deletion batch: scheduled, triggered, and the periodic backlog check.

flows/deployments.py turns them into deployments; `forgetflow serve` runs those on a Prefect server.

- ``scheduled-batch`` (cron ``serve.schedule_cron``): one batch over everything pending.
- ``triggered-batch`` (event trigger): a batch when the backlog rule says one is due, N requests pending
  or the oldest waited T hours. The rule is checked again when the run starts, after the review window
  (``serve.review_window_minutes``): a batch that ran meanwhile may have taken everything.
- ``backlog-check`` (cron ``serve.check_cron``): emits ``forgetflow.backlog.due`` when a batch is due and
  none runs, which fires the trigger. It catches the T-hours deadline (which no intake event announces),
  events that were lost, and events ignored during the trigger's cooldown.

Both batch flows first wait (``serve.wait_for_batch_minutes``) for a batch that is already running, since
the ledger allows one at a time.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.deletion_batch import deletion_batch
from forgetflow import runtime_env
from forgetflow.project import Project
from tasks import backlog


def _project(params_path: str, overrides: dict[str, Any] | None) -> Project:
    project = Project.load(params_path, overrides)
    runtime_env.apply(project)
    return project


@flow(name="scheduled-batch", log_prints=False)
def scheduled_batch(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one deletion batch over every pending request, once no other batch is running."""
    project = _project(params_path, overrides)
    state = backlog.wait_until_idle(project, project.params.serve.wait_for_batch_minutes)
    summary = state.as_payload(project.params.serve.trigger_pending, project.params.serve.trigger_oldest_hours)
    if state.running_batch:
        get_run_logger().warning("batch %s still running; this scheduled batch is skipped", state.running_batch)
        return {"status": "busy", "backlog": summary}
    if not state.pending:
        return {"status": "nothing-to-do", "backlog": summary}
    result = deletion_batch(params_path=params_path, overrides=overrides)
    return {"status": result["status"], "backlog": summary, "batch": result}


@flow(name="triggered-batch", log_prints=False)
def triggered_batch(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None,
                    event_id: str | None = None) -> dict[str, Any]:
    """Run one deletion batch if the backlog rule still says one is due.

    Args:
        params_path: the project's params.yaml.
        overrides: dotted params overrides.
        event_id: the Prefect event that fired the trigger (kept for the audit trail).
    """
    project = _project(params_path, overrides)
    serve = project.params.serve
    state = backlog.wait_until_idle(project, serve.wait_for_batch_minutes)
    summary = {**state.as_payload(serve.trigger_pending, serve.trigger_oldest_hours), "event_id": event_id}
    if state.running_batch:
        get_run_logger().warning("batch %s still running; the backlog check will fire again", state.running_batch)
        return {"status": "busy", "backlog": summary}
    if not summary["due"]:
        return {"status": "not-due", "backlog": summary}
    get_run_logger().info("deletion batch due: %s", summary["due_reason"])
    result = deletion_batch(params_path=params_path, overrides=overrides)
    return {"status": result["status"], "backlog": summary, "batch": result}


@flow(name="backlog-check", log_prints=False)
def backlog_check(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Emit ``forgetflow.backlog.due`` when a batch is due and none is running."""
    project = _project(params_path, overrides)
    serve = project.params.serve
    state = backlog.backlog(project)
    summary = state.as_payload(serve.trigger_pending, serve.trigger_oldest_hours)
    emitted = bool(summary["due"] and not state.running_batch and backlog.signal_due(project, state))
    return {"status": "signalled" if emitted else ("due" if summary["due"] else "not-due"), "backlog": summary}
