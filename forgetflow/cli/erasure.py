"""``forgetflow purge`` and ``forgetflow receipt verify``: erasure in storage, and the proof of every erasure."""

from __future__ import annotations

from typing import Annotated

import typer

from forgetflow.cli.common import emit, project, stdout_to_stderr
from forgetflow.errors import ForgetflowError

receipt_app = typer.Typer(no_args_is_help=True, help="Deletion receipts.")


def purge(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    scan_only: Annotated[bool, typer.Option("--scan-only", help="only scan every store and list what purge.models "
                                                                "would delete; delete nothing")] = False,
) -> None:
    """Remove erased samples from every store (DVC cache and remote, dataset copies), delete the weights of models
    trained on them (purge.models), then scan every store and name what remains (docs/erasure.md)."""
    proj = project()
    from tasks import purge as purging

    with stdout_to_stderr(as_json):
        if scan_only:
            result = purging.scan_only(proj)
        else:
            running = purging.running_batch(proj)
            if running:
                raise ForgetflowError(f"batch {running} is running; purge after it ends (every batch purges itself)")
            result = purging.run_purge(proj)
            result["report"] = str(purging.write_report(proj, result).relative_to(proj.root))
    emit(result, as_json, purging.describe)
    if not result["scan"]["ok"]:
        raise typer.Exit(1)


@receipt_app.command("verify")
def receipt_verify(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Check every receipt: its hash, the chain, each link (manifest, ledger, data version, MLflow), the batch
    anchors of the chain's end, and one receipt per done request."""
    proj = project()
    from tasks import receipt_audit

    with stdout_to_stderr(as_json):
        result = receipt_audit.verify_receipts(proj)
    emit({"ok": result.ok, "checked": result.checked, "problems": result.problems}, as_json,
         lambda d: (f"{d['checked']} receipt(s) verified: chain, links and anchors intact" if d["ok"]
                    else "\n".join([f"{len(d['problems'])} problem(s):"] + [f"  {p}" for p in d["problems"]])))
    if not result.ok:
        raise typer.Exit(1)


@receipt_app.command("anchor")
def receipt_anchor(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Anchor the batches whose receipts have no anchor yet (chains written before anchors; run once, after a
    verify that finds nothing else wrong)."""
    proj = project()
    from tasks import receipt_audit

    with stdout_to_stderr(as_json):
        made = receipt_audit.anchor_unanchored(proj)
    emit({"anchored": made}, as_json, lambda d: "\n".join(
        [f"anchored {len(d['anchored'])} batch(es)"]
        + [f"  {a['batch_id']}: {a['count']} receipt(s), head {a['head_seq']} on MLflow run {a['mlflow_run_id']}"
           for a in d["anchored"]]))
