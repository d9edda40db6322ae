"""`forgetflow report BATCH`: the argument names a batch folder under the reports folder, nothing else."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forgetflow.errors import ForgetflowError
from forgetflow.project import Project
from tasks import reporting
from tests.conftest import make_project_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path) -> Project:
    project = Project.load(make_project_dir(tmp_path / "p") / "params.yaml")
    evil = project.root / "elsewhere"  # a batch JSON outside state/reports that the argument could reach
    evil.mkdir()
    (evil / "summary.json").write_text(json.dumps({"batch_id": "../../elsewhere", "requests": []}))
    return project


@pytest.mark.parametrize("batch_id", ["../../elsewhere", "ABSOLUTE", "b-1/../../../elsewhere", ""])
def test_report_refuses_a_batch_id_that_leaves_the_reports_folder(project, batch_id):
    batch_id = str(project.root / "elsewhere") if batch_id == "ABSOLUTE" else batch_id
    with pytest.raises(ForgetflowError, match="batch id"):
        reporting.regenerate(project, batch_id)
    assert not (project.root / "elsewhere" / "report.html").exists()


def test_report_refuses_a_batch_json_of_another_batch(project):
    folder = project.reports_dir / "b-1"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"batch_id": "../../elsewhere"}))
    with pytest.raises(ForgetflowError, match="names batch '../../elsewhere', not 'b-1'"):
        reporting.regenerate(project, "b-1")


def test_the_command_answers_one_line(project):
    out = subprocess.run([sys.executable, "-m", "forgetflow.cli", "report", "../../elsewhere"], cwd=project.root,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(project.root)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: batch id '../../elsewhere' leaves")
    assert not (project.root / "elsewhere" / "report.html").exists()


def test_report_and_batch_json_carry_no_credential(project):
    """A credential that reached a batch's record (an error text, a decision reason) is masked in the batch JSON,
    the HTML page and its Markdown digest."""
    from forgetflow import report

    secret = "Report-Pw-5"
    result = {"batch_id": "b-2", "status": "done", "requests": [], "manifest": {"path": "state/manifests/none.json"},
              "decision": {"action": "unlearn", "rule": "r", "reason": f"could not reach https://ops:{secret}@mlflow.internal"},
              "quarantined": {"r-9": f"source postgresql://ff:{secret}@db/ledger unreachable"},
              "promotion": {"action": "kept", "error": f"s3://bucket/m?X-Amz-Signature={secret} refused"}}
    written = reporting.write_batch_json(project, result)
    path, doc = reporting.render(project, json.loads(written.read_text()))
    texts = {"batch json": written.read_text(), "html": path.read_text(), "markdown": report.render_markdown(doc, "x")}
    assert {k: secret in v for k, v in texts.items()} == {k: False for k in texts}
    assert "https://ops:***@mlflow.internal" in texts["html"]
