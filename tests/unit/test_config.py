from pathlib import Path

import pytest

from forgetflow.config import apply_overrides, load_params, parse_override, resolve_sqlalchemy_url
from forgetflow.errors import ConfigError

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
    with pytest.raises(ConfigError, match="finetune"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("unlearn: {methods: {not-a-method: {}}}\n")
    with pytest.raises(ConfigError, match="unknown method 'not-a-method'"):
        load_params(tmp_path / "params.yaml")


def test_unknown_reason_and_method_in_by_reason(tmp_path):
    (tmp_path / "params.yaml").write_text("unlearn: {by_reason: {privacy: finetun}}\n")
    with pytest.raises(ConfigError, match="Did you mean finetune"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("unlearn: {by_reason: {vanity: finetune}}\n")
    with pytest.raises(ConfigError, match="unknown reason"):
        load_params(tmp_path / "params.yaml")


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
