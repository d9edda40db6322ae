"""Real servers past one machine, on loopback, started by the tests themselves: a throwaway PostgreSQL
cluster (initdb + pg_ctl in a temporary folder), `mlflow server` on it, `prefect server start` on it, and
Dask clusters. Skipped with a message naming what to install only where PostgreSQL cannot be found.

PostgreSQL refuses to run as root; as root the cluster is created and run as the ``postgres`` user that the
Debian package creates (``runuser -u postgres``). Every server is stopped and its folder removed at teardown.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.serving.conftest import Child, free_port, quiet_env

PG_USER = "forgetflow"
PG_PASSWORD = "forgetflow-test-password"


def _pg_bindir() -> Path | None:
    """The folder of initdb/pg_ctl: Debian's /usr/lib/postgresql/<major>/bin (newest), else the PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class Postgres:
    """A running throwaway PostgreSQL cluster."""

    host: str
    port: int
    folder: Path

    def url(self, database: str, driver: str = "psycopg2") -> str:
        """A SQLAlchemy URL, e.g. ``postgresql+psycopg2://forgetflow:…@127.0.0.1:PORT/db``."""
        return f"postgresql+{driver}://{PG_USER}:{PG_PASSWORD}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database (each test gets its own); returns its psycopg2 URL."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=PG_USER, password=PG_PASSWORD, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL cluster on a free loopback port, for the whole session."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed: no initdb under /usr/lib/postgresql/*/bin or on PATH "
                    "(Debian: apt-get install postgresql, or `make system-deps`)")
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as "
                        "(PostgreSQL refuses root; the Debian postgresql package creates that user)")
        run_as = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="forgetflow-pg-"))
    (folder / "pwfile").write_text(PG_PASSWORD + "\n")
    if owner is not None:
        for path in (folder, folder / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data = folder / "data"
    port = free_port()

    def run(*args: str, timeout: float = 120) -> None:
        proc = subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={folder / 'pwfile'}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c max_connections=200 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options,
            "-w", "-t", "60", "start")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        log = (folder / "server.log").read_text(errors="replace")[-800:] if (folder / "server.log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc}\n{log}") from exc
    try:
        yield Postgres("127.0.0.1", port, folder)
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`mlflow server` with its backend store on PostgreSQL and a proxied artifact store in a folder."""
    home = tmp_path_factory.mktemp("mlflow-server")
    backend = postgres.create_database("mlflow")
    port = free_port()
    args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
            "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]
    # the GenAI job runner (six huey consumer processes) is not used by forgetflow: off, to spare the CPU
    env = quiet_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    server = Child("mlflow server", args, home / "server.log", env, home)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(f"{url}/health", timeout=240)
        yield {"url": url, "artifacts": str(home / "artifacts"), "backend": backend, "log": str(server.log)}
    finally:
        server.stop(signal.SIGTERM, grace=10)


@pytest.fixture(scope="module")
def prefect_server_pg(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`prefect server start` with its database on PostgreSQL (asyncpg); yields the API URL."""
    home = tmp_path_factory.mktemp("prefect-server-pg")
    postgres.create_database("prefect")
    port = free_port()
    env = quiet_env(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="WARNING",
                    PREFECT_API_DATABASE_CONNECTION_URL=postgres.url("prefect", driver="asyncpg"))
    server = Child("prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                      "--port", str(port)], home / "server.log", env, home)
    url = f"http://127.0.0.1:{port}/api"
    try:
        server.wait_http(f"{url}/health", timeout=240)
        yield url
    finally:
        server.stop(signal.SIGTERM)


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3-compatible HTTP endpoint on loopback (moto's standalone server, in memory); yields its URL.

    MinIO is not packaged for Debian or PyPI; moto's server speaks the S3 protocol over HTTP, so DVC's real S3
    client (s3fs/aiobotocore) is what the tests exercise. Skipped when moto[server] or dvc-s3 is missing.
    """
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    pytest.importorskip("dvc_s3", reason="dvc-s3 is not installed (pip install 'dvc[s3]')")
    home = tmp_path_factory.mktemp("s3-server")
    port = free_port()
    server = Child("s3 server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                   home / "server.log", quiet_env(), home)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(f"{url}/moto-api/", timeout=120)
        yield url
    finally:
        server.stop(signal.SIGTERM, grace=10)
