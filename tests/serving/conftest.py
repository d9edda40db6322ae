"""Real servers on loopback for the serving tests: `prefect server start` and `forgetflow intake`.

Each is a child process in its own process group, with its output in a log file that failing tests print;
every one is killed at teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-intake-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A server process started by a test, with its log."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before answering\n{self.tail()}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name} did not answer {url} within {timeout:.0f} s\n{self.tail()}")

    def stop(self, sig: int = signal.SIGINT, grace: float = 20.0) -> None:
        """Signal the process group, then kill it if it lingers."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._fh.close()


def quiet_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update({"PYTHONPATH": str(REPO), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
                "PREFECT_UI_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port with its own PREFECT_HOME; yields the API URL."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = quiet_env(PREFECT_HOME=str(home), PREFECT_LOGGING_LEVEL="WARNING")
    server = Child("prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                      "--port", str(port)], home / "server.log", env, home)
    url = f"http://127.0.0.1:{port}/api"
    try:
        server.wait_http(f"{url}/health", timeout=180)
        yield url
    finally:
        server.stop(signal.SIGTERM)


@pytest.fixture
def start_child(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start child servers for one test; every one is stopped afterwards."""
    children: list[Child] = []

    def start(name: str, args: list[str], cwd: Path, env: dict[str, str]) -> Child:
        child = Child(name, args, tmp_path / f"{name.replace(' ', '-')}.log", env, cwd)
        children.append(child)
        return child

    yield start
    for child in reversed(children):
        child.stop()


def forgetflow_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "forgetflow.cli", *args]
