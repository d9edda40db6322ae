"""The CLI as a user runs it: subprocesses, one-line errors, non-zero exits, clean JSON."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_project_dir

REPO = Path(__file__).resolve().parents[2]
# a received_at inside intake.max_age_days whenever the suite runs
RECENT = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).strftime("%Y-%m-%dT00:00:00Z")


def ff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "forgetflow.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def proj(tmp_path) -> Path:
    return make_project_dir(tmp_path / "p")


COMMANDS = ["train", "oracle", "demo", "bench", "tune", "serve", "intake", "purge", "promote", "approve", "rollback",
            "history", "audit", "report", "status", "methods", "data", "request", "batch", "receipt", "config"]


def test_help_and_methods(proj):
    """``--help`` lists every command (and imports none of the tools); ``methods`` shows the registry."""
    from forgetflow.methods import METHODS

    out = ff("--help", cwd=proj)
    assert out.returncode == 0 and out.stderr == ""
    listed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 2
              and line.split()[1].isalpha() and not line.split()[1].startswith("-")]
    assert [c for c in listed if c in COMMANDS] == COMMANDS
    sub = ff("request", "--help", cwd=proj)
    assert sub.returncode == 0 and all(f"│ {c} " in sub.stdout for c in ("add", "import", "list", "requeue"))
    out = ff("methods", "--json", cwd=proj)
    assert out.returncode == 0
    names = [m["name"] for m in json.loads(out.stdout)]
    assert names == METHODS.names()
    human = ff("methods", cwd=proj)
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    assert lines[0].split() == ["method", "kind", "needs", "presets", "paper"]
    assert [line.split()[0] for line in lines[1:]] == METHODS.names()


def test_help_imports_no_tool():
    """``forgetflow --help`` stays fast: no Prefect, MLflow, DVC, GX or torch imported to print it."""
    code = ("import sys\nsys.argv = ['forgetflow', '--help']\nfrom forgetflow.cli import main\ntry:\n    main()\n"
            "except SystemExit:\n    pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'prefect', 'mlflow', 'dvc', 'great_expectations', 'torch', 'pandas', 'sklearn'})\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stderr, out.stderr[-2000:]


def test_bad_import_is_one_line_and_nothing_accepted(proj):
    (proj / "r.csv").write_text("request_id,subject_id,sample_id,reason,received_at\n"
                                f"a,s1,,privacy,{RECENT}\n"
                                f"b,s1,x,privacy,{RECENT}\n")
    out = ff("request", "import", "r.csv", cwd=proj)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: r.csv: 1 bad row(s)")
    assert "line 3 (b)" in out.stderr and "Traceback" not in out.stderr
    listed = ff("request", "list", "--json", cwd=proj)
    assert json.loads(listed.stdout) == []


def test_add_list_status_json(proj):
    assert ff("request", "add", "--subject", "subj-00001", "--reason", "privacy", "--id", "q1", cwd=proj).returncode == 0
    again = ff("request", "add", "--subject", "subj-00001", "--reason", "privacy", "--id", "q1",
               "--received-at", RECENT, cwd=proj)
    assert again.returncode == 1 and "different content" in again.stderr
    rows = json.loads(ff("request", "list", "--json", cwd=proj).stdout)
    assert [r["request_id"] for r in rows] == ["q1"] and rows[0]["state"] == "pending"
    status = json.loads(ff("status", "--json", cwd=proj).stdout)
    assert status["requests"]["pending"] == 1 and status["champion"] is None


def test_config_errors_are_one_line(proj):
    out = ff("--set", "train.epochz=3", "status", cwd=proj)
    assert out.returncode == 1 and "train.epochz" in out.stderr and "Traceback" not in out.stderr
    out = ff("batch", "run", "--method", "nope", cwd=proj)
    assert out.returncode == 1 and "unknown method 'nope'" in out.stderr


def test_data_commands_print_ids(proj):
    subjects = ff("data", "subjects", "--limit", "3", cwd=proj)
    assert subjects.returncode == 0 and subjects.stdout.split() == ["subj-00000", "subj-00001", "subj-00002"]
    samples = ff("data", "samples", "--split", "test", "--limit", "2", cwd=proj).stdout.split()
    assert len(samples) == 2 and all(s.startswith("digits-") for s in samples)
    assert ff("data", "samples", "--split", "nope", cwd=proj).returncode == 1
