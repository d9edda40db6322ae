"""The ``forgetflow`` command line (Typer). Errors are one line on stderr and a non-zero exit.

Commands that run flows import Prefect lazily, inside the command; ``forgetflow --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

from forgetflow import runtime_env
from forgetflow.errors import ForgetflowError, MethodDivergedError
from forgetflow.masking import mask_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make a trained image classifier forget data, prove it, ship it with receipts.")
data_app = typer.Typer(no_args_is_help=True, help="Dataset versions, subjects and samples.")
request_app = typer.Typer(no_args_is_help=True, help="The erasure-request ledger.")
batch_app = typer.Typer(no_args_is_help=True, help="Deletion batches.")
receipt_app = typer.Typer(no_args_is_help=True, help="Deletion receipts.")
config_app = typer.Typer(no_args_is_help=True, help="params.yaml: validate, show the schema.")
app.add_typer(data_app, name="data")
app.add_typer(request_app, name="request")
app.add_typer(batch_app, name="batch")
app.add_typer(receipt_app, name="receipt")
app.add_typer(config_app, name="config")


class State:
    params: Optional[Path] = None
    overrides: list[str] = []


STATE = State()


@app.callback()
def _root(
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml to use (default: nearest upwards)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a param: key.path=value (repeatable)")] = None,
) -> None:
    STATE.params = params
    STATE.overrides = list(set_ or [])


def project():
    """Load the project (params + overrides); puts its root on sys.path for tasks/ and flows/."""
    from forgetflow.config import parse_override
    from forgetflow.project import Project

    overrides = dict(parse_override(o) for o in STATE.overrides)
    proj = Project.load(STATE.params, overrides)
    runtime_env.apply(proj)
    _code_on_path(proj.root)
    return proj


def _code_on_path(root: Path) -> None:
    """``tasks/`` and ``flows/`` are not installed: use the project's, else the checkout forgetflow runs from."""
    for candidate in (root, Path(__file__).resolve().parent.parent):
        if (candidate / "flows").is_dir() and (candidate / "tasks").is_dir():
            if str(candidate) not in sys.path:
                sys.path.insert(0, str(candidate))
            return
    raise ForgetflowError(f"no flows/ and tasks/ folders next to {root} (run from a forgetflow checkout)")


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print machine output (JSON) or the human rendering."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str, sort_keys=False))
    else:
        typer.echo(human(data) if human else json.dumps(data, indent=2, default=str))


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Keep stdout clean for JSON: everything libraries print goes to stderr meanwhile."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


# ---- data ---------------------------------------------------------------------------------------
@data_app.command("prepare")
def data_prepare(force: Annotated[bool, typer.Option(help="rebuild even if prepared")] = False) -> None:
    """Build dataset version 1 from the raw files into artifacts/prepared (the `prepare` DVC stage)."""
    from forgetflow import pipeline

    proj = project()
    version = pipeline.prepare(proj, force=force)
    typer.echo(f"prepared {version.label}: {version.meta['counts']} ({version.meta['subjects']} data subjects) "
               f"in {proj.prepared_dir}")


@data_app.command("init")
def data_init() -> None:
    """Create the current dataset version under data/ (tracked by DVC, pushed, recorded in the ledger)."""
    proj = project()
    from tasks import bootstrap

    version = bootstrap.ensure_data(proj)
    typer.echo(f"current dataset version: {version.label} ({version.meta['counts']['train']} training samples)")


@data_app.command("subjects")
def data_subjects(limit: Annotated[Optional[int], typer.Option(help="print at most N")] = None) -> None:
    """Print the ids of data subjects that own training samples, one a line."""
    from forgetflow import pipeline

    for subject in pipeline.current_version(project()).subjects()[: limit or None]:
        typer.echo(subject)


@data_app.command("samples")
def data_samples(
    split: Annotated[Optional[str], typer.Option(help="train, val, test or unseen")] = None,
    limit: Annotated[Optional[int], typer.Option(help="print at most N")] = None,
) -> None:
    """Print sample ids, one a line."""
    from forgetflow import pipeline
    from forgetflow.data.version import SPLITS

    if split is not None and split not in SPLITS:
        raise ForgetflowError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    version = pipeline.current_version(project())
    rows = version.rows(split) if split else version.table
    for sample in rows["sample_id"].head(limit if limit else len(rows)):
        typer.echo(sample)


# ---- training -----------------------------------------------------------------------------------
@app.command("train")
def train(
    force: Annotated[bool, typer.Option(help="register a new original even if a champion exists")] = False,
    references: Annotated[bool, typer.Option("--references/--no-references", help="also train the reference models "
                                             "of this dataset version when it has none (references.enabled)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Train the original model on the current dataset version and register it as `champion`; then the reference
    models of the version (docs/verification.md)."""
    proj = project()
    from tasks import bootstrap

    with stdout_to_stderr(as_json):
        info = bootstrap.train_and_register(proj, force=force).__dict__
        info["references"] = None
        if references and proj.params.references.enabled:
            from flows import references as reference_flows

            # reference models follow the dataset version: a set for this one unless it has one
            info["references"] = reference_flows.refresh(str(proj.params_path), _overrides(), why="forgetflow train")
    emit(info, as_json, lambda i: (
        f"champion is model version {i['version']} (run {i['run_id']}); test acc {i['metrics'].get('test_acc', float('nan')):.2f}%"
        + (" — already registered, nothing to do" if i["already_registered"] else f"; trained in {i['seconds']:.1f} s")
        + (f"\n{_references_line(i['references'])}" if i["references"] else "")))


def _references_line(r: dict[str, Any]) -> str:
    state = "loaded from the cache" if r.get("cached") else f"trained in {r['train_seconds']:.0f} s"
    return (f"reference models for {r.get('dataset_version', 'v' + str(r['version']))}: K={r['k']}, seed {r['seed']}, "
            f"{state} ({r['key']})")


@app.command("references")
def references_cmd(
    k: Annotated[Optional[int], typer.Option("--k", help="reference models, even (default: references.k)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local task-runner threads (default: params.yaml runner)")] = None,
    dask: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: params.yaml runner)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Train (or load) the reference models of the current dataset version and score every sample (DVC stage)."""
    proj = project()
    overrides = {**_overrides(), **({"references.k": k} if k is not None else {})}  # an odd K: a one-line error
    with stdout_to_stderr(as_json):
        from flows import references as reference_flows
        from flows import runners

        params = runners.override(proj.params, workers, dask)
        info = reference_flows.run(str(proj.params_path), overrides, runner=runners.task_runner(params))
        info["runner"] = runners.describe(params)
        proj.models_dir.mkdir(parents=True, exist_ok=True)
        (proj.models_dir / "references.json").write_text(json.dumps(info, indent=1) + "\n")
    emit(info, as_json, _references_line)


@app.command("oracle")
def oracle(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Retrain from scratch on the current dataset version (the oracle of every erasure so far; DVC stage)."""
    from forgetflow import pipeline
    from forgetflow.models import save_checkpoint
    from forgetflow.runtime import resolve_device
    from forgetflow.training import accuracy

    proj = project()
    with stdout_to_stderr(as_json):
        version = pipeline.current_version(proj, create=False)
        trained = pipeline.retrain_current(proj, version)
        save_checkpoint(trained.model, proj.models_dir / "oracle.pt")
        device = resolve_device(proj.params.train.device)
        info = {"key": trained.key, "cached": trained.cached, "train_seconds": trained.seconds,
                "dataset_version": version.version, "erased_total": version.meta["erased"],
                "test_acc": accuracy(trained.model, version.sample_set(split="test"), device=device)}
        (proj.models_dir / "oracle.json").write_text(json.dumps(info, indent=1) + "\n")
    emit(info, as_json, lambda i: f"oracle for {version.label} ({i['erased_total']} erased): "
         f"{'cached' if i['cached'] else 'trained'}, {i['train_seconds']:.1f} s to train, test acc {i['test_acc']:.2f}%")


# ---- requests -----------------------------------------------------------------------------------
@request_app.command("add")
def request_add(
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


@request_app.command("import")
def request_import(file: Annotated[Path, typer.Argument(help="CSV: request_id,subject_id,sample_id,reason,received_at")]) -> None:
    """Import requests from a CSV, all or nothing: any bad row rejects the whole file."""
    from forgetflow.ledger import read_csv

    proj = project()
    book = proj.open_ledger()
    result = book.add(read_csv(file, max_age_days=proj.params.intake.max_age_days), source="import")
    typer.echo(f"{file}: {len(result.accepted)} accepted, {len(result.duplicates)} already present")
    _announce(proj, book, result.accepted, "import")


def _announce(proj, book, accepted: list[str], source: str) -> None:
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


@request_app.command("list")
def request_list(
    state: Annotated[Optional[str], typer.Option(help="pending, claimed, done or quarantined")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List requests (oldest first)."""
    from forgetflow.ledger import STATES

    if state is not None and state not in STATES:
        raise ForgetflowError(f"--state must be one of {', '.join(STATES)}, not {state!r}")
    rows = project().open_ledger().list(state=state)
    emit(rows, as_json, lambda rs: "\n".join(
        f"{r['request_id']}\t{r['state']}\t{r['reason']}\t{r['subject_id'] or r['sample_id']}\t{r['received_at']}"
        + (f"\t{r['note']}" if r["note"] else "") for r in rs) or "no requests")


@request_app.command("requeue")
def request_requeue(request_id: Annotated[str, typer.Argument(help="a quarantined request")]) -> None:
    """Put a quarantined request back to pending."""
    project().open_ledger().requeue(request_id)
    typer.echo(f"{request_id}: pending again")


# ---- batches ------------------------------------------------------------------------------------
@batch_app.command("run")
def batch_run(
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

        result = deletion_batch(params_path=str(proj.params_path), overrides=_overrides(), method=method,
                                inject_failure=inject_failure,
                                action=None if retrain is None else ("retrain" if retrain else "unlearn"))
        if result.get("batch_id"):
            path = proj.reports_dir / result["batch_id"] / "summary.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1, default=str))
    emit(result, as_json, render_batch)


def _overrides() -> dict[str, Any]:
    from forgetflow.config import parse_override

    return dict(parse_override(o) for o in STATE.overrides)


@batch_app.command("recover")
def batch_recover(force: Annotated[bool, typer.Option(help="also recover batches of live or remote owners")] = False) -> None:
    """Fail batches whose process died and give their requests back."""
    recovered = project().open_ledger().recover_stale(force=force)
    typer.echo(f"recovered {len(recovered)} batch(es): {', '.join(recovered)}" if recovered else "no stale batch")


def render_batch(r: dict[str, Any]) -> str:
    """The human summary of a batch result."""
    if r.get("status") != "done":
        extra = "".join(f"\n  quarantined {k}: {v}" for k, v in (r.get("quarantined") or {}).items())
        return f"batch {r.get('batch_id') or '-'}: {r.get('status')}{extra}"
    m, o = r["metrics"], r.get("oracle") or {}
    keys = [("forget_acc", "forget acc %"), ("retain_acc", "retain acc %"), ("test_acc", "test acc %"),
            ("mia_efficacy", "MIA-efficacy (SalUn SVC) %"), ("mia_entropy", "MIA (SSD entropy LR) member %"),
            ("mia_auc", "MIA loss AUC forget-vs-test")]
    lines = [f"batch {r['batch_id']}: forgot {r['forget_samples']} sample(s) for {len(r['requests'])} request(s) "
             f"with {r['method']}"]
    for k, v in (r.get("quarantined") or {}).items():
        lines.append(f"  quarantined {k}: {v}")
    lines.append(f"  {'metric':34s} {'unlearned':>10s} {'oracle':>10s} {'before':>10s}")
    for key, label in keys:
        lines.append(f"  {label:34s} {m.get(key, float('nan')):10.3f} {o.get(key, float('nan')):10.3f} "
                     f"{r['champion_before'].get(key, float('nan')):10.3f}")
    if r.get("avg_gap") is not None:
        lines.append(f"  avg gap to oracle: {r['avg_gap']:.3f} (SalUn: FA, RA, TA, MIA-efficacy), "
                     f"{r['avg_gap_mumis']:.3f} (MU-Mis: RA, FA, TA)")
    s = r["seconds"]
    lines.append(f"  time: unlearn {s.get('unlearn', 0):.1f} s, oracle {s.get('oracle', 0):.1f} s, total {s.get('total', 0):.1f} s")
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
    report = r.get("report") or {}
    if report:
        lines.append(f"  report: {report.get('path') or 'not written: ' + str(report.get('error'))}")
    return "\n".join(lines)


@app.command("demo")
def demo() -> None:
    """The main job on the embedded defaults: data, original, sample requests, one deletion batch, summary."""
    import csv
    import datetime as dt

    from forgetflow import pipeline
    from forgetflow.ledger import read_csv

    proj = project()
    from tasks import bootstrap

    say = lambda text: typer.echo(f"==> {text}", err=True)  # noqa: E731
    say(f"dataset {proj.params.data.dataset}: preparing version 1 (or reusing it)")
    version = bootstrap.ensure_data(proj)
    say(f"original model: training and registering as champion (or reusing it) — {proj.params.train.epochs} epochs")
    info = bootstrap.train_and_register(proj)
    say(f"champion = model version {info.version}, test acc {info.metrics.get('test_acc', float('nan')):.2f}%")
    if proj.params.references.enabled:
        from flows import references as reference_flows

        say(f"reference models: {proj.params.references.k} of the same recipe, each on half the training split, once per "
            "dataset version (or reusing them) — they calibrate the per-sample membership evidence")
        say(_references_line(reference_flows.refresh(str(proj.params_path), _overrides(), why="forgetflow demo")))
    requests_file = proj.state_dir / "demo-requests.csv"
    if not requests_file.exists():  # written once, so a rerun files the very same requests (accepted once)
        rows = pipeline.demo_requests(version, dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
        requests_file.parent.mkdir(parents=True, exist_ok=True)
        with requests_file.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    # forgetflow's own file, written at the first run: a rerun a year later must still find it valid
    result = proj.open_ledger().add(read_csv(requests_file, max_age_days=None), source="import")
    say(f"requests from {requests_file.relative_to(proj.root)}: {len(result.accepted)} accepted, "
        f"{len(result.duplicates)} already in the ledger")
    from flows.deletion_batch import deletion_batch

    say("deletion batch: claim → validate (GX) → unlearn → evaluate vs retrained oracle → register → gate → "
        "promote → erase (DVC) → receipts")
    outcome = deletion_batch(params_path=str(proj.params_path), overrides=_overrides())
    if outcome.get("batch_id") and outcome.get("status") == "done":
        path = proj.reports_dir / outcome["batch_id"] / "summary.json"
        path.write_text(json.dumps(outcome, indent=1, default=str))
    else:
        last = sorted(proj.reports_dir.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
        if last:
            typer.echo("nothing new to forget; the last batch was:")
            outcome = json.loads(last[-1].read_text())
    typer.echo(render_batch(outcome))
    typer.echo(f"\nverify the receipts:   .venv/bin/forgetflow receipt verify")
    typer.echo(f"ledger and registry:   .venv/bin/forgetflow status")
    typer.echo(f"open the MLflow UI:    .venv/bin/mlflow ui --backend-store-uri {mask_text(proj.tracking_uri)} "
               f"--default-artifact-root {mask_text(proj.artifact_root)} --port 5000   (or: make mlflow-ui)")


def _kv(items: list[str] | None, lists: bool = False) -> dict[str, Any]:
    """``key=value`` options (YAML values); with ``lists`` the value is a comma-separated list."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ForgetflowError(f"{item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key] = [yaml.safe_load(v) for v in value.split(",")] if lists else yaml.safe_load(value)
    return out


@app.command("bench")
def bench_cmd(
    dataset: Annotated[str, typer.Option(help="fashion-mnist, digits or image-folder")] = "fashion-mnist",
    scenario: Annotated[str, typer.Option(help="random, subject, full-class, corrupted or sequential")] = "random",
    methods: Annotated[str, typer.Option(help="comma-separated registered methods")] = "finetune,neggrad-plus",
    seeds: Annotated[int, typer.Option(help="seeds 0..K-1")] = 3,
    option: Annotated[Optional[list[str]], typer.Option(help="scenario option key=value (repeatable)")] = None,
    grid: Annotated[Optional[list[str]], typer.Option(help="scenario option grid key=v1,v2 (repeatable)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default: state/bench/<name>)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local task-runner threads (1 = timings on a quiet machine); "
                                                   "default: params.yaml runner")] = None,
    dask: Annotated[Optional[str], typer.Option(help="Dask scheduler address: fan out through prefect-dask; "
                                                "default: params.yaml runner")] = None,
    setting: Annotated[str, typer.Option(help="benchmark setting: default, memorising or a setting .yaml file "
                                              "(forgetflow/settings/)")] = "default",
    per_sample: Annotated[bool, typer.Option(help="train/load the setting's reference models and add the per-sample "
                                                  "LiRA/RMIA columns")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
) -> None:
    """Benchmark methods against the retrained oracle: tables (Markdown + CSV), plots, MLflow runs."""
    import datetime as dt
    import os

    from forgetflow import bench_report
    from forgetflow.bench_settings import load_setting
    from forgetflow.methods import METHODS
    from forgetflow.scenarios import SCENARIOS

    proj = project()
    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        METHODS.get(m)
    if scenario != "sequential":
        SCENARIOS.get(scenario)
    bench_setting = load_setting(setting)  # a bad name or file fails here, before any work
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = (f"{dataset}-{bench_setting.name}-{scenario}-{stamp}" if bench_setting.name != "default"
            else f"{dataset}-{scenario}-{stamp}")
    folder = out or proj.state_dir / "bench" / name
    with stdout_to_stderr(True):
        from flows import runners
        from flows.benchmark import benchmark
        from tasks import tracking

        chosen = runners.override(proj.params, workers, dask)  # the flags override params.yaml's runner
        runner_label = runners.describe(chosen)
        rows = benchmark.with_options(task_runner=runners.task_runner(chosen))(
            params_path=str(proj.params_path), overrides=_overrides(), dataset=dataset, scenario=scenario,
            methods=names, seeds=seeds, options=_kv(option), grid=_kv(grid, lists=True), setting=setting,
            per_sample=per_sample)
        if scenario == "sequential":
            for r in rows:
                r["scenario"] = f"sequential step {r['step']}"
        table = bench_report.markdown(rows)
        csv_path = bench_report.write_csv(rows, folder / "results.csv")
        md_path = folder / "results.md"
        command = "forgetflow " + " ".join(sys.argv[1:])
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        md_path.write_text(f"# {name}\n\nCommand: `{command}`  \nSetting: {bench_setting.name}  \n"
                           f"Runner: {runner_label}  \nLoad average at the end (1/5/15 min): {load}\n\n{table}\n")
        figures = bench_report.plots(rows, folder)
        run_id = tracking.log_bench(proj, name, rows, [csv_path, md_path, *figures],
                                    {"dataset": dataset, "setting": bench_setting.name, "scenario": scenario, "methods": names,
                                     "seeds": seeds, "per_sample": per_sample,
                                     "options": _kv(option), "grid": _kv(grid, lists=True), "command": command,
                                     "runner": runner_label})
    if as_json:
        emit(bench_report.table_rows(rows), True)
    else:
        typer.echo(table)
        typer.echo(f"results: {folder}  (MLflow run {run_id})")


@app.command("tune")
def tune_cmd(
    methods: Annotated[str, typer.Option(help="comma-separated methods")],
    dataset: Annotated[str, typer.Option(help="dataset to search on")] = "fashion-mnist",
    scenario: Annotated[str, typer.Option(help="random, subject, full-class or corrupted")] = "random",
    option: Annotated[Optional[list[str]], typer.Option(help="scenario option key=value (repeatable)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the search's scenario draw and models")] = 0,
    budget: Annotated[Optional[int], typer.Option(help="at most N grid points (seeded sample)")] = None,
    max_time_ratio: Annotated[Optional[float], typer.Option(help="reject trials slower than this x retraining")] = None,
    write: Annotated[bool, typer.Option(help="write the winners to forgetflow/presets/<method>/<family>.yaml")] = False,
) -> None:
    """Search each method's declared space on the validation split; optionally ship the winners as presets."""
    from forgetflow import bench, pipeline, tuning
    from forgetflow.methods import METHODS

    proj = project()
    from tasks.benchmarking import bench_version

    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        METHODS.get(m)
    version = bench_version(proj, dataset)
    name, config = pipeline.arch(proj, version)
    opts = _kv(option)
    s = bench.setup(version, scenario, seed, name, config, pipeline.recipe(proj), proj.oracle_dir,
                    proj.params.train.device, opts, with_oracle=False, max_shadow=proj.params.evaluate.mia_max_shadow)
    presets = Path(__file__).resolve().parent / "presets"
    command = "forgetflow " + " ".join(sys.argv[1:])
    failed = []
    for m in names:
        try:
            result = tuning.search(s, m, budget=budget, max_time_ratio=max_time_ratio)
        except MethodDivergedError as exc:  # the other methods' searches still run
            typer.echo(f"{m}: no preset: {exc}", err=True)
            failed.append(m)
            continue
        best = result["best"]
        typer.echo(f"{m} [{result['family']}]: best {best['config']} score {best['score']:.3f} "
                   f"({best['seconds']:.1f} s, {len(result['trials'])} trials)")
        if write:
            path = tuning.write_preset(result, presets, {"command": command, "dataset": dataset, "scenario_options": opts,
                                                        "seed": seed, "original_train_seconds": round(s.original.seconds, 2),
                                                        "train_recipe": s.recipe.__dict__})
            typer.echo(f"  wrote {path}")
    if failed:
        raise MethodDivergedError(f"no preset for {', '.join(failed)}: every trial diverged")


# ---- serving ------------------------------------------------------------------------------------
@app.command("serve")
def serve(
    work_pool: Annotated[Optional[str], typer.Option(help="register the deployments for this work pool's workers "
                                                          "instead of running them here")] = None,
    limit: Annotated[Optional[int], typer.Option(help="most flow runs at once in this process")] = None,
) -> None:
    """Run the deployments (scheduled and triggered batches, backlog check, promotion, oracle audit) on a Prefect server.

    Needs PREFECT_API_URL pointing at `prefect server start`; see docs/operations.md.
    """
    import os

    proj = project()
    # flow runs start in child processes: they need tasks/ and flows/ on their path too
    code_root = next(p for p in sys.path if (Path(p) / "flows").is_dir() and (Path(p) / "tasks").is_dir())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))
    from flows import deployments

    if work_pool:
        ids = deployments.deploy_all(proj, work_pool, _overrides())
        typer.echo(f"{len(ids)} deployment(s) registered for work pool {work_pool!r}; start a worker with "
                   f"`prefect worker start --pool {work_pool}`")
        return
    deployments.serve_all(proj, _overrides(), limit=limit)


@app.command("intake")
def intake(
    host: Annotated[Optional[str], typer.Option(help="address to listen on (default: intake.host)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default: intake.port)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="processes sharing the port (default: intake.workers)")] = None,
) -> None:
    """Serve the HTTP intake (POST /requests, GET /requests/{id} and /requests/{id}/receipt); token from FORGETFLOW_INTAKE_TOKEN."""
    import os

    from forgetflow.intake import server

    proj = project()
    from tasks import events

    token = server.check_token(os.environ.get(server.TOKEN_ENV))
    # worker processes import the injected event sender (tasks/events.py) by name: they need the code folder
    code_root = next(p for p in sys.path if (Path(p) / "flows").is_dir() and (Path(p) / "tasks").is_dir())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))
    server.serve_http(proj, host or proj.params.intake.host, port or proj.params.intake.port, token,
                      workers or proj.params.intake.workers, _overrides(), events=events.intake_sender)


# ---- erasure in storage -------------------------------------------------------------------------
@app.command("purge")
def purge(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    scan_only: Annotated[bool, typer.Option("--scan-only", help="only scan cache, remote and folders; delete nothing")] = False,
) -> None:
    """Remove every DVC object (cache and remote) that still holds erased samples, then scan to prove it."""
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


# ---- promotion, rollback, history, audit, reports ----------------------------------------------
@app.command("promote")
def promote_cmd(
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


@app.command("approve")
def approve_cmd(
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


@app.command("rollback")
def rollback_cmd(
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


@app.command("history")
def history_cmd(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Every alias move (time, reason, who) and every superseded model, oldest first."""
    proj = project()
    from tasks import promotion

    with stdout_to_stderr(as_json):
        info = promotion.history(proj)
    emit(info, as_json, render_history)


def render_history(h: dict[str, Any]) -> str:
    """The human form of `forgetflow history`."""
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
    for v in h["versions"]:
        state = (f"holds data erased by {', '.join(v['holds_erased_data_of'])}" if v["holds_erased_data_of"]
                 else "free of erased data")
        lines.append(f"  v{v['version']:<4s} {v['role']:10s} {','.join(v['aliases']) or '-':20s} {state}"
                     + (f"; gates {v['gates']}" if v.get("gates") else ""))
    return "\n".join(lines)


@app.command("audit")
def audit_cmd(
    replace: Annotated[Optional[bool], typer.Option("--replace/--no-replace", help="replace a drifted champion "
                                                    "(default: audit.replace)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Oracle audit: retrain from scratch on the current dataset version and compare with the champion."""
    proj = project()
    with stdout_to_stderr(as_json):
        from flows.audit import oracle_audit

        result = oracle_audit(params_path=str(proj.params_path), overrides=_overrides(), replace=replace)
    emit(result, as_json, lambda r: (
        f"audit {r['audit_id']}: champion v{r['champion']} test acc {r['champion_metrics']['test_acc']:.2f} vs "
        f"retrain {r['retrain_metrics']['test_acc']:.2f} (gap {r['verdict']['test_acc_gap']:+.2f}); "
        f"{r['verdict']['reason']}" + (f" New version {r['replacement']['version']}: {r['replacement']['action']}."
                                       if r.get("replacement") else "")))


@app.command("report")
def report_cmd(batch_id: Annotated[str, typer.Argument(help="the batch whose report to (re)write")]) -> None:
    """Rewrite a batch's HTML report from its stored records (state/reports/<batch>/report.html)."""
    proj = project()
    from tasks import reporting

    path = reporting.regenerate(proj, batch_id)
    typer.echo(f"wrote {path}")


# ---- status, receipts, methods, config ----------------------------------------------------------
@app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Ledger counts by state, champion and challenger versions, current dataset version."""
    proj = project()
    from tasks import bootstrap

    with stdout_to_stderr(as_json):
        info = bootstrap.describe(proj)
    emit(info, as_json, lambda i: "\n".join([
        "requests: " + ", ".join(f"{k} {v}" for k, v in i["requests"].items()),
        f"champion: {i['champion'] or '-'}   challenger: {i['challenger'] or '-'}   ({i['model_name']})",
        "dataset: " + (f"{i['dataset_version']['dataset']} v{i['dataset_version']['version']} "
                       f"({i['dataset_version']['train_samples']} train, {i['dataset_version']['erased_total']} erased)"
                       if i["dataset_version"] else "not prepared"),
    ]))


@receipt_app.command("verify")
def receipt_verify(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Check every receipt: its hash, the chain, and each link (manifest, ledger, data version, MLflow)."""
    proj = project()
    from tasks import audit

    with stdout_to_stderr(as_json):
        result = audit.verify_receipts(proj)
    emit({"ok": result.ok, "checked": result.checked, "problems": result.problems}, as_json,
         lambda d: (f"{d['checked']} receipt(s) verified: chain and links intact" if d["ok"]
                    else "\n".join([f"{len(d['problems'])} problem(s):"] + [f"  {p}" for p in d["problems"]])))
    if not result.ok:
        raise typer.Exit(1)


@app.command("methods")
def methods(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Every registered unlearning method: data contract, paper, scenarios with presets."""
    from forgetflow.methods import METHODS

    rows = [METHODS.get(n).describe() for n in METHODS.names()]
    if not as_json:
        for r in rows:
            r.pop("config")
    emit(rows, as_json, lambda rs: "\n".join(
        f"{r['name']:16s} {r['kind']:9s} needs {r['needs']:28s} presets: {', '.join(r['scenarios']) or '-':32s} {r['paper']}"
        for r in rs))


@config_app.command("validate")
def config_validate(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Validate params.yaml (every method section too) and print the resolved values (credentials masked)."""
    import yaml

    from forgetflow.masking import mask_secrets

    proj = project()
    resolved = mask_secrets(proj.params.model_dump(mode="json"))
    if as_json:
        emit(resolved, True)
        return
    typer.echo(f"{proj.params_path}: valid")
    typer.echo(yaml.safe_dump(resolved, sort_keys=False).rstrip())


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of params.yaml (for editor completion)."""
    from forgetflow.config import Params

    typer.echo(json.dumps(Params.model_json_schema(), indent=2))


def main() -> None:
    """Console entry point: one-line errors, non-zero exits."""
    runtime_env.apply()
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # click hands a command's `raise typer.Exit(n)` back as a return value here
            sys.exit(code)
    except ForgetflowError as exc:
        typer.echo(f"error: {mask_text(str(exc))}", err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own message and exit code
        import os

        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("FORGETFLOW_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(f"error: internal error: {type(exc).__name__}: {mask_text(first)} (FORGETFLOW_DEBUG=1 shows the "
                   "traceback)", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
