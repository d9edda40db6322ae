"""Layering: imports only go down (flows -> tasks -> forgetflow, and inside forgetflow from the CLI down to
config and errors), counting imports inside functions too; forgetflow/ never imports the orchestration or
tool libraries; names never shadow libraries."""

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


def _component(module: str) -> str | None:
    """``forgetflow.data.version`` -> ``data``: the top-level module or subpackage of the core it belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "forgetflow" and len(parts) > 1 else None


def _core_edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) component -> where (file:line), for every import in the core, functions included."""
    edges: dict[tuple[str, str], list[str]] = {}
    for f in (REPO / "forgetflow").rglob("*.py"):
        rel = f.relative_to(REPO)
        source = _component(".".join(rel.with_suffix("").parts))
        if source is None or source == "__init__":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] if node.module == "forgetflow" else [node.module]
            else:
                continue
            for target in targets:
                dest = _component(target)
                if dest and dest != source:
                    edges.setdefault((source, dest), []).append(f"{rel}:{node.lineno}")
    return edges


def _cycle(edges) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_core_imports_form_no_cycle():
    """A function-local import is still a dependency: config once imported the method registry inside a
    validator, while the registry's data package imported config (config -> methods -> data -> config)."""
    edges = _core_edges()
    assert len(edges) > 30
    cycle = _cycle(edges)
    assert cycle is None, " -> ".join(cycle) + "; imports: " + "; ".join(
        f"{a}->{b} at {', '.join(edges[(a, b)][:2])}" for a, b in zip(cycle, cycle[1:]))


def test_cycle_finder_finds_a_hidden_cycle():
    assert _cycle({("config", "methods"): [], ("methods", "data"): [], ("data", "config"): []}) is not None
    assert _cycle({("cli", "config"): [], ("data", "config"): []}) is None


def test_config_and_reasons_sit_at_the_bottom():
    """Every module may import the settings schema and the request reasons, so they import (almost) nothing."""
    assert {b for (a, b) in _core_edges() if a == "config"} <= {"errors"}
    reasons = ast.parse((REPO / "forgetflow" / "ledger" / "reasons.py").read_text())
    assert not [n for n in ast.walk(reasons) if isinstance(n, (ast.Import, ast.ImportFrom))
                and getattr(n, "module", None) != "__future__"]


def test_only_the_cli_is_above_everything():
    """Nothing imports the CLI: not the core, not tasks/, not flows/."""
    edges = _core_edges()
    assert [(a, where) for (a, b), where in edges.items() if b == "cli"] == []
    for folder in ("tasks", "flows"):
        for f in (REPO / folder).rglob("*.py"):
            tree = ast.parse(f.read_text())
            imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            assert not any(m == "forgetflow.cli" or m.startswith("forgetflow.cli.") for m in imported), f


CLI_MODULE_LEVEL = {"__future__", "contextlib", "io", "json", "os", "sys", "pathlib", "typing", "typer",
                    "forgetflow"}
CLI_CORE_MODULE_LEVEL = {"forgetflow.cli", "forgetflow.errors", "forgetflow.runtime_env"}


def test_cli_modules_import_only_typer_and_the_standard_library_at_module_level():
    """``forgetflow --help`` imports every CLI module: their heavy imports wait inside the commands."""
    files = sorted((REPO / "forgetflow" / "cli").glob("*.py"))
    assert len(files) >= 5
    for f in files:
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"forgetflow.{a.name}" for a in node.names] if node.module == "forgetflow" else [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in CLI_MODULE_LEVEL, f"{f.name}:{node.lineno} imports {name}"
                if name.startswith("forgetflow"):
                    assert any(name == c or name.startswith(c + ".") for c in CLI_CORE_MODULE_LEVEL), \
                        f"{f.name}:{node.lineno} imports {name} at module level"


def test_tasks_never_import_flows():
    for f in (REPO / "tasks").rglob("*.py"):
        assert "flows" not in _imports(f), f


def test_no_module_named_after_a_library():
    for folder in ("tasks", "flows"):
        for f in (REPO / folder).glob("*.py"):
            assert f.stem not in LIBRARIES, f


def test_mlflow_folder_is_not_a_package():
    assert not (REPO / "mlflow" / "__init__.py").exists()
