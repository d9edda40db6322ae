"""The reference-model flow on a digits project with real Prefect: fanned out through the configured runner,
cached per dataset version, an older set serving a later version with its erased samples OUT-only, and a batch
that finds no set training one and saying so."""

import json
import logging

import pytest

from flows import references as reference_flows
from forgetflow import pipeline
from forgetflow.project import Project
from tests.conftest import make_project_dir

FAST = {"train.epochs": 3, "references.k": 4}


@pytest.fixture
def project(tmp_path):
    root = make_project_dir(tmp_path / "project")
    project = Project.load(root / "params.yaml", FAST)
    pipeline.current_version(project)  # data/current from the prepared version (no DVC needed here)
    return project


@pytest.mark.slow
def test_references_follow_the_dataset_version(project, prefect_harness, caplog):
    path = str(project.params_path)
    caplog.set_level(logging.INFO, logger="forgetflow.references")
    first = reference_flows.run(path, {**FAST, "runner.max_workers": 2})
    assert not first["cached"] and first["k"] == 4 and first["runner"] == "local threads:2"
    assert first["dataset_version"] == "digits@v1" and len(first["seconds"]) == 4
    metas = [json.loads(p.read_text()) for p in sorted((project.root / first["folder"]).glob("ref-*.json"))]
    assert [m["role"] for m in metas] == ["reference"] * 4 and {m["data"] for m in metas} == {first["fingerprint"]}
    assert "training 4 reference models" in caplog.text

    again = reference_flows.run(path, FAST)
    assert again["cached"] and again["key"] == first["key"]
    assert reference_flows.usable_or_train(path, FAST).current

    # a batch erases samples: the set of v1 still serves v2, the erased samples only as OUT
    v1 = pipeline.current_version(project)
    erased = v1.rows("train")["sample_id"].tolist()[:7]
    v1.without(erased, "batch-test").write(project.version_dir)
    caplog.clear()
    served = reference_flows.usable_or_train(path, FAST)
    assert served.refs.key == first["key"] and served.out_only == tuple(sorted(erased))
    assert "7 samples erased since are used as OUT only" in caplog.text
    assert (served.refs.view(list(erased), served.out_only).n_in == 0).all()

    # the next audit (or `forgetflow train`) trains a set on v2
    refreshed = reference_flows.refresh(path, FAST, why="test")
    assert not refreshed["cached"] and refreshed["version"] == 2 and refreshed["key"] != first["key"]
    assert reference_flows.refresh(path, FAST)["cached"]
    latest = reference_flows.usable_or_train(path, FAST)
    assert latest.current and latest.refs.version == 2 and not set(erased) & set(latest.refs.ids)


@pytest.mark.slow
def test_a_batch_without_references_trains_them_and_says_why_or_skips(project, prefect_harness, caplog):
    path = str(project.params_path)
    caplog.set_level(logging.INFO, logger="forgetflow.references")
    assert reference_flows.usable_or_train(path, {**FAST, "references.on_missing": "skip"}) is None
    assert "per-sample attacks skipped (references.on_missing: skip)" in caplog.text
    assert reference_flows.usable_or_train(path, {**FAST, "references.enabled": False}) is None
    assert reference_flows.refresh(path, {**FAST, "references.enabled": False}) is None
    caplog.clear()
    selection = reference_flows.usable_or_train(path, FAST)
    assert selection is not None and selection.current and selection.refs.k == 4
    assert "this batch trains K=4 reference models" in caplog.text
    assert "a batch needs per-sample evidence" in caplog.text
