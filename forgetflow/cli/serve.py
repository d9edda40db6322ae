"""``forgetflow serve`` and ``forgetflow intake``: the long-running processes (Prefect deployments, HTTP intake)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from forgetflow.cli.common import export_code_path, overrides, project


def serve(
    work_pool: Annotated[Optional[str], typer.Option(help="register the deployments for this work pool's workers "
                                                          "instead of running them here")] = None,
    limit: Annotated[Optional[int], typer.Option(help="most flow runs at once in this process")] = None,
) -> None:
    """Run the deployments (scheduled and triggered batches, backlog check, promotion, oracle audit) on a Prefect server.

    Needs PREFECT_API_URL pointing at `prefect server start`; see docs/operations.md.
    """
    proj = project()
    export_code_path()  # flow runs start in child processes
    from flows import deployments

    if work_pool:
        ids = deployments.deploy_all(proj, work_pool, overrides())
        typer.echo(f"{len(ids)} deployment(s) registered for work pool {work_pool!r}; start a worker with "
                   f"`prefect worker start --pool {work_pool}`")
        return
    deployments.serve_all(proj, overrides(), limit=limit)


def intake(
    host: Annotated[Optional[str], typer.Option(help="address to listen on (default: intake.host)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default: intake.port)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="processes sharing the port (default: intake.workers)")] = None,
) -> None:
    """Serve the HTTP intake (POST /requests, GET /requests/{id} and /requests/{id}/receipt); token from FORGETFLOW_INTAKE_TOKEN."""
    import os

    from forgetflow.intake import server

    proj = project()
    token = server.check_token(os.environ.get(server.TOKEN_ENV))
    export_code_path()  # worker processes import the injected event sender (tasks/events.py) by name
    from tasks import events

    server.serve_http(proj, host or proj.params.intake.host, port or proj.params.intake.port, token,
                      workers or proj.params.intake.workers, overrides(), events=events.intake_sender)
