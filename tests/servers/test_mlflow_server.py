"""The registry through a real `mlflow server` (backend store on PostgreSQL, proxied artifact store in a folder),
with tasks/tracking.py unchanged: only params.yaml's ``tracking`` section differs from the embedded default."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from forgetflow.project import Project
from tasks import bootstrap, tracking
from tests.conftest import make_project_dir

pytestmark = pytest.mark.postgres


def test_register_and_move_aliases_through_the_server(mlflow_server, tmp_path):
    url = mlflow_server["url"]
    root = make_project_dir(tmp_path / "p", f"tracking: {{uri: '{url}', artifact_root: 'mlflow-artifacts:/forgetflow'}}\n")
    project = Project.load(root / "params.yaml")
    assert project.tracking_uri == url and project.artifact_root == "mlflow-artifacts:/forgetflow"

    original = bootstrap.train_and_register(project)  # trains on digits, logs + registers, champion alias
    assert tracking.alias_version(project, tracking.CHAMPION) == original.version

    # a second version becomes challenger, then champion; the ledger records every move
    model = tracking.load_version_model(project, original.version)
    run_id, second = tracking.log_model_run(project, model, "challenger", {"role": "unlearned"}, {"test_acc": 0.5},
                                            {"forgetflow.role": "unlearned", "batch_id": "b-test"})
    book = project.open_ledger()
    tracking.move_alias(project, book, tracking.CHALLENGER, second, "registered", "test", "b-test")
    previous = tracking.move_alias(project, book, tracking.CHAMPION, second, "gates passed", "test", "b-test")
    assert previous == original.version
    assert tracking.alias_version(project, tracking.CHAMPION) == second
    assert tracking.version_info(project, second)["tags"]["batch_id"] == "b-test"
    assert [(m["alias"], m["from_version"], m["to_version"]) for m in book.alias_history()] == [
        ("champion", None, original.version), ("challenger", None, second), ("champion", original.version, second)]
    tracking.restore_alias(project, tracking.CHAMPION, original.version)  # what a rollback does
    assert tracking.alias_version(project, tracking.CHAMPION) == original.version

    # nothing of MLflow landed in the project: the runs are in PostgreSQL, the files in the server's store
    assert not (root / "mlflow").exists()
    stored = {p.name for p in Path(mlflow_server["artifacts"]).rglob("*") if p.is_file()}
    assert "checkpoint.pt" in stored and "MLmodel" in stored
    dsn = mlflow_server["backend"].replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select version from model_versions where name = %s order by version",
                    (project.params.tracking.model_name,))
        assert [str(v) for (v,) in cur.fetchall()] == [original.version, second]
        cur.execute("select alias, version from registered_model_aliases order by alias")
        assert dict(cur.fetchall()) == {"challenger": int(second), "champion": int(original.version)}
    assert tracking.run_exists(project, run_id)
