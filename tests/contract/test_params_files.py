"""params.yaml and every shipped preset validate; the list of presets is never silently empty."""

from pathlib import Path

import pytest
import yaml

from forgetflow.config import load_params
from forgetflow.methods import METHODS

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "forgetflow" / "presets").rglob("*.yaml"))


def test_params_yaml_validates():
    load_params(REPO / "params.yaml")


@pytest.mark.parametrize("path", PRESETS, ids=[str(p.relative_to(REPO / "forgetflow" / "presets")) for p in PRESETS])
def test_every_preset_validates_and_records_its_search(path):
    data = yaml.safe_load(path.read_text())
    method = path.parent.name
    assert data["method"] == method and data["scenario"] == path.stem
    METHODS.get(method).resolve(path.stem, {})
    search = data["search"]
    assert search["selected_on"].startswith("validation")
    assert search["space"] and search["trials"] and "command" in search
    assert path.read_text().startswith("#")  # every shipped YAML says who reads it


def test_presets_are_found_by_the_registry():
    found = sum(len(METHODS.get(n).scenarios()) for n in METHODS.names())
    assert found == len(PRESETS)
