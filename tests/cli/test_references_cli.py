"""`forgetflow references` as a user runs it: trains the set of the current version once, then loads it; a bad
K is a one-line error before any work."""

import json

import pytest

from forgetflow import pipeline
from forgetflow.project import Project
from tests.cli.test_cli import ff
from tests.conftest import make_project_dir


@pytest.mark.slow
def test_references_command_trains_once_then_loads(tmp_path):
    root = make_project_dir(tmp_path / "p")
    pipeline.current_version(Project.load(root / "params.yaml"))
    fast = ("--set", "train.epochs=2")
    out = ff(*fast, "references", "--k", "2", "--workers", "2", "--json", cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout)
    assert info["k"] == 2 and not info["cached"] and info["runner"] == "local threads:2"
    assert info["dataset_version"] == "digits@v1" and len(info["seconds"]) == 2
    assert json.loads((root / "artifacts" / "models" / "references.json").read_text())["key"] == info["key"]
    assert sorted(p.name for p in (root / "artifacts" / "references" / info["key"]).glob("ref-*.json")) == [
        "ref-0.json", "ref-1.json"]

    again = ff(*fast, "references", "--k", "2", cwd=root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.strip() == f"reference models for digits@v1: K=2, seed 0, loaded from the cache ({info['key']})"

    odd = ff("references", "--k", "3", cwd=root)
    assert odd.returncode == 1 and odd.stderr.count("\n") == 1 and "k must be even" in odd.stderr
