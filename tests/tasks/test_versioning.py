"""The DVC adapter against a real DVC repository with a local remote, in a temporary folder."""

from pathlib import Path

from forgetflow import pipeline
from forgetflow.project import Project
from tasks import versioning
from tests.conftest import make_project_dir


def test_track_push_restore(tmp_path):
    project = Project.load(make_project_dir(tmp_path / "p") / "params.yaml")
    v1 = pipeline.current_version(project)
    md5_1 = versioning.track_and_push(project)
    assert md5_1.endswith(".dir") and versioning.data_md5(project) == md5_1
    remote = Path(project.dvc_remote_url)
    assert any(remote.rglob("*")), "nothing was pushed to the remote"
    assert (project.root / ".dvc" / "config").read_text().count("analytics = False") == 1
    saved = versioning.snapshot(project)

    v2 = v1.without(v1.rows("train")["sample_id"].iloc[:4].tolist(), "b1")
    v2.write(project.version_dir)
    md5_2 = versioning.track_and_push(project)
    assert md5_2 != md5_1 and versioning.status(project)["clean"]

    versioning.restore(project, saved)
    assert versioning.data_md5(project) == md5_1
    assert pipeline.current_version(project).fingerprint == v1.fingerprint


def test_git_commit_id(tmp_path):
    assert versioning.git_commit_id(tmp_path) is None
