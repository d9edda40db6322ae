"""The root Typer app: the root options, every command in help order, and the one place errors are caught.

A command lives in the module of its concern (``data``, ``requests``, ``batch``, ``training``, ``promotion``,
``bench``, ``serve``, ``erasure``, ``info``); this module only lists them, so the whole CLI reads in one
screen. ``ForgetflowError`` and its subclasses become ``error: <what>: <why>`` on stderr and exit 1; anything
else is a bug and says how to see its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from forgetflow import runtime_env
from forgetflow.cli import batch, bench, data, erasure, info, promotion, requests, serve, training
from forgetflow.cli.common import STATE
from forgetflow.errors import ForgetflowError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make a trained image classifier forget data, prove it, ship it with receipts.")


@app.callback()
def _root(
    params: Annotated[Optional[Path], typer.Option("--params", help="params.yaml to use (default: nearest upwards)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a param: key.path=value (repeatable)")] = None,
) -> None:
    STATE.params = params
    STATE.overrides = list(set_ or [])


# commands, in the order `forgetflow --help` lists them
app.command("train")(training.train)
app.command("oracle")(training.oracle)
app.command("demo")(batch.demo)
app.command("bench")(bench.bench)
app.command("tune")(bench.tune)
app.command("serve")(serve.serve)
app.command("intake")(serve.intake)
app.command("purge")(erasure.purge)
app.command("promote")(promotion.promote)
app.command("approve")(promotion.approve)
app.command("rollback")(promotion.rollback)
app.command("history")(promotion.history)
app.command("audit")(promotion.audit)
app.command("report")(batch.report)
app.command("status")(info.status)
app.command("methods")(info.methods)
# command groups
app.add_typer(data.app, name="data")
app.add_typer(requests.app, name="request")
app.add_typer(batch.app, name="batch")
app.add_typer(erasure.receipt_app, name="receipt")
app.add_typer(info.config_app, name="config")


def main() -> None:
    """Console entry point: one-line errors, non-zero exits."""
    runtime_env.apply()
    from forgetflow.masking import mask_text  # error lines never show a credential (docs/operations.md)

    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # click hands a command's `raise typer.Exit(n)` back as a return value here
            sys.exit(code)
    except ForgetflowError as exc:
        typer.echo(f"error: {mask_text(str(exc))}", err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own message and exit code
        import os

        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("FORGETFLOW_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(f"error: internal error: {type(exc).__name__}: {mask_text(first)} (FORGETFLOW_DEBUG=1 shows the "
                   "traceback)", err=True)
        sys.exit(2)
