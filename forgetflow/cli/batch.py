"""``forgetflow batch …``, ``forgetflow demo`` and ``forgetflow report``: deletion batches and their reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from forgetflow.cli.common import emit, overrides, project, stdout_to_stderr, table

app = typer.Typer(no_args_is_help=True, help="Deletion batches.")

METRIC_ROWS = [("forget_acc", "forget acc %"), ("retain_acc", "retain acc %"), ("test_acc", "test acc %"),
               ("mia_efficacy", "MIA-efficacy (SalUn SVC) %"), ("mia_entropy", "MIA (SSD entropy LR) member %"),
               ("mia_auc", "MIA loss AUC forget-vs-test")]


@app.command("run")
def run(
    method: Annotated[Optional[str], typer.Option(help="force one method (default: per request reason)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    inject_failure: Annotated[Optional[str], typer.Option(hidden=True, help="drill: fail after this step")] = None,
    retrain: Annotated[Optional[bool], typer.Option("--retrain/--unlearn", help="force a retrain from scratch, or "
                                                    "unlearning (default: the retrain policy in params.yaml decides)")] = None,
) -> None:
    """Run a deletion batch now over the pending requests."""
    proj = project()
    if method is not None:
        from forgetflow.methods import METHODS

        METHODS.get(method)
    with stdout_to_stderr(as_json):
        from flows.deletion_batch import deletion_batch
        from tasks import reporting

        result = deletion_batch(params_path=str(proj.params_path), overrides=overrides(), method=method,
                                inject_failure=inject_failure,
                                action=None if retrain is None else ("retrain" if retrain else "unlearn"))
        if result.get("batch_id"):  # a batch that ended early (all quarantined) is recorded too
            reporting.write_batch_json(proj, result)
    emit(result, as_json, render_batch)


@app.command("recover")
def recover(force: Annotated[bool, typer.Option(help="also recover a batch whose lease is live")] = False,
            as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """Recover batches whose process died (rolled back, or forward past their purge) and tidy what they left."""
    proj = project()
    with stdout_to_stderr(as_json):
        from tasks import recovery

        result = recovery.recover_all(proj, force=force)
    emit(result, as_json, lambda r: "\n".join(r["recovered"] + r["tidied"]) or "no stale batch, nothing to tidy")


def demo() -> None:
    """The main job on the embedded defaults: data, original, sample requests, one deletion batch, summary."""
    import datetime as dt

    from forgetflow import pipeline
    from forgetflow.ledger import read_csv

    proj = project()
    from tasks import bootstrap, versioning

    say = lambda text: typer.echo(f"==> {text}", err=True)  # noqa: E731
    if versioning.has_pipeline(proj):  # through dvc.yaml's stages, so that dvc.lock records them
        say(f"dvc repro: prepare {proj.params.data.dataset} version 1, train the original ({proj.params.train.epochs} "
            "epochs) and register it as champion, its oracle — each stage only if its code, params or data changed")
        ran = versioning.reproduce(proj)
        say(f"stages run: {', '.join(ran) or 'none (dvc.lock is up to date)'}")
    say(f"dataset {proj.params.data.dataset}: preparing version 1 (or reusing it)")
    version = bootstrap.ensure_data(proj)
    say(f"original model: training and registering as champion (or reusing it) — {proj.params.train.epochs} epochs")
    info = bootstrap.train_and_register(proj)
    say(f"champion = model version {info.version}, test acc {info.metrics.get('test_acc', float('nan')):.2f}%")
    if proj.params.references.enabled:
        from flows import references as reference_flows
        from forgetflow.cli.training import references_line

        say(f"reference models: {proj.params.references.k} of the same recipe, each on half the training split, once per "
            "dataset version (or reusing them) — they calibrate the per-sample membership evidence")
        say(references_line(reference_flows.refresh(str(proj.params_path), overrides(), why="forgetflow demo")))
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    requests_file = pipeline.write_demo_requests(proj, version, now)
    # forgetflow's own file, written at the first run: a rerun a year later must still find it valid
    result = proj.open_ledger().add(read_csv(requests_file, max_age_days=None), source="import")
    say(f"requests from {requests_file.relative_to(proj.root)}: {len(result.accepted)} accepted, "
        f"{len(result.duplicates)} already in the ledger")
    from flows.deletion_batch import deletion_batch
    from tasks import reporting

    say("deletion batch: claim → validate (GX) → unlearn → evaluate + membership evidence per request → register → "
        "gate → promote → erase (DVC) → purge → receipts")
    outcome = deletion_batch(params_path=str(proj.params_path), overrides=overrides())
    if outcome.get("batch_id") and outcome.get("status") == "done":
        reporting.write_batch_json(proj, outcome)
    else:
        last = reporting.last_batch_json(proj)
        if last is not None:
            typer.echo("nothing new to forget; the last batch was:")
            outcome = last
    typer.echo(render_batch(outcome))
    typer.echo("\nverify the receipts:   .venv/bin/forgetflow receipt verify")
    typer.echo("ledger and registry:   .venv/bin/forgetflow status")
    from forgetflow.masking import mask_text

    typer.echo(f"open the MLflow UI:    .venv/bin/mlflow ui --backend-store-uri {mask_text(proj.tracking_uri)} "
               f"--default-artifact-root {mask_text(proj.artifact_root)} --port 5000   (or: make mlflow-ui)")


def report(batch_id: Annotated[str, typer.Argument(help="the batch whose report to (re)write")]) -> None:
    """Rewrite a batch's HTML report from its stored records (state/reports/<batch>/report.html)."""
    proj = project()
    from tasks import reporting

    path = reporting.regenerate(proj, batch_id)
    typer.echo(f"wrote {path}")


def render_batch(r: dict[str, Any]) -> str:
    """The human summary of a batch result."""
    if r.get("status") != "done":
        extra = "".join(f"\n  quarantined {k}: {v}" for k, v in (r.get("quarantined") or {}).items())
        return f"batch {r.get('batch_id') or '-'}: {r.get('status')}{extra}"
    m, o, before = r["metrics"], r.get("oracle") or {}, r["champion_before"]
    lines = [f"batch {r['batch_id']}: forgot {r['forget_samples']} sample(s) for {len(r['requests'])} request(s) "
             f"with {r['method']}"]
    for k, v in (r.get("quarantined") or {}).items():
        lines.append(f"  quarantined {k}: {v}")
    def cell(values: dict[str, Any], key: str) -> str:
        return f"{values[key]:.3f}" if values.get(key) is not None else "-"

    columns = [("metric", "left"), ("unlearned", "right")] + ([("oracle", "right")] if o else []) + [("before", "right")]
    lines.append(table(columns, [(label, cell(m, k), *([cell(o, k)] if o else []), cell(before, k))
                                 for k, label in METRIC_ROWS], indent=2))
    if not o:
        lines.append("  (no oracle per batch: evaluate.oracle is off; the evidence below and the oracle audit judge it)")
    if r.get("avg_gap") is not None:
        lines.append(f"  avg gap to oracle: {r['avg_gap']:.3f} (SalUn: FA, RA, TA, MIA-efficacy), "
                     f"{r['avg_gap_mumis']:.3f} (MU-Mis: RA, FA, TA)")
    s = r["seconds"]
    oracle_time = f", oracle {s['oracle']:.1f} s" if s.get("oracle") else ""
    verify_time = f", verification {s['verify']:.2f} s" if s.get("verify") is not None else ""
    lines.append(f"  time: unlearn {s.get('unlearn', 0):.1f} s{verify_time}{oracle_time}, total {s.get('total', 0):.1f} s")
    ev = r.get("evidence") or {}
    for req in ev.get("requests") or []:
        lines.append(f"  evidence {req['request_id']}: {req['verdict']} (adjusted p {req['adjusted_p']:.3g}, "
                     f"{req['samples']} sample(s); before: {req.get('before_verdict') or '-'})")
    gates = ", ".join(f"{k} {'off' if not v.get('enabled', True) else 'ok' if v['passed'] else 'FAIL'}"
                      for k, v in r["gates"].items())
    decision, promotion = r.get("decision") or {}, r.get("promotion") or {}
    if decision:
        lines.append(f"  decision: {decision.get('action')} ({decision.get('rule')}): {decision.get('reason')}")
    if r.get("rejected"):
        lines.append(f"  version {r['rejected']['model_version']} (unlearned) failed: {', '.join(r['rejected']['failed'])}")
    lines.append(f"  model version {r['model_version']} ({'promoted to champion' if r['promoted'] else 'not promoted'}; {gates})")
    if promotion and not r["promoted"]:
        lines.append(f"  promotion: {promotion.get('action')}: {promotion.get('reason')}")
    for row in r.get("superseded") or []:
        lines.append(f"  superseded: version {row['version']} holds data erased by {row['erased_by_batch']}")
    lines.append(f"  dataset version {r['data_version']['version']} (dvc {r['data_version'].get('dvc_md5') or '-'})")
    lines.append(f"  receipts: {len(r['receipts'])} under {str(Path(r['receipts'][0]).parent) if r['receipts'] else '-'}")
    report_info = r.get("report") or {}
    if report_info:
        lines.append(f"  report: {report_info.get('path') or 'not written: ' + str(report_info.get('error'))}")
    return "\n".join(lines)
