"""What ships: every data file of the core package (presets, templates) is declared as package data."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_core_data_file_is_package_data():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["forgetflow"]
    package = REPO / "forgetflow"
    declared = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    data = {p for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
            and "__pycache__" not in p.parts}
    assert {str(p.relative_to(package)) for p in data - declared} == set()
    assert package / "templates" / "report.html" in declared
    assert len([p for p in declared if p.suffix == ".yaml"]) > 10  # the presets
