"""What every command shares: the loaded project, overrides, output (JSON or human), rich tables.

Nothing here imports more than Typer and the standard library at module level, so that ``forgetflow --help``
stays fast; a command imports what it needs (Prefect, MLflow, torch) inside its body.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import typer

from forgetflow import runtime_env
from forgetflow.errors import ForgetflowError

if TYPE_CHECKING:  # pragma: no cover
    from forgetflow.project import Project

# the checkout this forgetflow runs from (forgetflow/cli/common.py -> the repository root)
CHECKOUT = Path(__file__).resolve().parents[2]


class State:
    """The root options (``--params``, ``--set``), set by the root callback before any command runs."""

    params: Optional[Path] = None
    overrides: list[str] = []


STATE = State()


def project() -> "Project":
    """Load the project (params + overrides); puts its root on sys.path for tasks/ and flows/."""
    from forgetflow.project import Project

    proj = Project.load(STATE.params, overrides())
    runtime_env.apply(proj)
    _code_on_path(proj.root)
    return proj


def overrides() -> dict[str, Any]:
    """The ``--set key.path=value`` options as a mapping."""
    from forgetflow.config import parse_override

    return dict(parse_override(o) for o in STATE.overrides)


def _code_on_path(root: Path) -> None:
    """``tasks/`` and ``flows/`` are not installed: use the project's, else the checkout forgetflow runs from."""
    for candidate in (root, CHECKOUT):
        if (candidate / "flows").is_dir() and (candidate / "tasks").is_dir():
            if str(candidate) not in sys.path:
                sys.path.insert(0, str(candidate))
            return
    raise ForgetflowError(f"no flows/ and tasks/ folders next to {root} (run from a forgetflow checkout)")


def export_code_path() -> None:
    """Child processes (flow runs, intake workers) import tasks/ and flows/ by name: put their folder on PYTHONPATH."""
    code_root = next(p for p in sys.path if (Path(p) / "flows").is_dir() and (Path(p) / "tasks").is_dir())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print machine output (JSON) or the human rendering."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str, sort_keys=False))
    else:
        typer.echo(human(data) if human else json.dumps(data, indent=2, default=str))


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Keep stdout clean for JSON: everything libraries print goes to stderr meanwhile."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def kv(items: list[str] | None, lists: bool = False) -> dict[str, Any]:
    """``key=value`` options (YAML values); with ``lists`` the value is a comma-separated list."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ForgetflowError(f"{item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key] = [yaml.safe_load(v) for v in value.split(",")] if lists else yaml.safe_load(value)
    return out


def command_line() -> str:
    """The command as the user typed it (recorded with benchmark results and presets)."""
    return "forgetflow " + " ".join(sys.argv[1:])


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]], indent: int = 0) -> str:
    """A plain-text table rendered by rich: ``columns`` are (header, "left"|"right"); cells are never wrapped.

    Rendered without colour and at its natural width, so that the text is the same on a terminal, in a pipe
    and in a log file.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="", highlight=False)
    for header, justify in columns:
        grid.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        grid.add_row(*(Text(str(cell)) for cell in row))  # Text: brackets in a cell are not rich markup
    console = Console(file=io.StringIO(), width=10_000, color_system=None, force_terminal=False)
    console.print(grid)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(" " * indent + line.rstrip() for line in text.splitlines() if line.strip())
