"""dvc.yaml as a user expects it, on digits: the stages run through DVC (so dvc.lock records them), `dvc status`
is clean after the bootstrap and after a deletion batch, and `dvc repro` then does nothing; preparing again
never brings an erased sample back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from flows.deletion_batch import deletion_batch
from forgetflow import pipeline
from forgetflow.data import DatasetVersion
from forgetflow.ledger import parse_csv
from forgetflow.project import Project
from tasks import versioning
from tests.conftest import make_project_dir

REPO = Path(__file__).resolve().parents[2]


def _project_with_the_pipeline(folder: Path) -> Project:
    """A digits project with the repository's dvc.yaml; its code dependencies point at this checkout."""
    root = make_project_dir(folder, "references: {k: 4, seed: 0}\n")  # a stage reads this section by name
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for stage in spec["stages"].values():
        stage["deps"] = [str(REPO / d) if d.split("/")[0] == "forgetflow" else d for d in stage["deps"]]
    (root / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    # the repository's own .gitignore, as `make demo` meets it (DVC refuses to write a git-ignored dvc.lock)
    (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    return Project.load(root / "params.yaml")


@pytest.mark.slow
def test_stages_are_recorded_and_stay_clean_through_a_batch(tmp_path, prefect_harness, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the stage commands run this checkout's forgetflow
    project = _project_with_the_pipeline(tmp_path / "p")

    assert versioning.reproduce(project) == ["prepare", "train_original", "train_oracle", "train_references"]
    assert (project.root / "dvc.lock").exists() and versioning.pipeline_status(project) == {}
    oracle = json.loads((project.models_dir / "oracle.json").read_text())
    assert oracle["cached"] and oracle["erased_total"] == 0  # nothing erased yet: the original is the oracle
    assert versioning.reproduce(project) == []

    version = DatasetVersion.load(project.version_dir)
    subject = version.subjects()[0]
    project.open_ledger().add(parse_csv("request_id,subject_id,sample_id,reason,received_at\n"
                                        f"r1,{subject},,privacy,2026-11-01T10:00:00Z\n"), source="import")
    # with an oracle in the batch (evaluate.oracle: true) the batch records it as the stage's output
    result = deletion_batch(params_path=str(project.params_path),
                            overrides={"gates.cost.enabled": False, "evaluate.oracle": True})
    assert result["status"] == "done"
    # the purge deleted the original's weights (they hold the erased samples: purge.models), so that stage is due,
    # and the references are of version 1 (the batch used them, erased samples OUT only): nothing else is
    assert not (project.models_dir / "original.pt").exists()
    assert result["pipeline_recorded"] == ["prepare", "train_oracle"]
    assert set(versioning.pipeline_status(project)) == {"train_original", "train_references"}
    oracle = json.loads((project.models_dir / "oracle.json").read_text())
    assert oracle["dataset_version"] == 2 and oracle["cached"]  # the batch's own oracle, not a new training

    erased = set(DatasetVersion.load(project.version_dir).erased["sample_id"])
    assert erased and not erased & set(DatasetVersion.load(project.prepared_dir).table["sample_id"])
    again = pipeline.prepare(project, force=True)  # what `dvc repro prepare` does after a raw-data change
    assert not erased & set(again.table["sample_id"]) and erased <= set(again.erased["sample_id"])
