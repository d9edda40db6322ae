"""Request intake on the command line: the received_at bound, truncated import rows, and no credential in output."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_project_dir

REPO = Path(__file__).resolve().parents[2]
HEADER = "request_id,subject_id,sample_id,reason,received_at\n"


def ff(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PYTHONPATH": str(REPO)} | env
    return subprocess.run([sys.executable, "-m", "forgetflow.cli", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def _rows(root: Path) -> list[dict]:
    return json.loads(ff("request", "list", "--json", cwd=root).stdout)


def test_add_refuses_a_date_older_than_the_bound(tmp_path):
    root = make_project_dir(tmp_path / "p")
    out = ff("request", "add", "--id", "old", "--subject", "s1", "--reason", "privacy", "--received-at",
             "1970-01-01T00:00:00Z", cwd=root)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: received_at 1970-01-01T00:00:00+00:00 is more than 365 days ago "
                                 "(intake.max_age_days)")
    ok = ff("--set", "intake.max_age_days=36500", "request", "add", "--id", "old", "--subject", "s1", "--reason",
            "privacy", "--received-at", "1970-01-01T00:00:00Z", cwd=root)
    assert ok.returncode == 0, ok.stderr
    assert [r["received_at"] for r in _rows(root)] == ["1970-01-01T00:00:00+00:00"]


def test_import_refuses_a_truncated_row_naming_its_line(tmp_path):
    root = make_project_dir(tmp_path / "p")
    (root / "r.csv").write_text(HEADER + "ok-1,s1,,privacy,\nbad-15,SUBJ,,privacy\no-1,s2,,privacy,1999-12-31T00:00:00Z\n")
    out = ff("request", "import", "r.csv", cwd=root)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: r.csv: 2 bad row(s)")
    assert "line 3 (bad-15): 4 fields where the header has 5" in out.stderr
    assert "line 4 (o-1): received_at 1999-12-31T00:00:00+00:00 is more than 365 days ago" in out.stderr
    assert _rows(root) == []  # all or nothing


def test_config_validate_and_errors_print_no_credential(tmp_path):
    extra = ("ledger: {url: 'postgresql://ff:Cli-Pw-8@db.internal/ledger'}\n"
             "versioning: {remote_options: {account_key: 'Cli-Key-9'}}\n")
    root = make_project_dir(tmp_path / "p", extra)
    out = ff("config", "validate", cwd=root)
    validated = out.stdout
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{root / 'params.yaml'}: valid")
    assert "postgresql://ff:***@db.internal/ledger" in out.stdout and "account_key: '***'" in out.stdout
    resolved = json.loads(ff("config", "validate", "--json", cwd=root).stdout)
    assert resolved["versioning"]["remote_options"] == {"account_key": "***"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = ff("serve", cwd=root, PREFECT_HOME=str(tmp_path / "ph"), PREFECT_API_URL=f"http://ops:Api-Pw-10@127.0.0.1:{port}/api")
    assert out.returncode == 1 and f"PREFECT_API_URL=http://ops:***@127.0.0.1:{port}/api" in out.stderr
    everything = out.stdout + out.stderr + validated
    assert not [s for s in ("Cli-Pw-8", "Cli-Key-9", "Api-Pw-10") if s in everything]
