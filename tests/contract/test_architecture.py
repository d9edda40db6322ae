"""Layering: forgetflow/ never imports the orchestration or tool libraries; names never shadow libraries."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = {"prefect", "mlflow", "dvc", "great_expectations"}
LIBRARIES = {"mlflow", "dvc", "prefect", "torch", "great_expectations", "peft", "dask", "sklearn", "pandas"}


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _is_cli(path: Path) -> bool:
    return (REPO / "forgetflow" / "cli") in path.parents


def test_core_never_imports_tools():
    """The CLI is the one exception the house style allows: Prefect etc. imported lazily inside the commands
    that run flows (never at module level, so ``forgetflow --help`` and the library stay free of them)."""
    files = list((REPO / "forgetflow").rglob("*.py"))
    assert len(files) > 20 and any(_is_cli(f) for f in files)
    offenders = {str(f.relative_to(REPO)): sorted(_imports(f, top_level_only=_is_cli(f)) & FORBIDDEN_IN_CORE)
                 for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_never_imports_tasks_or_flows():
    for f in (REPO / "forgetflow").rglob("*.py"):
        assert not _imports(f, top_level_only=_is_cli(f)) & {"tasks", "flows"}, f


def test_tasks_never_import_flows():
    for f in (REPO / "tasks").rglob("*.py"):
        assert "flows" not in _imports(f), f


def test_no_module_named_after_a_library():
    for folder in ("tasks", "flows"):
        for f in (REPO / folder).glob("*.py"):
            assert f.stem not in LIBRARIES, f


def test_mlflow_folder_is_not_a_package():
    assert not (REPO / "mlflow" / "__init__.py").exists()
