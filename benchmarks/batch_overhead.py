"""Time deletion batches on Fashion-MNIST and split each into orchestration overhead and compute.

Usage (from the repository root):

    .venv/bin/python benchmarks/batch_overhead.py [--batches 3] [--requests 20] [--keep DIR]

A fresh project is made in a temporary folder (its own ledger, MLflow store, DVC repository + remote and
Prefect home, its own version 1 and original; only the oracle cache is shared with the repository's
artifacts/oracles). Earlier versions pointed the whole artifacts folder at the repository's, so the batch's
purge rewrote the repository's version 1: never share a project's artifacts folder. Each batch forgets the samples of ``--requests`` data subjects. Per-task wall times are read
back from Prefect's own task-run records; the table splits them into

* compute: the unlearning method itself, the retrained oracle, the evaluation;
* overhead: Prefect (flow wall time not spent inside tasks), GX (resolve + validate), MLflow (register,
  promote, loading the champion), DVC (writing the new version, dvc add + push), ledger (claim, quarantine,
  receipts + the completing transaction).

The first batch of a process also pays for starting Prefect's ephemeral server; it is reported apart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CATEGORY = {
    "claim-requests": "ledger", "quarantine-requests": "ledger", "issue-receipts": "ledger", "decide": "ledger",
    "record-quality": "ledger", "resolve-and-validate": "GX", "register": "MLflow", "promote": "MLflow",
    "gate": "MLflow", "supersede": "MLflow", "erase": "DVC", "purge": "DVC", "report": "report",
    "train-oracle": "compute", "evaluate": "compute", "unlearn": "compute", "retrain": "compute",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20, help="data subjects forgotten per batch")
    ap.add_argument("--keep", type=Path, default=None, help="keep the project in this folder")
    ap.add_argument("--no-oracle", action="store_true",
                    help="evaluate.oracle off and no retrain on gate failure (overhead only; compute is smaller)")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="forgetflow-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    params = (REPO / "params.yaml").read_text()
    params = params.replace("  progress: true", "  progress: false")
    if args.no_oracle:
        params = params.replace("  on_gate_failure: true", "  on_gate_failure: false")
    else:  # the batches of docs/overhead.md train their oracle; params.yaml no longer does by default
        params = params.replace("  oracle: false", "  oracle: true")
    # the project's own artifacts (its version 1, its original: a purge rewrites them), but the repository's
    # oracle cache, so oracles already trained for these forget sets are reused
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    (REPO / "artifacts" / "oracles").mkdir(parents=True, exist_ok=True)
    (root / "artifacts" / "oracles").symlink_to(REPO / "artifacts" / "oracles")
    (root / "params.yaml").write_text(params)
    os.environ["PREFECT_HOME"] = str(root / "state" / "prefect")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    from forgetflow import runtime_env
    from forgetflow.ledger import make_request
    from forgetflow.project import Project

    project = Project.load(root / "params.yaml")
    runtime_env.apply(project)
    from tasks import bootstrap

    t = time.perf_counter()
    info = bootstrap.train_and_register(project)
    print(f"setup: original {'cached' if info.cached else 'trained'} ({info.seconds:.1f} s training), "
          f"bootstrap {time.perf_counter() - t:.1f} s", file=sys.stderr)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.deletion_batch import deletion_batch

    version = bootstrap.ensure_data(project)
    subjects = version.subjects()
    results = []
    for b in range(args.batches):
        chosen = subjects[b * args.requests : (b + 1) * args.requests]
        now = dt.datetime.now(dt.timezone.utc)
        project.open_ledger().add([make_request(f"bench-{b}-{i}", "privacy", subject_id=s, received_at=now)
                                   for i, s in enumerate(chosen)])
        start = time.perf_counter()
        result = deletion_batch(params_path=str(project.params_path))
        wall = time.perf_counter() - start
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[result["flow_run_id"]])))
            flow_run = client.read_flow_run(result["flow_run_id"])
        tasks = {}
        for run in runs:
            name = run.name.rsplit("-", 1)[0]  # "claim-requests-f41" → "claim-requests"
            tasks[name] = tasks.get(name, 0.0) + (run.total_run_time.total_seconds() if run.total_run_time else 0.0)
        flow_time = flow_run.total_run_time.total_seconds() if flow_run.total_run_time else wall
        results.append({"batch": b, "wall": wall, "flow": flow_time, "tasks": tasks, "result": result})
        print(f"batch {b}: {result['forget_samples']} samples, wall {wall:.1f} s", file=sys.stderr)

    print()
    print(f"| batch | forget | decision | compute: unlearn | oracle | retrain | evaluate | overhead: Prefect | GX | MLflow | DVC | ledger | report | overhead total | wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        t = r["tasks"]
        method = r["result"]["seconds"].get("unlearn", 0.0)  # a retrain batch has no unlearning step
        cats = {"compute": 0.0, "GX": 0.0, "MLflow": 0.0, "DVC": 0.0, "ledger": 0.0, "report": 0.0}
        for name, secs in t.items():
            cats[CATEGORY.get(name, "ledger")] += secs
        mlflow_load = t.get("unlearn", 0.0) - method  # the unlearn task loads the champion from MLflow
        cats["MLflow"] += mlflow_load
        prefect = r["wall"] - sum(t.values())
        overhead = prefect + cats["GX"] + cats["MLflow"] + cats["DVC"] + cats["ledger"] + cats["report"]
        label = f"{r['batch']}{' (cold)' if r['batch'] == 0 else ''}"
        decision = (r["result"].get("decision") or {}).get("action", "?") if isinstance(r["result"].get("decision"), dict) else r["result"].get("decision", "?")
        print(f"| {label} | {r['result']['forget_samples']} | {decision} | {method:.1f} | {t.get('train-oracle', 0):.1f} | "
              f"{t.get('retrain', 0):.1f} | {t.get('evaluate', 0):.1f} | {prefect:.1f} | {cats['GX']:.1f} | "
              f"{cats['MLflow']:.1f} | {cats['DVC']:.1f} | {cats['ledger']:.1f} | {cats['report']:.1f} | "
              f"**{overhead:.1f}** | {r['wall']:.1f} |")
    print(f"\nproject: {root}" + ("" if args.keep else " (removed)"))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
