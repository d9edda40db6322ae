"""Crash drills: a deletion batch is SIGKILLed inside each step, then a plain ``forgetflow batch run`` must recover.

Usage (from the repository root):

    .venv/bin/python benchmarks/fault_injection.py [--steps claim,erase,...] [--keep DIR]

One digits project (tiny CNN) in a temporary folder, one Prefect server for every process (started here
unless ``PREFECT_API_URL`` is set). For each step, in the batch's order: two requests are filed, a
``forgetflow batch run`` process is started with ``FORGETFLOW_KILL_AT=<step>`` (``forgetflow/faults.py``:
it SIGKILLs itself inside that step, after the step's first side effect), then a plain ``forgetflow batch
run`` runs and the project is checked (:meth:`Drill.check`): no request lost or doubled, every request done
with exactly one receipt, registry versions and aliases, dataset version, DVC cache and remote, receipt
chain (``forgetflow receipt verify``), no leftovers. The table printed at the end is the one in
docs/operations.md ("Crashes and leases"): step → recovered? → seconds of the killed run, of the recovering
run, and of the recovery inside it. ``tests/flows/test_crash_recovery.py`` runs the same drill (no timings).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# the batch's steps in the order they run (flows/deletion_batch.py); each has a kill point inside it.
# The drill's params make every batch unlearn (never retrain) and promote (gates off), so every kill point
# is reached; the oracle, the reference models and the evidence are off to keep each batch short.
TASK_STATE_WAIT_SECONDS = 30  # how long the check waits for finished task runs' states to reach the server
KILL_STEPS = ("claim", "validate", "unlearn", "evaluate", "register", "promote", "erase", "purge", "receipts")

PARAMS = """\
seed: 0
data: {dataset: digits, shard_size: 256}
model: {arch: small-cnn, width: 8}
train: {epochs: 15, batch_size: 64, lr: 0.05, progress: false, device: cpu}
evaluate: {mia_max_shadow: 300, oracle: false}
unlearn: {method: neggrad-plus, preset: null, methods: {neggrad-plus: {forget_passes: 0.1, min_steps: 4}}}
gates: {utility: {enabled: false}, forgetting: {enabled: false}, privacy: {enabled: false}, cost: {enabled: false}}
references: {enabled: false}
evidence: {enabled: false}
retrain: {max_forgotten_fraction: 1.0, max_quality_drift: null, on_gate_failure: false}
batch: {lease_seconds: 20, heartbeat_seconds: 2}
"""



def _json_or_none(rc: int, stdout: str) -> dict[str, Any] | None:
    """A ``batch run --json`` result: its JSON when the run succeeded and printed some, else None."""
    if rc != 0:
        return None
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        return None

class Drill:
    """A digits project driven by ``forgetflow`` processes, and the checks that a crash left nothing wrong."""

    def __init__(self, root: Path, api_url: str, params: str = PARAMS, plain_in_process: bool = False) -> None:
        self.root = Path(root)
        self.api_url = api_url
        self.params_text = params
        self.plain_in_process = plain_in_process  # tests: the plain run is the same command, in this process
        self.filed: list[str] = []
        self.next_subject = 0

    # ---- setup ---------------------------------------------------------------------------------
    def setup(self) -> "Drill":
        """Write params.yaml, make the folder a git repository, prepare version 1 and register the original."""
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q"], cwd=self.root, check=True)
        (self.root / "params.yaml").write_text(self.params_text)
        from tasks import bootstrap

        bootstrap.train_and_register(self.project)
        return self

    @property
    def project(self):
        from forgetflow.project import Project

        return Project.load(self.root / "params.yaml")

    def env(self, **extra: str) -> dict[str, str]:
        from forgetflow import faults

        # the drill's own variables only; the rest (e.g. FORGETFLOW_TOMBSTONE_KEY) must match this process's
        env = {k: v for k, v in os.environ.items() if k not in (faults.KILL_ENV, faults.STOP_ENV)}
        env.update({"PREFECT_API_URL": self.api_url, "PYTHONPATH": str(REPO), "PREFECT_LOGGING_LEVEL": "WARNING"})
        env.update(extra)
        return env

    def file(self, n: int = 2) -> list[str]:
        """File ``n`` privacy requests for data subjects nobody asked about yet."""
        from forgetflow.data import DatasetVersion
        from forgetflow.ledger import make_request

        subjects = DatasetVersion.load(self.project.version_dir).subjects()
        received = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        ids = []
        requests = []
        for _ in range(n):
            subject = subjects[self.next_subject]
            self.next_subject += 1
            rid = f"drill-{self.next_subject:03d}"
            requests.append(make_request(rid, "privacy", subject_id=subject, received_at=received))
            ids.append(rid)
        self.project.open_ledger().add(requests, source="import")
        self.filed += ids
        return ids

    # ---- runs ----------------------------------------------------------------------------------
    def run(self, kill_at: str | None = None, timeout: float = 900.0) -> dict[str, Any]:
        """``forgetflow batch run --json`` in a new process; returns rc, seconds and the JSON result (if any).

        A plain run (no ``kill_at``) of a drill made with ``plain_in_process`` runs the command in this process
        (Typer's test runner; this process must talk to the same Prefect server): no interpreter start-up.
        """
        if kill_at is None and self.plain_in_process:
            return self._run_here()
        env = self.env(**({"FORGETFLOW_KILL_AT": kill_at} if kill_at else {}))
        cmd = [sys.executable, "-m", "forgetflow.cli", "--params", str(self.root / "params.yaml"), "batch", "run",
               "--json"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - start
        return {"rc": proc.returncode, "seconds": seconds, "result": _json_or_none(proc.returncode, proc.stdout),
                "stderr": proc.stderr[-4000:]}

    def _run_here(self) -> dict[str, Any]:
        from typer.testing import CliRunner

        from forgetflow.cli import app

        start = time.perf_counter()
        out = CliRunner().invoke(app, ["--params", str(self.root / "params.yaml"), "batch", "run", "--json"])
        seconds = time.perf_counter() - start
        stderr = out.stderr + (f"\n{type(out.exception).__name__}: {out.exception}" if out.exception else "")
        return {"rc": out.exit_code, "seconds": seconds, "result": _json_or_none(out.exit_code, out.stdout),
                "stderr": stderr[-4000:]}

    # ---- checks --------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Everything that must hold after a recovered batch; each problem is one line (empty: all well)."""
        from forgetflow.data import DatasetVersion
        from forgetflow.gpu_slots import holders
        from tasks import receipt_audit, tracking, versioning
        from tasks.purge import _oid, scan_only
        from tasks.unlearn import gpu_slots_dir

        project = self.project
        book = project.open_ledger()
        problems: list[str] = []
        requests = {r["request_id"]: r for r in book.list()}
        if book.running_batch() is not None:
            problems.append(f"the batch lock is still held: {book.running_batch()}")
        missing = [rid for rid in self.filed if rid not in requests]
        not_done = {rid: requests[rid]["state"] for rid in self.filed if rid in requests and requests[rid]["state"] != "done"}
        if missing or not_done:
            problems.append(f"requests lost {missing} or not done {not_done}")
        receipts = book.receipts()
        per_request: dict[str, int] = {}
        for row in receipts:
            per_request[row["request_id"]] = per_request.get(row["request_id"], 0) + 1
        doubled = {rid: n for rid, n in per_request.items() if n != 1}
        if doubled or sorted(per_request) != sorted(r for r in requests if requests[r]["state"] == "done"):
            problems.append(f"receipts per done request wrong: doubled {doubled}, "
                            f"{len(per_request)} receipted vs {sum(r['state'] == 'done' for r in requests.values())} done")
        verified = receipt_audit.verify_receipts(project)
        if not verified.ok:
            problems.append(f"receipt verify: {verified.problems[:3]}")

        batches = {b["batch_id"]: b for b in book.batches(limit=1000)}
        done_batches = {b for b, row in batches.items() if row["state"] == "done"}
        versions = tracking.versions(project)
        for v in versions:
            batch = v["tags"].get("batch_id")
            if v["tags"].get("forgetflow.role") != "original" and batch not in done_batches:
                problems.append(f"model version {v['version']} of batch {batch} ({batches.get(batch, {}).get('state')}) survived")
        known = {v["version"] for v in versions}
        history = book.alias_history(project.params.tracking.model_name)
        for alias in (tracking.CHAMPION, tracking.CHALLENGER):
            at = tracking.alias_version(project, alias)
            if at is not None and at not in known:
                problems.append(f"{alias} points at missing version {at}")
            moves = [m for m in history if m["alias"] == alias]
            if (moves[-1]["to_version"] if moves else None) != at:
                problems.append(f"{alias} is {at} but the alias history ends at {moves[-1]['to_version'] if moves else None}")
            if any(m["batch_id"] and m["batch_id"] not in done_batches and m["batch_id"] in batches for m in moves):
                problems.append(f"alias history keeps moves of a failed batch ({alias})")

        current = DatasetVersion.load(project.version_dir)
        rows = book.versions(current.meta["dataset"])
        if [r["version"] for r in rows] != list(range(1, len(rows) + 1)) or rows[-1]["version"] != current.version:
            problems.append(f"dataset versions in the ledger {[r['version'] for r in rows]} vs current {current.version}")
        elif rows[-1]["fingerprint"] != current.fingerprint or rows[-1]["dvc_md5"] != versioning.data_md5(project):
            problems.append("the current dataset version differs from the ledger's last one")
        forgotten = sum(int(batches[b].get("forget_samples") or 0) for b in done_batches)
        if current.meta["erased"] != forgotten:
            problems.append(f"{current.meta['erased']} samples erased, done batches forgot {forgotten}")
        if not versioning.status(project)["clean"]:
            problems.append("dvc status: the workspace differs from data.dvc")
        kept = set(versioning.kept_objects(project))
        for store in ("cache", "remote"):
            stored = {_oid(n) for n in versioning.stored_objects(project, store)}
            if kept - stored:
                problems.append(f"DVC {store} lacks {len(kept - stored)} object(s) of the current version")
        scan = scan_only(project)["scan"]
        if not scan["ok"]:
            problems.append(f"erased content still stored: {scan['leaks'] or scan['unreadable']}")

        manifests = {p.stem for p in project.manifests_dir.glob("*.json")}
        if manifests - done_batches:
            problems.append(f"manifests of batches not done: {sorted(manifests - done_batches)}")
        leftovers = [str(p.relative_to(project.root)) for p in (project.state_dir / "candidates").glob("*")]
        leftovers += [str(p.relative_to(project.root)) for folder in (project.state_dir, project.artifacts_dir)
                      for p in folder.rglob("*.tmp")]
        leftovers += [str(p.relative_to(project.root)) for p in project.data_dir.glob(".current.*")]
        if leftovers:
            problems.append(f"files left behind: {leftovers}")
        if any(holders(gpu_slots_dir(project), project.params.batch.gpu_concurrency)):
            problems.append("a GPU slot is still held")
        problems += self._prefect_problems(batches)
        return problems

    def _prefect_problems(self, batches: dict[str, dict[str, Any]]) -> list[str]:
        import uuid

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.exceptions import ObjectNotFound

        problems = []
        ids = [uuid.UUID(b["flow_run_id"]) for b in batches.values() if b.get("flow_run_id")]
        with get_client(sync_client=True) as client:
            for run_id in ids:
                try:
                    run = client.read_flow_run(run_id)
                except ObjectNotFound:
                    continue
                if not run.state.is_final():
                    problems.append(f"Prefect flow run {run.name} is still {run.state.name}")
            # task run states reach the server as events, persisted a moment after the run ended: wait for them
            deadline = time.monotonic() + TASK_STATE_WAIT_SECONDS
            while ids:
                runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
                live = [t.name for t in runs if t.state is not None and not t.state.is_final()]
                if not live or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            if ids:
                if live:
                    problems.append(f"Prefect task runs still {len(live)} unfinished: {live[:3]}")
            try:
                limit = client.read_global_concurrency_limit_by_name("tag:gpu")
                if limit.active_slots:
                    problems.append(f"Prefect limit tag:gpu holds {limit.active_slots} slot(s)")
            except ObjectNotFound:
                pass
        return problems

    def drill(self, step: str) -> dict[str, Any]:
        """File two requests, kill a batch inside ``step``, run a plain batch, check; the table's row."""
        self.file(2)
        killed = self.run(kill_at=step)
        row: dict[str, Any] = {"step": step, "killed_rc": killed["rc"], "killed_s": killed["seconds"]}
        if killed["rc"] != -signal.SIGKILL:
            row.update(recovered=False, problems=[f"the killed run ended with rc {killed['rc']}: {killed['stderr'][-600:]}"])
            return row
        plain = self.run()
        row.update(plain_rc=plain["rc"], plain_s=plain["seconds"])
        result = plain["result"] or {}
        row["recover_s"] = (result.get("seconds") or {}).get("recover")
        row["recovered_lines"] = result.get("recovered", [])
        # a batch rolled forward took its requests with it: the plain run then finds nothing pending
        problems = [] if plain["rc"] == 0 and result.get("status") in ("done", "nothing-to-do") else \
            [f"the plain run failed (rc {plain['rc']}, status {result.get('status')}): {plain['stderr'][-800:]}"]
        problems += self.check()
        row.update(recovered=not problems, problems=problems)
        return row


# ---- a Prefect server for the drill's processes ----------------------------------------------------
def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    """``prefect server start`` on a free loopback port (own home, UI and telemetry off); waits for health."""
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true"}
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"no Prefect server answered at {url} (log: {home / 'server.log'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default=",".join(KILL_STEPS), help="comma-separated steps (default: all, in order)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the project in this folder")
    args = ap.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    unknown = set(steps) - set(KILL_STEPS)
    if unknown:
        ap.error(f"unknown step(s) {sorted(unknown)}; known: {', '.join(KILL_STEPS)}")

    base = args.keep or Path(tempfile.mkdtemp(prefix="forgetflow-drill-"))
    base.mkdir(parents=True, exist_ok=True)
    (base / "prefect").mkdir(exist_ok=True)
    os.environ["PREFECT_HOME"] = str(base / "prefect")
    server = None
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        server, api = start_prefect_server(base / "prefect")
        os.environ["PREFECT_API_URL"] = api
    from forgetflow import runtime_env

    runtime_env.apply()
    try:
        drill = Drill(base / "project", api)
        t = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # DVC's and MLflow's chatter: keep stdout for the table
            drill.setup()
        print(f"setup {time.perf_counter() - t:.1f} s ({base})", file=sys.stderr)
        rows = []
        for step in steps:
            row = drill.drill(step)
            rows.append(row)
            print(json.dumps(row, default=str), file=sys.stderr)
        print("| step killed | recovered? | killed run (s) | recovering run (s) | of which recovery (s) |")
        print("|---|---|---|---|---|")
        for r in rows:
            rec = "yes" if r["recovered"] else "NO: " + "; ".join(r["problems"])[:200]
            recover_s = f"{r['recover_s']:.1f}" if r.get("recover_s") is not None else "-"
            print(f"| {r['step']} | {rec} | {r['killed_s']:.1f} | {r.get('plain_s', float('nan')):.1f} | {recover_s} |")
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
