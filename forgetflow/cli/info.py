"""``forgetflow status``, ``forgetflow methods`` and ``forgetflow config …``: what is there, and what is set."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from forgetflow.cli.common import emit, project, stdout_to_stderr, table

config_app = typer.Typer(no_args_is_help=True, help="params.yaml: validate, show the schema.")


def status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Ledger counts by state, champion and challenger versions, current dataset version."""
    proj = project()
    from tasks import bootstrap

    with stdout_to_stderr(as_json):
        info = bootstrap.describe(proj)
    emit(info, as_json, lambda i: "\n".join([
        "requests: " + ", ".join(f"{k} {v}" for k, v in i["requests"].items()),
        f"champion: {i['champion'] or '-'}   challenger: {i['challenger'] or '-'}   ({i['model_name']})",
        "dataset: " + (f"{i['dataset_version']['dataset']} v{i['dataset_version']['version']} "
                       f"({i['dataset_version']['train_samples']} train, {i['dataset_version']['erased_total']} erased)"
                       if i["dataset_version"] else "not prepared"),
    ]))


def methods(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Every registered unlearning method: data contract, paper, scenarios with presets."""
    from forgetflow.methods import METHODS

    rows = [METHODS.get(n).describe() for n in METHODS.names()]
    if not as_json:
        for r in rows:
            r.pop("config")
    emit(rows, as_json, lambda rs: table(
        [("method", "left"), ("kind", "left"), ("needs", "left"), ("presets", "left"), ("paper", "left")],
        [(r["name"], r["kind"], r["needs"], ", ".join(r["scenarios"]) or "-", r["paper"]) for r in rs]))


@config_app.command("validate")
def config_validate(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Validate params.yaml (every method section too) and print the resolved values (credentials masked)."""
    import yaml

    from forgetflow.masking import mask_secrets

    proj = project()
    resolved = mask_secrets(proj.params.model_dump(mode="json"))
    if as_json:
        emit(resolved, True)
        return
    typer.echo(f"{proj.params_path}: valid")
    typer.echo(yaml.safe_dump(resolved, sort_keys=False).rstrip())


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of params.yaml (for editor completion)."""
    from forgetflow.config import Params

    typer.echo(json.dumps(Params.model_json_schema(), indent=2))
