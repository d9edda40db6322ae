from pathlib import Path

import pytest

from forgetflow.config import Params, apply_overrides, load_params, parse_override, resolve_sqlalchemy_url
from forgetflow.errors import ConfigError
from forgetflow.ledger.reasons import REASONS
from forgetflow.project import Project

REPO = Path(__file__).resolve().parents[2]


def test_shipped_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.dataset == "fashion-mnist"
    assert params.train.epochs >= 1


def test_override_parses_yaml_values(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    params = load_params(tmp_path / "params.yaml", dict([parse_override("train.lr=0.2"), parse_override("seed=7")]))
    assert params.train.lr == 0.2 and params.seed == 7


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("train: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"train\.epochz"):
        load_params(tmp_path / "params.yaml")


def test_every_method_section_is_validated(tmp_path):
    (tmp_path / "params.yaml").write_text("unlearn: {methods: {finetune: {lr: -1}}}\n")
    with pytest.raises(ConfigError, match=r"unlearn\.methods\.finetune\.lr"):
        Project.load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("unlearn: {methods: {not-a-method: {}}}\n")
    with pytest.raises(ConfigError, match="unknown method 'not-a-method'"):
        Project.load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("unlearn: {method: mu-miss}\n")
    with pytest.raises(ConfigError, match=r"unlearn\.method: unknown method 'mu-miss'.*Did you mean mu-mis"):
        Project.load(tmp_path / "params.yaml")


ALL_REASONS = "{privacy: finetune, other: finetune, mislabelled: finetune, poisoned: finetune"


def test_unknown_reason_and_method_in_by_reason(tmp_path):
    (tmp_path / "params.yaml").write_text(f"unlearn: {{by_reason: {ALL_REASONS.replace('privacy: finetune', 'privacy: finetun')}}}}}\n")
    with pytest.raises(ConfigError, match=r"unlearn\.by_reason\.privacy: .*Did you mean finetune"):
        Project.load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(f"unlearn: {{by_reason: {ALL_REASONS}, vanity: finetune}}}}\n")
    with pytest.raises(ConfigError, match="unknown reason 'vanity'"):
        Project.load(tmp_path / "params.yaml")


def test_a_partial_by_reason_map_is_refused_at_load_time(tmp_path):
    """Before: a map without ``poisoned`` loaded, and a poisoned request then failed with a KeyError mid-batch."""
    (tmp_path / "params.yaml").write_text("unlearn: {by_reason: {privacy: finetune, other: finetune}}\n")
    with pytest.raises(ConfigError) as err:
        Project.load(tmp_path / "params.yaml")
    assert str(err.value) == (f"{(tmp_path / 'params.yaml').resolve()}: unlearn.by_reason: no method for mislabelled, "
                              "poisoned (every request reason needs one: privacy, mislabelled, poisoned, other)")
    (tmp_path / "params.yaml").write_text(f"unlearn: {{by_reason: {ALL_REASONS}}}}}\n")
    assert set(Project.load(tmp_path / "params.yaml").params.unlearn.by_reason) == set(REASONS)


def test_the_defaults_map_every_reason_to_a_registered_method():
    from forgetflow.methods import METHODS
    from forgetflow.project import check_params

    defaults = Params()
    assert set(defaults.unlearn.by_reason) == set(REASONS)
    assert all(METHODS.get(m) for m in defaults.unlearn.by_reason.values())
    check_params(defaults)


def test_bad_override_forms():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"seed": 1}, {"seed.x": 2})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "params.yaml").write_text("seed: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_relative_sqlite_urls_resolve_against_the_project(tmp_path):
    assert resolve_sqlalchemy_url(tmp_path, "sqlite:///state/l.db") == f"sqlite:///{(tmp_path / 'state/l.db').resolve()}"
    assert resolve_sqlalchemy_url(tmp_path, "sqlite:////abs/l.db") == "sqlite:////abs/l.db"
    assert resolve_sqlalchemy_url(tmp_path, "postgresql://u@h/db") == "postgresql://u@h/db"


def test_preset_setting_names_a_shipped_benchmark_setting(tmp_path):
    (tmp_path / "params.yaml").write_text("unlearn: {preset_setting: memorizing}\n")
    with pytest.raises(ConfigError, match=r"unlearn\.preset_setting: unknown setting 'memorizing' \(shipped: .*memorising"):
        Project.load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("unlearn: {preset_setting: memorising}\n")
    assert Project.load(tmp_path / "params.yaml").params.unlearn.preset_setting == "memorising"
