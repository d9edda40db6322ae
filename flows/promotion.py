"""The promotion flow: make a registered challenger champion, after its gates and, if asked, a person.

``promotion.approval: auto`` — the version is promoted when every enabled gate passes (re-checked with the
current params.yaml from the metrics its run logged) or when it is an exact retrain.

``promotion.approval: manual`` — the flow pauses (Prefect ``pause_flow_run`` with an :class:`Approval` form)
until a person answers in the Prefect UI or with ``prefect flow-run resume``; it fails when nobody answers
within ``promotion.approval_timeout_hours``. Approving a version whose gates fail needs ``override: true``
in the answer. ``forgetflow promote VERSION --reason ...`` is the same decision from a terminal.

Whatever the path, a version that holds erased data is refused, also when the data was erased while the
flow waited: the lineage is checked again at the moment the alias moves.

Beside the flow, the person-facing operations on ``champion`` (``forgetflow rollback``, ``forgetflow history``,
``forgetflow approve``): plain functions that wire the same tasks-level functions and the same rules
(``forgetflow/promotion_rules.py``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from forgetflow import lineage, runtime_env
from forgetflow import promotion_rules as rules
from forgetflow.errors import PromotionRefused
from forgetflow.project import Project
from tasks import lineage as lineage_tasks
from tasks import tracking
from tasks.claims import ledger
from tasks.promotion import (PROMOTION_TAG, actor, check_promotable, promote_task, purged_note, refuse_if_purged,
                             reject_version)


class Approval(RunInput):
    """What a person answers when the promotion flow asks."""

    approve: bool = Field(False, description="promote this version to champion?")
    approver: str = Field("", description="who decides (recorded in the alias history)")
    reason: str = Field("", description="why (recorded in the alias history)")
    override: bool = Field(False, description="promote although gates failed (only with a reason)")


@flow(name="promotion", log_prints=False)
def promotion(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None, version: str | None = None,
              reason: str = "", poll_seconds: int = 10) -> dict[str, Any]:
    """Promote ``version`` (default: the challenger) after its gates and, with manual approval, a person.

    Args:
        params_path: the project's params.yaml.
        overrides: dotted params overrides.
        version: the model version to promote (a deployment trigger passes it from the
            ``forgetflow.challenger.awaiting-approval`` event); None = the current challenger.
        reason: recorded with an automatic promotion.
        poll_seconds: how often a paused run checks for the answer.
    """
    project = Project.load(params_path, overrides)
    runtime_env.apply(project)
    log = get_run_logger()
    checked = check_promotable(project, version)
    version = checked["version"]
    if project.params.promotion.approval == "manual":
        description = (f"Promote model version **{version}** ({checked['role']}) of "
                       f"`{project.params.tracking.model_name}` to champion?\n\nGates: {checked['summary']}"
                       + ("" if checked["passed"] or checked["exact"] else
                          "\n\n**Gates failed**: approving needs `override` and a reason."))
        answer = pause_flow_run(wait_for_input=Approval.with_initial_data(description=description),
                                timeout=int(project.params.promotion.approval_timeout_hours * 3600),
                                poll_interval=poll_seconds, key=f"approve-{version}")
        who = f"{answer.approver or 'unnamed approver'} (approved in the promotion flow)"
        if not answer.approve:
            reject_version(project, version, answer.reason or "no reason given", answer.approver or "unnamed approver")
            log.info("version %s: promotion declined by %s", version, answer.approver)
            return {"status": "declined", "version": version, "by": answer.approver, "reason": answer.reason,
                    "gates": checked["gates"]}
        # an override needs words; a plain approval may come without comment
        said = answer.reason.strip() or ("" if answer.override else "approved without comment")
        done = promote_task(project, version, said, who, answer.override)
    else:
        if not checked["passed"] and not checked["exact"]:
            log.warning("version %s fails the gates (%s); not promoted", version, checked["summary"])
            return {"status": "refused", "version": version, "reason": f"gates failed: {', '.join(checked['failed'])}",
                    "gates": checked["gates"]}
        done = promote_task(project, version, reason or "promotion flow: gates passed",
                            actor("promotion flow (automatic approval)"))
    return {"status": "promoted", "version": version, **done}


# ---- person-facing operations: roll back, history, answer a paused run -------------------------------
def rollback(project: Project, to: str | None, reason: str, by: str) -> dict[str, Any]:
    """Move ``champion`` back to a former champion (default: the previous one), never to one holding erased data."""
    rules.require_reason(reason)
    name = project.params.tracking.model_name
    current = tracking.require_champion(project)
    former = rules.former_champions(ledger(project).alias_history(name), current)
    target = rules.rollback_target(to, current, former, [v["version"] for v in tracking.versions(project)], name)
    known = lineage_tasks.records(project)
    gone = lineage_tasks.erasures(project)
    try:
        rules.refuse_if_holding(target, lineage.held(target, known, gone), "rollback",
                                [v for v in former if not lineage.held(v, known, gone)], "former champions")
    except PromotionRefused as exc:
        raise PromotionRefused(f"{exc}{purged_note(project, target)}") from None
    refuse_if_purged(project, target, "rollback")
    previous = tracking.move_alias(project, ledger(project), tracking.CHAMPION, target, f"rollback: {reason}", by)
    tracking.set_version_tags(project, target, {PROMOTION_TAG: "rolled back to"})
    return {"from": previous, "to": target, "reason": f"rollback: {reason}", "actor": by}


def history(project: Project) -> dict[str, Any]:
    """Every alias move and every supersession, oldest first, plus each version's lineage state."""
    name = project.params.tracking.model_name
    book = ledger(project)
    events: list[dict[str, Any]] = []
    for m in book.alias_history(name):
        events.append({"at": m["at"], "kind": "alias", "alias": m["alias"], "from_version": m["from_version"],
                       "to_version": m["to_version"], "reason": m["reason"], "actor": m["actor"],
                       "batch_id": m["batch_id"]})
    for s in book.superseded(name):
        events.append({"at": s["at"], "kind": "superseded", "version": s["version"],
                       "erased_by_batch": s["erased_by_batch"], "reason": s["reason"],
                       "actor": f"{s['recorded_in']}" if s["recorded_in"] else "forgetflow",
                       "batch_id": s["recorded_in"]})
    events.sort(key=lambda e: e["at"])
    known = lineage_tasks.records(project)
    gone = lineage_tasks.erasures(project)
    champion = tracking.alias_version(project, tracking.CHAMPION)
    challenger = tracking.alias_version(project, tracking.CHALLENGER)
    versions = []
    for v in tracking.versions(project):  # (registry searches do not return aliases: ask for each alias)
        held = lineage.held(v["version"], known, gone)
        aliases = [a for a, at in ((tracking.CHAMPION, champion), (tracking.CHALLENGER, challenger)) if at == v["version"]]
        versions.append({"version": v["version"], "role": v["tags"].get("forgetflow.role", "unknown"),
                         "batch_id": v["tags"].get("batch_id"), "aliases": aliases,
                         "gates": v["tags"].get("gates"), "promotion": v["tags"].get(PROMOTION_TAG),
                         "superseded_by": v["tags"].get("forgetflow.superseded_by"), "holds_erased_data_of": held})
    return {"model_name": name, "champion": champion, "challenger": challenger, "events": events, "versions": versions}


def answer_paused_run(flow_run: str, approve: bool, reason: str, by: str, override: bool = False) -> str:
    """Resume a paused promotion flow run with a person's answer (``forgetflow approve``); returns the API URL.

    Raises PromotionRefused with one line when there is no server, no such run, or nothing paused.
    """
    import uuid

    from prefect.exceptions import ObjectNotFound, PrefectException
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import get_current_settings

    try:
        run_id = uuid.UUID(flow_run)
    except ValueError:
        raise PromotionRefused(f"{flow_run!r} is not a flow run id") from None
    api = get_current_settings().api.url
    if not api:
        raise PromotionRefused("PREFECT_API_URL is not set: a paused flow run lives on a Prefect server "
                               "(`forgetflow promote VERSION --reason ...` works without one)")
    try:
        resume_flow_run(run_id, run_input={"approve": approve, "approver": by, "reason": reason, "override": override})
    except ObjectNotFound:
        raise PromotionRefused(f"flow run {flow_run} does not exist on the Prefect server at {api}") from None
    except (PrefectException, RuntimeError) as exc:  # not paused, timed out, input rejected
        raise PromotionRefused(f"flow run {flow_run}: {exc}") from None
    return api
