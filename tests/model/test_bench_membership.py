"""Per-sample benchmark columns on digits with a tiny setting's reference models: values are computed, the
oracle is its own target, a memorised forget set is detected (and its oracle's is not), and the memorisation
report has every attack."""

from pathlib import Path

import numpy as np
import pytest
import torch

from forgetflow import bench, bench_membership as bm, bench_settings as bs
from forgetflow.config import ReferenceParams
from forgetflow.references import train_references
from forgetflow.training import Recipe
from tests.conftest import TINY_ARCH

# memorising on purpose: no weight decay, many passes over a small pool
RECIPE = Recipe(epochs=30, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0)
ARCH = (TINY_ARCH[0], {**TINY_ARCH[1], "width": 8, "head": 64})
SETTINGS = ReferenceParams(k=4, rmia_population=200)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small train fastest on one thread (a second only waits, worse on a shared CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pool(digits_version, tmp_path_factory):
    """A 400-sample pool of digits, its reference set (k = 4) and a model cache."""
    root = tmp_path_factory.mktemp("bench-membership")
    setting = bs.Setting(name="tiny", data={"pool": 400})
    version = bs.setting_version(digits_version, setting, root / "digits-pool")
    trained = train_references(version, root / "references", ARCH[0], ARCH[1], RECIPE, SETTINGS.k, 0, "cpu")
    return version, trained, root / "models"


def _setup(pool, scenario, **options):
    version, trained, cache = pool
    s = bench.setup(version, scenario, 0, ARCH[0], ARCH[1], RECIPE, cache, device="cpu", scenario_options=options,
                    max_shadow=300)
    return bench.attach_references(s, trained.refs, SETTINGS, trained.folder)


def test_rows_carry_per_sample_columns_and_the_oracle_is_its_own_target(pool):
    s = _setup(pool, "random", fraction=0.1)
    original, oracle = bench.reference_rows(s)
    for row in (original, oracle):
        for attack in ("lira", "rmia"):
            assert 0.0 <= row[f"{attack}_detected"] <= 100.0
            assert row[f"{attack}_detected_count"] == round(row[f"{attack}_detected"] * row["forget_size"] / 100)
            assert row[f"{attack}_mode"] == "offline"  # forget samples are scored like never-seen ones
        assert len(row["_lira_forget"]) == row["forget_size"]
    assert oracle["lira_dist"] == 0.0 and oracle["lira_auc_vs_oracle"] == pytest.approx(0.5)
    assert original["lira_dist"] > 0.0
    method = bench.run_method(s, "finetune", {"forget_passes": 0.3, "min_steps": 4}, preset=None)
    assert 0.0 <= method["lira_detected"] <= 100.0 and method["lira_dist"] >= 0.0


def test_a_memorised_forget_set_is_detected_and_its_oracle_is_not(pool):
    # 40 training samples with swapped labels: the original fits them (it memorises), the oracle never saw them.
    # The references never saw the swapped labels either: the forget samples are rescored by their checkpoints.
    s = _setup(pool, "corrupted", regularity="random-swap", size=40, discovery=1.0)
    original, oracle = bench.reference_rows(s)
    assert original["forget_acc"] > 60.0, "the tiny original should fit most swapped labels"
    assert original["lira_detected"] >= 50.0
    assert oracle["lira_detected"] <= 15.0
    assert original["lira_auc_vs_oracle"] > 0.9
    lo, hi = bm.clopper_pearson(oracle["lira_detected_count"], oracle["forget_size"])
    assert lo <= oracle["lira_detected"] <= hi < original["lira_detected"]


def test_memorisation_report_has_every_attack(pool):
    version, trained, cache = pool
    s = _setup(pool, "random", fraction=0.1)
    rows = bm.memorisation(s.original.model, version, trained.refs, SETTINGS, "cpu")
    names = {(r["attack"], r["target"].split()[0]) for r in rows}
    assert {("LiRA offline", "original"), ("RMIA offline", "original"), ("loss threshold (population)", "original"),
            ("LiRA online", "each"), ("LiRA offline", "each"), ("RMIA online", "each")} <= names
    for r in rows:
        assert r["members"] == r["non_members"] > 50  # balanced
        assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["tpr_01"] <= r["tpr_1"] <= 100.0


def test_clopper_pearson_matches_the_exact_interval():
    lo, hi = bm.clopper_pearson(0, 100)
    assert lo == 0.0 and hi == pytest.approx(3.62, abs=0.01)
    lo, hi = bm.clopper_pearson(5, 100)
    assert lo == pytest.approx(1.64, abs=0.01) and hi == pytest.approx(11.28, abs=0.01)
    assert all(np.isnan(bm.clopper_pearson(0, 0)))


def test_forget_scores_of_altered_samples_need_the_checkpoints(pool, tmp_path: Path):
    version, trained, cache = pool
    s = bench.setup(version, "corrupted", 0, ARCH[0], ARCH[1], RECIPE, cache, device="cpu",
                    scenario_options={"regularity": "random-swap", "size": 40, "discovery": 1.0}, max_shadow=300)
    from forgetflow.errors import DataError

    with pytest.raises(DataError, match="checkpoint"):
        bench.attach_references(s, trained.refs, SETTINGS, tmp_path)
