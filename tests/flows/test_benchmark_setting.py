"""The benchmark flow with a setting file on digits, every scenario end to end: the setting's pool and recipe are
used, its reference models are trained once (a Prefect task each) and every row carries the per-sample columns."""

from pathlib import Path

import pytest
import torch

from forgetflow.references import ReferenceSet
from tests.conftest import make_project_dir

SETTING = """\
name: tiny-memorising
data: {pool: 300, pool_seed: 0}
model: {arch: small-cnn, options: {width: 8, head: 64}}
train: {epochs: 8, batch_size: 32, lr: 0.05, momentum: 0.9, weight_decay: 0.0, schedule: cosine}
references: {k: 4, seed: 0}
"""


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory) -> Path:
    root = make_project_dir(tmp_path_factory.mktemp("bench-setting") / "p")
    (root / "tiny.yaml").write_text(SETTING)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only waits
    yield root
    torch.set_num_threads(before)


CASES = {
    "random": ({}, None),
    "subject": ({"fraction": 0.05}, None),
    "full-class": ({"label": 3}, None),
    "corrupted": ({"size": 20}, {"regularity": ["random-swap"], "discovery": [1.0]}),
    "sequential": ({"fraction": 0.05}, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(CASES))
def test_every_scenario_runs_with_a_setting_and_per_sample_columns(scenario, project_dir, prefect_harness):
    from flows.benchmark import benchmark

    options, grid = CASES[scenario]
    rows = benchmark(params_path=str(project_dir / "params.yaml"), dataset="digits", scenario=scenario,
                     methods=["finetune"], seeds=1, options=options, grid=grid, steps=2,
                     setting=str(project_dir / "tiny.yaml"))
    assert {r["setting"] for r in rows} == {"tiny-memorising"}
    assert {"original", "retrain", "finetune"} <= {r["method"] for r in rows}
    for r in rows:
        assert 0.0 <= r["lira_detected"] <= 100.0 and 0.0 <= r["rmia_detected"] <= 100.0, r["method"]
        if r["method"] == "retrain":
            assert r["lira_dist"] == 0.0
        if scenario != "sequential":
            assert r["forget_size"] <= 300  # forget sets come from the 300-sample pool
    if scenario == "sequential":
        assert {r["step"] for r in rows} == {0, 1, 2}
    refs = [ReferenceSet.load(p.parent) for p in (project_dir / "artifacts" / "references").glob("*/references.json")]
    assert len(refs) == 1 and refs[0].k == 4 and int((refs[0].split == "train").sum()) == 300
