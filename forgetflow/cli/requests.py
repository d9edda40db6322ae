"""``forgetflow request …``: the erasure-request ledger (add, import, list, requeue)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from forgetflow.cli.common import emit, project
from forgetflow.errors import ForgetflowError

if TYPE_CHECKING:  # pragma: no cover
    from forgetflow.project import Project

app = typer.Typer(no_args_is_help=True, help="The erasure-request ledger.")


@app.command("add")
def add(
    reason: Annotated[str, typer.Option(help="privacy, mislabelled, poisoned or other")],
    subject: Annotated[Optional[str], typer.Option(help="forget every sample of this data subject")] = None,
    sample: Annotated[Optional[str], typer.Option(help="forget this one sample")] = None,
    request_id: Annotated[Optional[str], typer.Option("--id", help="request id (default: generated)")] = None,
    received_at: Annotated[Optional[str], typer.Option(help="ISO-8601 time (default: now; not older than "
                                                             "intake.max_age_days)")] = None,
) -> None:
    """Accept one erasure request."""
    import uuid

    from forgetflow.ledger import make_request

    proj = project()
    req = make_request(request_id or f"req-{uuid.uuid4().hex[:12]}", reason, subject, sample, received_at,
                       max_age_days=proj.params.intake.max_age_days)
    book = proj.open_ledger()
    result = book.add([req], source="cli")
    state = "accepted" if result.accepted else "already accepted (same content)"
    typer.echo(f"{req.request_id}: {state}")
    _announce(proj, book, result.accepted, "cli")


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="CSV: request_id,subject_id,sample_id,reason,received_at")]) -> None:
    """Import requests from a CSV, all or nothing: any bad row rejects the whole file."""
    from forgetflow.ledger import read_csv

    proj = project()
    book = proj.open_ledger()
    result = book.add(read_csv(file, max_age_days=proj.params.intake.max_age_days), source="import")
    typer.echo(f"{file}: {len(result.accepted)} accepted, {len(result.duplicates)} already present")
    _announce(proj, book, result.accepted, "import")


def _announce(proj: "Project", book, accepted: list[str], source: str) -> None:
    """After the ledger write: tell the Prefect server (if one is configured). Never fails the command."""
    import os

    if not accepted or not proj.params.serve.emit_events or not os.environ.get("PREFECT_API_URL"):
        return
    from forgetflow.ledger.backlog import read_backlog
    from tasks import events

    try:
        events.emit([events.accepted_event(proj.params.serve, accepted, source, read_backlog(book))])
    except Exception as exc:  # noqa: BLE001 - the requests are stored; the event is a courtesy
        typer.echo(f"warning: requests stored, but the {events.ACCEPTED} event was not emitted "
                   f"({events.describe_error(exc)}); the backlog check will catch up", err=True)


@app.command("list")
def list_(
    state: Annotated[Optional[str], typer.Option(help="pending, claimed, done or quarantined")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List requests (oldest first)."""
    from forgetflow.ledger import STATES

    if state is not None and state not in STATES:
        raise ForgetflowError(f"--state must be one of {', '.join(STATES)}, not {state!r}")
    rows = project().open_ledger().list(state=state)
    # tab-separated on purpose (not a padded table): `cut -f` and `grep` read it
    emit(rows, as_json, lambda rs: "\n".join(
        f"{r['request_id']}\t{r['state']}\t{r['reason']}\t{r['subject_id'] or r['sample_id']}\t{r['received_at']}"
        + (f"\t{r['note']}" if r["note"] else "") for r in rs) or "no requests")


@app.command("requeue")
def requeue(request_id: Annotated[str, typer.Argument(help="a quarantined request")]) -> None:
    """Put a quarantined request back to pending."""
    project().open_ledger().requeue(request_id)
    typer.echo(f"{request_id}: pending again")
