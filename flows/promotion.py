"""The promotion flow: make a registered challenger champion, after its gates and, if asked, a person.

``promotion.approval: auto`` — the version is promoted when every enabled gate passes (re-checked with the
current params.yaml from the metrics its run logged) or when it is an exact retrain.

``promotion.approval: manual`` — the flow pauses (Prefect ``pause_flow_run`` with an :class:`Approval` form)
until a person answers in the Prefect UI or with ``prefect flow-run resume``; it fails when nobody answers
within ``promotion.approval_timeout_hours``. Approving a version whose gates fail needs ``override: true``
in the answer. ``forgetflow promote VERSION --reason ...`` is the same decision from a terminal.

Whatever the path, a version that holds erased data is refused, also when the data was erased while the
flow waited: the lineage is checked again at the moment the alias moves.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from forgetflow import runtime_env
from forgetflow.project import Project
from tasks.promotion import actor, check_promotable, promote_task, reject_version


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
