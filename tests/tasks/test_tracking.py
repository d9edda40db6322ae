"""The MLflow adapter against a real SQLite store in a temporary folder."""

import json
from pathlib import Path

import pytest
import torch

from forgetflow.models import build_model, load_checkpoint
from forgetflow.project import Project
from tasks import tracking
from tests.conftest import make_project_dir


@pytest.fixture
def project(tmp_path) -> Project:
    return Project.load(make_project_dir(tmp_path / "p") / "params.yaml")


def _model(seed: int):
    torch.manual_seed(seed)
    return build_model("small-cnn", in_channels=1, num_classes=10, image_size=8, width=4)


def test_register_load_alias_history_delete(project):
    book = project.open_ledger()
    run1, v1 = tracking.log_model_run(project, _model(0), "one", {"a": 1}, {"acc": 0.5}, {"batch_id": "b1"})
    m = _model(1)
    run2, v2 = tracking.log_model_run(project, m, "two", {"a": 2}, {"acc": 0.7}, {"batch_id": "b2"},
                                      documents={"reports/x.json": {"k": 1}})
    assert (v1, v2) == ("1", "2")
    assert tracking.version_info(project, v2)["tags"]["batch_id"] == "b2"
    loaded = tracking.load_version_model(project, v2)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), m.state_dict().values()))

    assert tracking.move_alias(project, book, "champion", v1, "first", "test") is None
    assert tracking.move_alias(project, book, "champion", v2, "second", "test", "b2") == v1
    assert tracking.alias_version(project, "champion") == v2
    history = book.alias_history()
    assert [(h["from_version"], h["to_version"], h["reason"]) for h in history] == [(None, "1", "first"), ("1", "2", "second")]

    tracking.restore_alias(project, "champion", v1)
    tracking.delete_version(project, v2)
    assert [v["version"] for v in tracking.versions(project)] == ["1"]
    assert tracking.alias_version(project, "champion") == v1
    assert tracking.client(project).get_run(run2).data.tags["forgetflow.rolled_back"] == "true"


def test_mlflow_is_the_library_not_the_store_folder():
    import mlflow

    assert "site-packages" in mlflow.__file__


def test_registered_model_loads_without_unpickling_code(project, tmp_path):
    """The registry artifact is a pyfunc model over the weights-only checkpoint: no pickle flavour, no pickled
    code, and ``mlflow.pyfunc.load_model`` returns the same predictions as the logged module."""
    import mlflow
    import yaml

    m = _model(3)
    _, version = tracking.log_model_run(project, m, "one", {}, {}, {})
    uri = f"models:/{project.params.tracking.model_name}/{version}"
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "dl")))
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    assert set(spec["flavors"]) == {"python_function"}
    assert spec["flavors"]["python_function"]["loader_module"] == "forgetflow.models.pyfunc_loader"
    assert spec["flavors"]["python_function"].get("code") is None  # no code travels with the model
    assert {p.name for p in folder.rglob("*.pkl")} == set()
    weights = torch.load(folder / spec["flavors"]["python_function"]["data"], weights_only=True)
    assert weights["arch"] == "small-cnn"

    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    scores = mlflow.pyfunc.load_model(uri).predict(images.numpy())
    with torch.no_grad():
        expected = m.eval()(images.float() / 255.0)
    assert torch.allclose(torch.as_tensor(scores), expected, atol=1e-6)
    safe = load_checkpoint(folder / "data" / "checkpoint.pt")  # the loading call docs/operations.md names
    assert all(torch.equal(a, b) for a, b in zip(safe.state_dict().values(), m.state_dict().values()))


def test_nothing_logged_to_mlflow_carries_a_secret(tmp_path):
    """A password in ledger.url / tracking.uri and a credential in versioning.remote_options never reach MLflow:
    not in params, tags, nor the params.resolved.json document."""
    import mlflow

    extra = ("ledger: {url: 'postgresql://forgetflow:Ledger-Pw-1@db.internal/ledger'}\n"
             "versioning: {remote_options: {endpointurl: 'http://minio:9000', secret_access_key: 'Remote-Key-2'}}\n")
    project = Project.load(make_project_dir(tmp_path / "p", extra) / "params.yaml")
    secrets = ("Ledger-Pw-1", "Remote-Key-2", "Dsn-Pw-3")
    run_id, _ = tracking.log_model_run(
        project, _model(0), "one", {"ledger": project.params.ledger.url, "params": project.params.model_dump(mode="json")},
        {}, {"source": "https://ci:Dsn-Pw-3@git.example/repo"},
        documents={"reports/params.resolved.json": project.params.model_dump(mode="json")})
    other = tracking.log_run(project, "audit", {"ledger": project.params.ledger.url}, {},
                             {"dsn": "postgresql://a:Dsn-Pw-3@h/d"})
    seen = []
    for rid in (run_id, other):
        run = tracking.client(project).get_run(rid)
        seen += [json.dumps(run.data.params), json.dumps(run.data.tags)]
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports", dst_path=str(tmp_path / "a")))
    resolved = (folder / "params.resolved.json").read_text()
    seen.append(resolved)
    assert not [s for s in secrets for text in seen if s in text]
    doc = json.loads(resolved)
    assert doc["ledger"]["url"] == "postgresql://forgetflow:***@db.internal/ledger"
    assert doc["versioning"]["remote_options"] == {"endpointurl": "***", "secret_access_key": "***"}


def test_training_and_unlearning_curves_reach_their_runs(digits_project):
    """The original's training run holds its loss curve (one point per epoch); a StepLog handed to a method
    ends up, step by step, on the run it is logged to (the batch's run does this in tasks/promotion.py)."""
    from forgetflow import pipeline
    from forgetflow.methods import METHODS
    from forgetflow.runtime import RunContext, StepLog

    project = digits_project
    c = tracking.client(project)
    run_id = tracking.version_info(project, tracking.alias_version(project, tracking.CHAMPION))["run_id"]
    curve = c.get_metric_history(run_id, "original/loss")
    assert [m.step for m in curve] == list(range(project.params.train.epochs))
    assert curve[-1].value < curve[0].value

    steps = StepLog()
    version = pipeline.current_version(project)
    model = tracking.load_version_model(project, "1")
    forget = version.sample_set(version.rows("train").iloc[:20])
    data = pipeline.data_for(METHODS.get("neggrad-plus"), forget, version.sample_set(split="train"), 10,
                             pipeline.recipe(project))
    METHODS.get("neggrad-plus").unlearn(model, data, METHODS.get("neggrad-plus").resolve(None, {"forget_passes": 0.1, "min_steps": 4}),
                                        RunContext.create(0, "cpu", report=steps))
    assert steps.records and all(key == "unlearn/loss" for key, _, _ in steps.records)
    target = tracking.log_run(project, "steps", {}, {}, {})
    first = max(step for _, _, step in steps.records) + 1
    more = [("unlearn/loss", 1.0 / step, step) for step in range(first, 2500)]  # > one request (1000)
    tracking.log_steps(project, target, steps.records + more)
    logged = c.get_metric_history(target, "unlearn/loss")
    assert sorted((m.step, m.value) for m in logged) == [(step, value) for _, value, step in steps.records + more]
