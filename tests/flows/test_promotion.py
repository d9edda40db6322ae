"""Promotion, rollback, history, the unlearn-or-retrain decision, oracle audits and batch reports, end to end on
digits with the real components: Prefect (test harness, including a paused flow run resumed with input), MLflow
(SQLite store), DVC, Great Expectations and the SQLite ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from flows.audit import oracle_audit
from flows.deletion_batch import deletion_batch
from flows.promotion import promotion
from forgetflow.data import DatasetVersion
from forgetflow.errors import BatchFailed, PromotionRefused
from forgetflow.ledger import parse_csv
from forgetflow.project import Project
from tasks import receipt_audit, tracking
from tasks import promotion as promoting
from tasks import reporting

REPO = Path(__file__).resolve().parents[2]


def _configure(project: Project, **sections) -> Project:
    """Change sections of the project's params.yaml (after bootstrap) and reload the project."""
    data = yaml.safe_load(project.params_path.read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    project.params_path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Project.load(project.params_path)


def _file_requests(project: Project, with_bad: bool = True) -> list[str]:
    version = DatasetVersion.load(project.version_dir)
    subjects = version.subjects()
    text = ("request_id,subject_id,sample_id,reason,received_at\n"
            f"r1,{subjects[0]},,privacy,2026-11-01T10:00:00Z\n"
            f"r2,{subjects[1]},,privacy,2026-11-01T11:00:00Z\n")
    if with_bad:
        text += f"r3,,{version.rows('test')['sample_id'].iloc[0]},other,2026-11-01T12:00:00Z\n"
        text += "r4,subj-nobody,,privacy,2026-11-01T13:00:00Z\n"
    # fixed dates: the received_at age bound (intake.max_age_days) is tested in tests/unit/ledger
    project.open_ledger().add(parse_csv(text, max_age_days=None), source="import")
    return subjects[:2]


def ff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "forgetflow.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_failed_gates_keep_a_superseded_champion_which_rollback_refuses(digits_project, prefect_harness):
    # an impossible utility floor makes unlearning fail the gates; no retrain on failure
    project = _configure(digits_project, gates={"min_test_acc": 100.0}, retrain={"on_gate_failure": False})
    _file_requests(project)
    result = deletion_batch(params_path=str(project.params_path))
    batch = result["batch_id"]

    assert result["decision"]["action"] == "unlearn" and result["decision"]["rule"] == "within-limits"
    assert result["promotion"]["action"] == "keep-champion" and not result["promoted"]
    assert result["gates"]["utility"]["passed"] is False and "NOT met" in result["gates"]["utility"]["detail"]
    assert tracking.alias_version(project, tracking.CHAMPION) == "1"
    assert tracking.alias_version(project, tracking.CHALLENGER) == result["model_version"] == "2"
    # the champion still holds the erased samples: superseded (tag + ledger row), the challenger is not
    assert [(r["version"], r["erased_by_batch"]) for r in result["superseded"]] == [("1", batch)]
    assert tracking.version_info(project, "1")["tags"]["forgetflow.superseded_by"] == batch
    assert "forgetflow.superseded_by" not in tracking.version_info(project, "2")["tags"]
    assert tracking.version_info(project, "2")["tags"]["gates"] == "failed: utility"
    receipt = json.loads((project.root / result["receipts"][0]).read_text())
    assert receipt["decision"]["action"] == "unlearn" and receipt["decision"]["promotion"]["action"] == "keep-champion"
    assert receipt["superseded"] == [{"version": "1", "erased_by_batch": batch}]
    assert receipt_audit.verify_receipts(project).ok

    # history (the CLI, as a user runs it): every alias move with time, reason and actor; the supersession
    out = ff("history", "--json", cwd=project.root)
    assert out.returncode == 0, out.stderr
    hist = json.loads(out.stdout)
    kinds = [(e["kind"], e.get("alias"), e.get("to_version") or e.get("version")) for e in hist["events"]]
    assert kinds == [("alias", "champion", "1"), ("alias", "challenger", "2"), ("superseded", None, "1")]
    assert all(e["at"] and e["reason"] and e["actor"] for e in hist["events"])
    assert "deletion-batch flow" in hist["events"][1]["actor"]
    assert {v["version"]: v["holds_erased_data_of"] for v in hist["versions"]} == {"1": [batch], "2": []}
    assert {v["version"]: v["aliases"] for v in hist["versions"]} == {"1": ["champion"], "2": ["challenger"]}

    # promotion re-checks the gates: refused without --override, recorded with who and why with it
    with pytest.raises(PromotionRefused, match="fails the gate"):
        promoting.promote_version(project, "2", "looks fine", "tester")
    with pytest.raises(PromotionRefused, match="reason is required"):
        promoting.promote_version(project, "2", " ", "tester", override=True)

    # the oracle audit finds the champion holding erased data and replaces it with an exact retrain
    audited = oracle_audit(params_path=str(project.params_path))
    assert audited["champion"] == "1" and audited["held_batches"] == [batch]
    assert audited["replacement"]["action"] == "promote"
    v3 = audited["replacement"]["version"]
    assert v3 == "3" and tracking.alias_version(project, tracking.CHAMPION) == "3"
    tags = tracking.version_info(project, "3")["tags"]
    assert tags["forgetflow.role"] == "retrain" and tags["dataset_version"] == "2"
    assert int(tags["train_samples"]) == DatasetVersion.load(project.version_dir).meta["counts"]["train"]
    gaps = project.open_ledger().quality("audit_test_acc_gap")
    assert [g["batch_id"] for g in gaps] == [audited["audit_id"]] and gaps[0]["model_version"] == "1"
    assert tracking.run_metrics(project, audited["mlflow_run_id"])["audit_retrain_test_acc"] == pytest.approx(
        audited["retrain_metrics"]["test_acc"])
    assert project.open_ledger().batch(audited["audit_id"])["state"] == "done"

    # a person overrides the gates for version 2 (clean: it unlearned the batch)
    done = promoting.promote_version(project, "2", "DPO accepts the utility loss", "dpo@example via cli", override=True)
    assert done["override"] and done["from"] == "3" and done["to"] == "2"
    # rollback: to the previous champion (3, clean) is allowed; to 1 (holds erased data) is refused, in one line
    back = ff("rollback", "--reason", "incident 42", cwd=project.root)
    assert back.returncode == 0, back.stderr
    assert tracking.alias_version(project, tracking.CHAMPION) == "3"
    refused = ff("rollback", "--to", "1", "--reason", "try", cwd=project.root)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"error: version 1 still holds data erased by batch {batch}: rollback refused")
    assert "free of erased data: 2" in refused.stderr and "Traceback" not in refused.stderr
    assert tracking.alias_version(project, tracking.CHAMPION) == "3"

    moves = [m for m in project.open_ledger().alias_history() if m["alias"] == "champion"]
    assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, "1"), ("1", "3"), ("3", "2"), ("2", "3")]
    assert "override of failed gates utility: DPO accepts" in moves[2]["reason"] and moves[2]["actor"] == "dpo@example via cli"
    assert moves[3]["reason"] == "rollback: incident 42" and "via forgetflow rollback" in moves[3]["actor"]
    assert "oracle-audit flow" in moves[1]["actor"]


@pytest.mark.slow
def test_retrain_decision_registers_an_exact_model_and_the_report_tells(digits_project, prefect_harness):
    project = _configure(digits_project, retrain={"max_forgotten_fraction": 0.001})
    _file_requests(project)
    result = deletion_batch(params_path=str(project.params_path))
    batch, version = result["batch_id"], result["model_version"]

    assert result["decision"]["action"] == "retrain" and result["decision"]["rule"] == "forgotten-fraction"
    assert "retrain.max_forgotten_fraction" in result["decision"]["reason"]
    assert result["method"] == "retrain" and result["promoted"] and result["promotion"]["action"] == "promote"
    tags = tracking.version_info(project, version)["tags"]
    assert tags["forgetflow.role"] == "retrain" and tags["decision"] == "retrain"
    assert tags["decision_rule"] == "forgotten-fraction" and "parent_model_version" not in tags
    assert tracking.alias_version(project, tracking.CHAMPION) == version
    # the retrained model is the oracle: zero gap, and it holds no erased data while the original does
    assert result["gaps"]["avg_gap"] == pytest.approx(0.0, abs=1e-9)
    assert result["superseded"][0]["version"] == "1"
    receipt = json.loads((project.root / result["receipts"][0]).read_text())
    assert receipt["decision"]["action"] == "retrain" and receipt["decision"]["rule"] == "forgotten-fraction"
    assert "max_forgotten_fraction" in receipt["decision"]["reason"]
    summary = json.loads(reporting.batch_json_path(project, batch).read_text())
    assert summary["decision"]["action"] == "retrain"
    rows = project.open_ledger().quality("retrained")
    assert [(r["batch_id"], r["value"]) for r in rows] == [(batch, 1.0)]

    # the report: on disk, in MLflow, as Prefect artifacts; every section a privacy officer needs
    html = (project.root / result["report"]["path"]).read_text()
    assert result["report"]["path"] == f"state/reports/{batch}/report.html"
    for section in ('id="summary"', 'id="requests"', 'id="validation"', 'id="decision"', 'id="metrics"',
                    'id="plots"', 'id="gates"', 'id="erasure"', 'id="receipts"'):
        assert section in html, section
    assert html.count("data:image/png;base64,") == 3  # loss and confidence histograms, accuracy bars
    assert "subj-nobody" in html and "only training samples" in html  # quarantined with their reasons
    assert "MIA-Efficacy (SalUn, svc-efficacy)" in html and "loss-auc" in html  # conventions named
    assert "retrained from scratch" in html and "forgotten-fraction" in html
    assert receipt["sha256"][:16] in html
    names = [a.path for a in tracking.client(project).list_artifacts(result["mlflow_run_id"], "reports")]
    assert "reports/report.html" in names
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[result["report"]["prefect_artifact"]])))
    assert found and "Unlearn or retrain" in found[0].data and "forgotten-fraction" in found[0].data

    # rollback cannot bring back the original: it holds the erased samples
    with pytest.raises(PromotionRefused, match="version 1 still holds data erased by batch"):
        promoting.rollback(project, None, "undo the retrain", "tester")

    assert receipt_audit.verify_receipts(project).ok  # receipts link to the retrain's run and version

    # the report can be regenerated from the stored records
    (project.root / result["report"]["path"]).unlink()
    assert reporting.regenerate(project, batch).exists()


@pytest.mark.slow
def test_unlearning_that_fails_the_gates_is_replaced_by_a_retrain(digits_project, prefect_harness):
    project = _configure(digits_project, gates={"min_test_acc": 100.0})  # retrain.on_gate_failure: true (default)
    _file_requests(project, with_bad=False)
    result = deletion_batch(params_path=str(project.params_path))
    batch = result["batch_id"]

    assert result["rejected"]["model_version"] == "2" and result["rejected"]["failed"] == ["utility"]
    assert result["decision"]["action"] == "retrain" and result["decision"]["rule"] == "gate-failure"
    assert "version 2" in result["decision"]["reason"] and result["decision"]["measures"]["failed_gates"] == ["utility"]
    assert result["model_version"] == "3" and result["promoted"]  # exact: promoted though its utility gate fails
    assert result["gates"]["utility"]["passed"] is False and result["promotion"]["action"] == "promote"
    assert tracking.alias_version(project, tracking.CHAMPION) == tracking.alias_version(project, tracking.CHALLENGER) == "3"
    assert tracking.version_info(project, "2")["tags"]["gates"] == "failed: utility"
    assert tracking.version_info(project, "3")["tags"]["forgetflow.role"] == "retrain"
    # the original holds the erased samples; the rejected unlearned model unlearned them (never served, not superseded)
    assert [r["version"] for r in result["superseded"]] == ["1"]
    receipt = json.loads((project.root / result["receipts"][0]).read_text())
    assert receipt["decision"]["rule"] == "gate-failure" and receipt["decision"]["rejected_version"] == "2"
    assert receipt["mlflow"]["model_version"] == "3" and receipt_audit.verify_receipts(project).ok
    html = (project.root / result["report"]["path"]).read_text()
    assert "An unlearned model was tried first" in html and "version 2" in html
    assert html.count("data:image/png;base64,") == 3
    assert not list((project.state_dir / "candidates").glob(f"{batch}*"))  # no candidate file left behind


@pytest.mark.slow
def test_manual_approval_waits_for_a_person_in_a_paused_flow_run(digits_project, prefect_harness):
    project = _configure(digits_project, promotion={"approval": "manual"},
                         gates={"max_time_ratio": 10.0, "max_test_acc_drop": 100.0, "max_forget_acc_gap": 100.0,
                                "max_mia_gap": 100.0})
    _file_requests(project, with_bad=False)
    result = deletion_batch(params_path=str(project.params_path))
    assert result["promotion"]["action"] == "await-approval" and not result["promoted"]
    assert tracking.alias_version(project, tracking.CHAMPION) == "1"
    assert tracking.version_info(project, "2")["tags"]["forgetflow.promotion"] == "await-approval"
    assert [r["version"] for r in result["superseded"]] == ["1"]  # serving model holds erased data until approved

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                                FlowRunFilterStateName)

    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(
        promotion(params_path=str(project.params_path), version="2", poll_seconds=1)), daemon=True)
    runner.start()
    paused = None
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while paused is None and time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["promotion"])),
                                         flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                                             name=FlowRunFilterStateName(any_=["Paused"]))))
            paused = runs[0] if runs else None
            time.sleep(0.5)
    assert paused is not None, "the promotion flow never paused for approval"
    assert tracking.alias_version(project, tracking.CHAMPION) == "1"  # nothing moves before the answer
    # the person answers from a terminal (in-process, so the CLI talks to the harness's server)
    from typer.testing import CliRunner

    from forgetflow.cli import app

    bad = CliRunner().invoke(app, ["--params", str(project.params_path), "approve", "not-a-run-id"])
    assert bad.exit_code != 0 and "is not a flow run id" in str(bad.exception)
    answered = CliRunner().invoke(app, ["--params", str(project.params_path), "approve", str(paused.id),
                                        "--reason", "reviewed the report"])
    assert answered.exit_code == 0, answered.output
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert outcome["status"] == "promoted" and outcome["to"] == "2"
    assert tracking.alias_version(project, tracking.CHAMPION) == "2"
    last = project.open_ledger().alias_history()[-1]
    assert last["reason"].startswith("reviewed the report") and "via forgetflow approve" in last["actor"]
    assert "approved in the promotion flow" in last["actor"]
    # a second answer finds nothing paused
    again = CliRunner().invoke(app, ["--params", str(project.params_path), "approve", str(paused.id), "--reason", "x"])
    assert again.exit_code != 0 and "paused" in str(again.exception).lower()


@pytest.mark.slow
@pytest.mark.parametrize("step", ["decide", "supersede", "quality"])
def test_failure_after_new_steps_undoes_them(step, digits_project, prefect_harness):
    project = digits_project
    _file_requests(project, with_bad=False)
    with pytest.raises(BatchFailed, match="rolled back"):
        deletion_batch(params_path=str(project.params_path), inject_failure=step)
    book = project.open_ledger()
    assert {r["state"] for r in book.list()} == {"pending"}
    assert book.superseded() == [] and book.quality("champion_test_acc") == []
    assert [v["version"] for v in tracking.versions(project)] == ["1"]
    assert "forgetflow.superseded_by" not in tracking.version_info(project, "1")["tags"]
    assert DatasetVersion.load(project.version_dir).version == 1
