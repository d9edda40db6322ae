"""``forgetflow promote|approve|rollback|history|audit``: who is champion, why, and whether it should be."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from forgetflow.cli.common import emit, overrides, project, stdout_to_stderr, table


def promote(
    version: Annotated[Optional[str], typer.Argument(help="model version (default: the challenger)")] = None,
    reason: Annotated[str, typer.Option(help="why; recorded in the alias history")] = "",
    override: Annotated[bool, typer.Option(help="promote although gates fail (recorded with who and why)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Make a version champion after re-checking its gates; never one that holds erased data."""
    proj = project()
    from tasks import promotion

    with stdout_to_stderr(as_json):
        done = promotion.promote_version(proj, version, reason, promotion.actor("forgetflow promote"), override)
    emit(done, as_json, lambda d: f"champion: version {d['from'] or '-'} -> {d['to']}"
         + (" (gates overridden)" if d["override"] else "") + f"; recorded: {d['reason']}")


def approve(
    flow_run: Annotated[str, typer.Argument(help="id of the paused promotion flow run (Prefect UI or `prefect flow-run ls`)")],
    reason: Annotated[str, typer.Option(help="why; recorded in the alias history")] = "",
    decline: Annotated[bool, typer.Option(help="decline instead of approving")] = False,
    override: Annotated[bool, typer.Option(help="approve although gates fail (needs --reason)")] = False,
) -> None:
    """Answer a promotion flow run that waits for approval (needs the Prefect server: PREFECT_API_URL)."""
    project()
    from tasks import promotion

    promotion.answer_paused_run(flow_run, not decline, reason, promotion.actor("forgetflow approve"), override)
    typer.echo(f"flow run {flow_run}: {'declined' if decline else 'approved'}; the run moves the alias and records it")


def rollback(
    reason: Annotated[str, typer.Option(help="why; recorded in the alias history")] = "",
    to: Annotated[Optional[str], typer.Option(help="a former champion (default: the previous one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Give `champion` back to a former champion; refused for any model that holds erased data."""
    proj = project()
    from tasks import promotion

    with stdout_to_stderr(as_json):
        done = promotion.rollback(proj, to, reason, promotion.actor("forgetflow rollback"))
    emit(done, as_json, lambda d: f"champion: version {d['from']} -> {d['to']}; recorded: {d['reason']}")


def history(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Every alias move (time, reason, who) and every superseded model, oldest first."""
    proj = project()
    from tasks import promotion

    with stdout_to_stderr(as_json):
        info = promotion.history(proj)
    emit(info, as_json, render_history)


def render_history(h: dict[str, Any]) -> str:
    """The human form of `forgetflow history`: the event log, then a table of the versions."""
    lines = [f"{h['model_name']}: champion {h['champion'] or '-'}, challenger {h['challenger'] or '-'}"]
    for e in h["events"]:
        when = e["at"][:19].replace("T", " ")
        if e["kind"] == "alias":
            lines.append(f"{when}  {e['alias']:10s} {e['from_version'] or '-':>4s} -> {e['to_version'] or '-':<4s} "
                         f"by {e['actor']}: {e['reason']}")
        else:
            lines.append(f"{when}  superseded v{e['version']} (holds data erased by {e['erased_by_batch']}; "
                         f"found by {e['actor']})")
    lines.append("versions:")
    lines.append(table(
        [("version", "left"), ("role", "left"), ("aliases", "left"), ("state", "left"), ("gates", "left")],
        [(f"v{v['version']}", v["role"], ",".join(v["aliases"]) or "-",
          f"holds data erased by {', '.join(v['holds_erased_data_of'])}" if v["holds_erased_data_of"]
          else "free of erased data",
          v.get("gates") or "-") for v in h["versions"]], indent=2))
    return "\n".join(lines)


def audit(
    replace: Annotated[Optional[bool], typer.Option("--replace/--no-replace", help="replace a drifted champion "
                                                    "(default: audit.replace)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Oracle audit: retrain from scratch on the current dataset version and compare with the champion."""
    proj = project()
    with stdout_to_stderr(as_json):
        from flows.audit import oracle_audit

        result = oracle_audit(params_path=str(proj.params_path), overrides=overrides(), replace=replace)
    emit(result, as_json, lambda r: (
        f"audit {r['audit_id']}: champion v{r['champion']} test acc {r['champion_metrics']['test_acc']:.2f} vs "
        f"retrain {r['retrain_metrics']['test_acc']:.2f} (gap {r['verdict']['test_acc_gap']:+.2f}); "
        f"{r['verdict']['reason']}" + (f" New version {r['replacement']['version']}: {r['replacement']['action']}."
                                       if r.get("replacement") else "")))
