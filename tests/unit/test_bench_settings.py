"""Benchmark settings: the shipped files parse, overrides and bad files fail with the key named, the pool is
exactly the declared size made of whole data subjects, and a setting resolves against params.yaml."""

from pathlib import Path

import pytest

from forgetflow import bench_settings as bs
from forgetflow.errors import ConfigError
from forgetflow.project import Project
from tests.conftest import make_project_dir


def test_shipped_settings_parse_and_default_is_all_null():
    assert {"default", "memorising"} <= set(bs.available())
    default = bs.load_setting("default")
    assert default.data.pool is None and default.model.arch is None and default.train.epochs is None
    memorising = bs.load_setting("memorising")
    assert memorising.data.pool and memorising.train.weight_decay == 0.0
    assert memorising.references.k and memorising.references.k % 2 == 0
    assert default.references.k == memorising.references.k  # the two settings' attacks are comparable


def test_overrides_and_bad_settings_name_what_is_wrong(tmp_path: Path):
    s = bs.load_setting("memorising", {"train.epochs": 3, "model.options.head": 64})
    assert s.train.epochs == 3 and s.model.options["head"] == 64
    with pytest.raises(ConfigError, match="not found"):
        bs.load_setting("no-such-setting")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain: {epochs: 0}\n")
    with pytest.raises(ConfigError, match="train.epochs"):
        bs.load_setting(bad)
    bad.write_text("name: x\ntrain: {epoch: 3}\n")
    with pytest.raises(ConfigError, match="train.epoch"):
        bs.load_setting(bad)


def test_pool_is_exact_and_made_of_whole_subjects(digits_version):
    ids = bs.pool_ids(digits_version, 300, seed=0)
    assert len(ids) == 300 == len(set(ids))
    train = digits_version.rows("train")
    chosen = train[train["sample_id"].isin(ids)]
    subjects = set(chosen["subject_id"])
    whole = train[train["subject_id"].isin(subjects)]
    assert len(whole) == 300  # no subject is split between the pool and the rest
    assert bs.pool_ids(digits_version, 300, seed=0) == ids
    assert bs.pool_ids(digits_version, 300, seed=1) != ids
    with pytest.raises(ConfigError, match="exceeds"):
        bs.pool_ids(digits_version, len(train) + 1, seed=0)


def test_pool_version_keeps_validation_and_test_and_reloads(digits_version, tmp_path: Path):
    setting = bs.Setting(name="t", data={"pool": 200, "pool_seed": 0})
    folder = tmp_path / bs.version_folder_name("digits", setting)
    v = bs.setting_version(digits_version, setting, folder)
    assert v.meta["counts"]["train"] == 200
    for split in ("val", "test"):
        assert v.meta["counts"][split] == digits_version.meta["counts"][split]
    assert v.fingerprint != digits_version.fingerprint
    assert v.meta["pool"]["source_fingerprint"] == digits_version.fingerprint
    # pixels travel with their rows
    row = v.rows("train").iloc[0]
    base = digits_version.table.reset_index(drop=True)
    pos = base.index[base["sample_id"] == row["sample_id"]][0]
    assert (v.images[v.table.index[v.table["sample_id"] == row["sample_id"]][0]] == digits_version.images[pos]).all()
    again = bs.setting_version(digits_version, setting, folder)
    assert again.fingerprint == v.fingerprint
    assert bs.setting_version(digits_version, bs.load_setting("default"), folder) is digits_version


def test_resolve_fills_nulls_from_params(tmp_path: Path, digits_version):
    project = Project.load(make_project_dir(tmp_path / "p") / "params.yaml")
    d = bs.resolve(bs.load_setting("default"), project, digits_version)
    assert d.arch == "small-cnn" and d.arch_config["width"] == 8 and d.recipe.epochs == 15
    assert d.k == 8 and d.ref_seed == project.params.references.seed
    m = bs.resolve(bs.Setting(name="m", model={"options": {"head": 64}}, train={"epochs": 3, "weight_decay": 0.0},
                              references={"k": 4}), project, digits_version)
    assert m.arch_config["head"] == 64 and m.arch_config["width"] == 8
    assert m.recipe.epochs == 3 and m.recipe.weight_decay == 0.0 and m.recipe.lr == 0.05 and m.k == 4
