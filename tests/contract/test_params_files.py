"""params.yaml and every shipped preset validate; the list of presets is never silently empty; params.yaml
spells out exactly the schema's defaults (forgetflow/config.py is the one source of defaults)."""

from pathlib import Path

import pytest
import yaml

from forgetflow.config import Params, load_params
from forgetflow.methods import METHODS
from forgetflow.project import Project

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "forgetflow" / "presets").rglob("*.yaml"))


def test_params_yaml_validates():
    Project.load(REPO / "params.yaml")  # the schema, then the reasons and methods against the registry


def _leaves(node: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value; free-form maps (by_reason, methods, remote_options) are one leaf each."""
    out: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value and key not in ("by_reason", "methods", "remote_options"):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def test_params_yaml_states_every_default_and_only_the_defaults():
    """A setting added to the schema gets its line in params.yaml, with the same value."""
    shipped = _leaves(load_params(REPO / "params.yaml").model_dump(mode="json"))
    stated = _leaves(yaml.safe_load((REPO / "params.yaml").read_text()))
    defaults = _leaves(Params().model_dump(mode="json"))
    assert sorted(set(defaults) - set(stated)) == []  # every setting has its line
    assert {k: (shipped[k], v) for k, v in defaults.items() if shipped[k] != v} == {}  # ... with the default value


@pytest.mark.parametrize("path", PRESETS, ids=[str(p.relative_to(REPO / "forgetflow" / "presets")) for p in PRESETS])
def test_every_preset_validates_and_records_its_search(path):
    """presets/<method>/<scenario>.yaml (default setting) or presets/<method>/<setting>/<scenario>.yaml."""
    data = yaml.safe_load(path.read_text())
    parts = path.relative_to(REPO / "forgetflow" / "presets").parts
    method, setting = (parts[0], "default") if len(parts) == 2 else (parts[0], parts[1])
    assert len(parts) in (2, 3) and data["method"] == method and data["scenario"] == path.stem
    assert data.get("setting", "default") == setting
    assert setting == "default" or (REPO / "forgetflow" / "settings" / f"{setting}.yaml").exists()
    key = path.stem if setting == "default" else f"{setting}/{path.stem}"
    spec = METHODS.get(method)
    assert spec.applied_preset(path.stem, setting)["applied"] == f"forgetflow/presets/{method}/{key}.yaml"
    assert spec.resolve(path.stem, {}, setting=setting).model_dump() == spec.resolve(None, data["config"]).model_dump()
    search = data["search"]
    assert search["selected_on"].startswith("validation")
    assert search["space"] and search["trials"] and "command" in search
    assert path.read_text().startswith("#")  # every shipped YAML says who reads it


def test_presets_are_found_by_the_registry():
    found = sum(len(METHODS.get(n).scenarios()) for n in METHODS.names())
    assert found == len(PRESETS)
