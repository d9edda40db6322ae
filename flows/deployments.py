"""Every deployment of forgetflow, defined once, as ``flow.to_deployment(...)`` objects.

``forgetflow serve`` hands them to ``prefect.serve(...)`` (one long-running process runs every flow run);
``forgetflow serve --work-pool NAME`` hands the same objects, loaded from the code folder, to
``prefect.deploy(..., work_pool_name=NAME)`` so that workers of that pool run them. Settings come from the
``serve:`` section of params.yaml:

=====================  ==============================  ==================================================
deployment             runs                            when
=====================  ==============================  ==================================================
scheduled-batch/NAME   flows/serving.py:scheduled_batch ``schedule_cron`` (in ``timezone``)
triggered-batch/NAME   flows/serving.py:triggered_batch event trigger: a ``forgetflow.request.accepted`` or
                                                       ``forgetflow.backlog.due`` event of this project with
                                                       ``forgetflow.batch-due=true``; the run is scheduled
                                                       ``review_window_minutes`` later; the trigger then
                                                       rests ``trigger_cooldown_minutes``
backlog-check/NAME     flows/serving.py:backlog_check   ``check_cron``
promotion/NAME         flows/promotion.py:promotion     on demand, and on each ``forgetflow.challenger.awaiting-
                                                       approval`` event of this project (when the module exists)
oracle-audit/NAME      flows/audit.py:oracle_audit      ``audit.cron`` (null = on demand; when the module exists)
=====================  ==============================  ==================================================

NAME is ``serve.name``; every event the trigger reacts to must carry ``forgetflow.project=NAME``, so several
projects can share one Prefect server.
"""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path
from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.serving import backlog_check, scheduled_batch, triggered_batch
from forgetflow.errors import ForgetflowError
from forgetflow.project import Project
from tasks import events

CODE_ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINTS = {
    "scheduled-batch": "flows/serving.py:scheduled_batch",
    "triggered-batch": "flows/serving.py:triggered_batch",
    "backlog-check": "flows/serving.py:backlog_check",
    "promotion": "flows/promotion.py:promotion",
    "oracle-audit": "flows/audit.py:oracle_audit",
}


def batch_trigger(project: Project, parameters: dict[str, Any]) -> DeploymentEventTrigger:
    """The trigger of the triggered batch: a due event of this project, then a review window and a cooldown."""
    serve = project.params.serve
    return DeploymentEventTrigger(
        name=f"{serve.name}: deletion batch due",
        description=(f"N={serve.trigger_pending} requests pending or the oldest waited T={serve.trigger_oldest_hours:g} h; "
                     f"runs {serve.review_window_minutes:g} min later; rests {serve.trigger_cooldown_minutes:g} min after firing"),
        expect={events.ACCEPTED, events.DUE},
        match={events.PROJECT_LABEL: serve.name, events.DUE_LABEL: "true"},
        posture="Reactive",
        threshold=1,
        within=dt.timedelta(minutes=serve.trigger_cooldown_minutes),
        schedule_after=dt.timedelta(minutes=serve.review_window_minutes),
        # `| string`: Prefect 3.8.8 renders a bare "{{ event.id }}" through tojson, which fails on a UUID
        parameters={**parameters, "event_id": "{{ event.id | string }}"},
    )


def _flow(name: str, local: Flow, source: str | None) -> Flow:
    """The flow itself, or (for work pools) the same flow loaded from ``source`` so workers can fetch it."""
    if source is None:
        return local
    return Flow.from_source(source=source, entrypoint=ENTRYPOINTS[name])  # type: ignore[return-value]


def optional_flow(module_name: str, attribute: str) -> Flow | None:
    """A flow from a module of flows/ that a checkout may lack (promotion, audit), else None."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attribute, None)


def promotion_flow() -> Flow | None:
    """``flows.promotion.promotion`` when that module exists, else None."""
    return optional_flow("flows.promotion", "promotion")


def build(project: Project, overrides: dict[str, Any] | None = None, source: str | None = None) -> list[RunnerDeployment]:
    """The deployments of a project (see the module docstring); ``source`` = code location for work pools."""
    serve = project.params.serve
    parameters: dict[str, Any] = {"params_path": str(project.params_path)}
    if overrides:
        parameters["overrides"] = dict(overrides)
    tags = ["forgetflow", serve.name]
    out: list[RunnerDeployment] = []
    if serve.schedule_cron:
        out.append(_flow("scheduled-batch", scheduled_batch, source).to_deployment(
            name=serve.name, schedules=[Cron(serve.schedule_cron, timezone=serve.timezone)], parameters=parameters,
            tags=tags, description="deletion batch over every pending request, on a schedule"))
    out.append(_flow("triggered-batch", triggered_batch, source).to_deployment(
        name=serve.name, triggers=[batch_trigger(project, parameters)], parameters=parameters, tags=tags,
        description="deletion batch when N requests are pending or the oldest waited T hours"))
    if serve.check_cron:
        out.append(_flow("backlog-check", backlog_check, source).to_deployment(
            name=serve.name, schedules=[Cron(serve.check_cron, timezone=serve.timezone)], parameters=parameters,
            tags=tags, description="emits forgetflow.backlog.due when a deletion batch is due"))
    audit = optional_flow("flows.audit", "oracle_audit")
    if audit is not None:
        cron = getattr(getattr(project.params, "audit", None), "cron", None)
        out.append(_flow("oracle-audit", audit, source).to_deployment(
            name=serve.name, parameters=parameters, tags=tags,
            schedules=[Cron(cron, timezone=serve.timezone)] if cron else None,
            description="retrain from scratch on the current dataset version and measure the champion's drift"))
    promotion = promotion_flow()
    if promotion is not None:
        out.append(_flow("promotion", promotion, source).to_deployment(
            name=serve.name, parameters=parameters, tags=tags, triggers=promotion_triggers(project, parameters),
            description="gate a challenger and move the champion alias (on demand, or when one awaits approval)"))
    return out


def promotion_triggers(project: Project, parameters: dict[str, Any]) -> list[DeploymentEventTrigger]:
    """One promotion run per challenger announced as awaiting approval (tasks/promotion.py emits the event)."""
    awaiting = getattr(importlib.import_module("tasks.promotion"), "AWAITING_EVENT", None)
    if awaiting is None:
        return []
    name = project.params.serve.name
    return [DeploymentEventTrigger(
        name=f"{name}: challenger awaits approval",
        expect={awaiting},
        match={events.PROJECT_LABEL: name},
        posture="Reactive",
        threshold=1,
        within=dt.timedelta(0),
        parameters={**parameters, "version": "{{ event.payload.version }}"},
    )]


def require_server() -> str:
    """The configured Prefect API URL, checked to answer; refuses ephemeral mode (cron needs a real server)."""
    import httpx
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ForgetflowError("PREFECT_API_URL is not set: schedules and triggers need a running Prefect server "
                              "(start one with `prefect server start`, then export "
                              "PREFECT_API_URL=http://127.0.0.1:4200/api)")
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        raise ForgetflowError(f"no Prefect server answers at PREFECT_API_URL={url} ({type(exc).__name__}); "
                              "start one with `prefect server start`") from None
    return url


def serve_all(project: Project, overrides: dict[str, Any] | None = None, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs in this process until interrupted."""
    from prefect import serve

    require_server()
    serve(*build(project, overrides), limit=limit, print_starting_message=True)


def deploy_all(project: Project, work_pool: str, overrides: dict[str, Any] | None = None,
               source: str | None = None) -> list[str]:
    """Register the deployments for the workers of ``work_pool``; returns their ids."""
    from prefect import deploy

    require_server()
    ids = deploy(*build(project, overrides, source=source or str(CODE_ROOT)), work_pool_name=work_pool,
                 print_next_steps_message=False, ignore_warnings=True)
    return [str(i) for i in ids]
