"""Load benchmark of request intake and batch preparation (a script that prints a table, not a test).

    .venv/bin/python benchmarks/load.py                 # everything, in a temporary folder (about 2-4 min)
    .venv/bin/python benchmarks/load.py --only ledger   # one part: ledger, http, batch, parallel
    .venv/bin/python benchmarks/load.py --ledger-url postgresql+psycopg2://...   # another ledger

What it measures, each on real parts (SQLite ledger in WAL mode, `forgetflow intake` served by uvicorn on
loopback, the batch's own claim / resolve / Great Expectations code on a Fashion-MNIST dataset version):

1. ledger: requests/s accepted by ``Ledger.add`` after ``make_request`` validation, one request per call (the
   CLI and single-request HTTP path) and 500 per call (an import or a list POST).
2. http: requests/s accepted by the HTTP intake, single-request POSTs and 100-request list POSTs, from
   client processes over keep-alive connections. Events are off (no PREFECT_API_URL), as they are sent from
   a background thread, one per burst, and never on the request path.
3. batch: seconds to claim, resolve and validate (GX) a batch of 10,000 requests (the deletion batch's own
   ``claim-requests`` and ``resolve-and-validate`` task bodies); GX's one-off import is reported apart.
4. parallel: 8 processes file requests at once, each its own ids plus the same shared ids (retries of one
   another), directly into the ledger and over HTTP; afterwards the ledger must hold every id exactly once
   with the content that was sent (no request lost or doubled).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forgetflow import runtime_env  # noqa: E402

runtime_env.apply()

from forgetflow.ledger import Ledger, make_request  # noqa: E402

TOKEN = "load-benchmark-token-0123456789"
# one received_at for every request, a day back: inside intake.max_age_days whenever the benchmark runs
WHEN = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
ROWS: list[tuple[str, str, str, str]] = []  # (part, measurement, value, note)


def row(part: str, what: str, value: str, note: str = "") -> None:
    ROWS.append((part, what, value, note))
    print(f"  {part:9s} {what:58s} {value:>14s}  {note}", flush=True)


def request_body(rid: str, i: int) -> dict[str, str]:
    return {"request_id": rid, "subject_id": f"subj-{i:06d}", "reason": "privacy", "received_at": WHEN}


# ---- 1. the ledger directly ---------------------------------------------------------------------
def bench_ledger(url: str, n_single: int, n_bulk: int) -> None:
    book = Ledger(url)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n_single):
        book.add([make_request(f"one-{i}", "privacy", subject_id=f"subj-{i:06d}", received_at=WHEN)], source="bench")
    single, cpu = time.perf_counter() - t0, time.process_time() - c0
    row("ledger", f"make_request + Ledger.add, 1 request per call ({n_single})", f"{n_single / single:,.0f} req/s",
        f"{cpu / n_single * 1000:.2f} ms CPU per request = {n_single / cpu:,.0f} req/s per free core")
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, n_bulk, 500):
        book.add([make_request(f"bulk-{i}", "privacy", subject_id=f"subj-{i:06d}", received_at=WHEN)
                  for i in range(start, min(start + 500, n_bulk))], source="bench")
    bulk, cpu = time.perf_counter() - t0, time.process_time() - c0
    row("ledger", f"make_request + Ledger.add, 500 per call ({n_bulk})", f"{n_bulk / bulk:,.0f} req/s",
        f"{n_bulk / cpu:,.0f} req/s per free core")
    book.close()


# ---- 2. the HTTP intake -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IntakeServer:
    """`forgetflow intake` in a child process on a free loopback port."""

    def __init__(self, project_root: Path, workers: int = 1) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update({"FORGETFLOW_INTAKE_TOKEN": TOKEN, "PYTHONPATH": str(REPO)})
        self.log = (project_root / "intake.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "forgetflow.cli", "intake", "--port", str(self.port),
                                      "--workers", str(workers)],
                                     cwd=project_root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the intake did not start; see {self.log.name}")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the intake and its worker processes."""
        import psutil

        parent = psutil.Process(self.proc.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [parent, *parent.children(recursive=True)])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


def _post_all(port: int, bodies: list[Any], barrier: Any, out: Any) -> None:
    """One client process: POST each body on one keep-alive connection; report (ok, failed, statuses)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    barrier.wait()
    for body in bodies:
        conn.request("POST", "/requests", body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        response.read()
        statuses[response.status] = statuses.get(response.status, 0) + 1
    out.put(statuses)


def run_clients(port: int, per_client: list[list[Any]]) -> tuple[float, dict[int, int]]:
    """Start one process per body list, release them together, wait; returns (seconds, status counts)."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(per_client) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_post_all, args=(port, bodies, barrier, out)) for bodies in per_client]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    totals: dict[int, int] = {}
    for _ in procs:
        for status, n in out.get(timeout=600).items():
            totals[status] = totals.get(status, 0) + n
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    return seconds, totals


def bench_http(root: Path, n_single: int, n_lists: int, clients: int, workers: int) -> None:
    server = IntakeServer(root, workers)
    tag = f"w{workers}"
    try:
        bodies = [request_body(f"h1{tag}-{i}", i) for i in range(n_single)]
        cpu = server.cpu_seconds()
        seconds, statuses = run_clients(server.port, [bodies[c::clients] for c in range(clients)])
        cpu = server.cpu_seconds() - cpu
        row("http", f"POST /requests, 1 request per POST ({n_single}, {clients} clients, {workers} worker(s))",
            f"{n_single / seconds:,.0f} req/s", f"intake {cpu / n_single * 1000:.2f} ms CPU per request = "
            f"{n_single / cpu:,.0f} req/s per free core; statuses {statuses}")
        lists = [[request_body(f"hl{tag}-{k}-{i}", i) for i in range(100)] for k in range(n_lists)]
        cpu = server.cpu_seconds()
        seconds, statuses = run_clients(server.port, [lists[c::clients] for c in range(clients)])
        cpu = server.cpu_seconds() - cpu
        row("http", f"POST /requests, 100 requests per POST ({n_lists * 100}, {clients} clients, {workers} worker(s))",
            f"{n_lists * 100 / seconds:,.0f} req/s", f"intake {n_lists * 100 / cpu:,.0f} req/s per free core; "
            f"statuses {statuses}")
    finally:
        server.stop()


# ---- 3. claim, resolve and validate a batch of 10,000 -------------------------------------------
def bench_batch(root: Path, n_requests: int) -> None:
    from forgetflow import pipeline
    from forgetflow.project import Project

    (root / "params.yaml").write_text("data: {dataset: fashion-mnist}\nversioning: {enabled: false}\n"
                                      f"batch: {{max_requests: {n_requests}}}\n")
    project = Project.load(root / "params.yaml")
    t0 = time.perf_counter()
    version = pipeline.current_version(project)
    row("batch", "prepare the Fashion-MNIST dataset version (once)", f"{time.perf_counter() - t0:.1f} s",
        f"{len(version.rows('train'))} training samples")
    train = version.rows("train")
    subjects = version.subjects()
    half = n_requests // 2
    chosen = set(subjects[:half])
    owned = train[train["subject_id"].isin(chosen)]
    loose = train[~train["subject_id"].isin(chosen)]["sample_id"].tolist()[: n_requests - half]
    requests = ([make_request(f"bs-{i}", "privacy", subject_id=s, received_at=WHEN) for i, s in enumerate(subjects[:half])]
                + [make_request(f"bx-{i}", "mislabelled", sample_id=s, received_at=WHEN) for i, s in enumerate(loose)])
    project.open_ledger().add(requests, source="bench")
    forget = len(owned) + len(loose)

    from tasks.claims import open_batch
    from tasks.manifests import resolve_and_validate

    t0 = time.perf_counter()
    from tasks import validation

    validation._context()  # GX import + ephemeral context: once per process
    gx_start = time.perf_counter() - t0
    row("batch", "GX import and context (once per process, not per batch)", f"{gx_start:.2f} s")
    for attempt in (1, 2):
        batch_id = f"bench-{attempt}"
        clock, cpu = time.perf_counter(), time.process_time()
        claimed = open_batch.fn(project, batch_id)
        t_claim, c_claim = time.perf_counter() - clock, time.process_time() - cpu
        clock, cpu = time.perf_counter(), time.process_time()
        resolved = resolve_and_validate.fn(project, batch_id, claimed)
        t_rv, c_rv = time.perf_counter() - clock, time.process_time() - cpu
        quarantined = len(resolved.quarantine)
        row("batch", f"claim {len(claimed)} requests (run {attempt})", f"{t_claim:.2f} s", f"{c_claim:.2f} s CPU")
        row("batch", f"resolve + validate (GX) + write manifest, {forget} samples (run {attempt})", f"{t_rv:.2f} s",
            f"{c_rv:.2f} s CPU; {quarantined} quarantined")
        row("batch", f"claim + resolve + validate, total (run {attempt})", f"{t_claim + t_rv:.2f} s",
            f"{c_claim + c_rv:.2f} s CPU; target <= 5 s")
        book = project.open_ledger()
        book.fail_batch(batch_id, "benchmark: give the requests back")


# ---- 4. eight processes at once -----------------------------------------------------------------
def _ledger_worker(url: str, worker: int, own: int, shared: int, barrier: Any, out: Any) -> None:
    book = Ledger(url)
    ids = [f"p{worker}-{i}" for i in range(own)] + [f"shared-{i}" for i in range(shared)]
    order = sorted(ids, key=lambda rid: hash((rid, worker)))  # every worker interleaves differently
    accepted = duplicates = errors = 0
    barrier.wait()
    for rid in order:
        try:
            result = book.add([make_request(rid, "privacy", subject_id=f"subj-{rid}", received_at=WHEN)], source="bench")
            accepted += len(result.accepted)
            duplicates += len(result.duplicates)
        except Exception:  # noqa: BLE001 - counted and reported: any error is a failure of the benchmark
            errors += 1
    out.put((accepted, duplicates, errors))


def check_ledger(url: str, expected_ids: set[str]) -> str:
    """Every id once, with the content that was sent: '' when so, else what is wrong."""
    rows = [r for r in Ledger(url).list() if r["request_id"] in expected_ids]
    ids = [r["request_id"] for r in rows]
    lost = expected_ids - set(ids)
    doubled = len(ids) - len(set(ids))
    wrong = [r["request_id"] for r in rows if r["subject_id"] != f"subj-{r['request_id']}"]
    problems = ([f"{len(lost)} lost"] if lost else []) + ([f"{doubled} doubled"] if doubled else []) + \
               ([f"{len(wrong)} with other content"] if wrong else [])
    return ", ".join(problems)


def bench_parallel(root: Path, url: str, processes: int, own: int, shared: int) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=_ledger_worker, args=(url, w, own, shared, barrier, out)) for w in range(processes)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    results = [out.get(timeout=600) for _ in procs]
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    sent = processes * (own + shared)
    accepted = sum(r[0] for r in results)
    errors = sum(r[2] for r in results)
    expected = {f"p{w}-{i}" for w in range(processes) for i in range(own)} | {f"shared-{i}" for i in range(shared)}
    problems = check_ledger(url, expected)
    verdict = "ok" if not problems and not errors and accepted == len(expected) else f"FAILED: {problems or ''} errors {errors}"
    row("parallel", f"{processes} processes x {own + shared} Ledger.add ({shared} ids shared by all)",
        f"{sent / seconds:,.0f} req/s", f"{accepted} accepted of {len(expected)} ids; ledger check {verdict}")

    server = IntakeServer(root, workers=2)
    try:
        per = [[{**request_body(f"hp{w}-{i}", i), "subject_id": f"subj-hp{w}-{i}"} for i in range(own)]
               + [{**request_body(f"hshared-{i}", i), "subject_id": f"subj-hshared-{i}"} for i in range(shared)]
               for w in range(processes)]
        per = [sorted(bodies, key=lambda b, w=w: hash((b["request_id"], w))) for w, bodies in enumerate(per)]
        seconds, statuses = run_clients(server.port, per)
    finally:
        server.stop()
    expected = {f"hp{w}-{i}" for w in range(processes) for i in range(own)} | {f"hshared-{i}" for i in range(shared)}
    problems = check_ledger(url, expected)
    ok = not problems and set(statuses) <= {200, 201} and statuses.get(201, 0) == len(expected)
    row("parallel", f"{processes} client processes x {own + shared} POSTs ({shared} ids shared by all), 2 workers",
        f"{sent / seconds:,.0f} req/s", f"statuses {statuses}; ledger check {'ok' if ok else 'FAILED: ' + problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["ledger", "http", "batch", "parallel"], action="append")
    parser.add_argument("--ledger-url", help="SQLAlchemy URL of an empty ledger (default: SQLite in the temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--requests", type=int, default=10_000, help="batch size for the claim/resolve/validate part")
    args = parser.parse_args()
    parts = args.only or ["ledger", "http", "batch", "parallel"]
    root = Path(tempfile.mkdtemp(prefix="forgetflow-load-"))
    print(f"forgetflow load benchmark in {root} ({os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f})")
    steps: dict[str, Callable[[], None]] = {}

    def project_dir(name: str, ledger: str | None = None) -> tuple[Path, str]:
        folder = root / name
        folder.mkdir()
        url = ledger or f"sqlite:///{folder / 'ledger.db'}"
        (folder / "params.yaml").write_text(f"ledger: {{url: '{url}'}}\nintake: {{max_items: 1000}}\n")  # batch: rewritten
        return folder, url

    steps["ledger"] = lambda: bench_ledger(project_dir("ledger", args.ledger_url)[1], 3000, 30_000)
    steps["http"] = lambda: [bench_http(project_dir(f"http{w}", args.ledger_url)[0], 4000, 100, 4, w) for w in (1, 2)]
    steps["batch"] = lambda: bench_batch(project_dir("batch")[0], args.requests)
    steps["parallel"] = lambda: bench_parallel(*project_dir("parallel", args.ledger_url), 8, 400, 100)
    try:
        for part in parts:
            steps[part]()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs)")
    print("\n| part | measurement | result | note |\n|---|---|---:|---|")
    for part, what, value, note in ROWS:
        print(f"| {part} | {what} | {value} | {note} |")


if __name__ == "__main__":
    main()
