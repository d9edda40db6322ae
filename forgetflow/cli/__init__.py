"""The ``forgetflow`` command line (Typer): thin commands over the flows, tasks and core functions.

``forgetflow.cli:main`` is the console script; :mod:`forgetflow.cli.app` lists every command. Errors are one
line on stderr and a non-zero exit. Commands that run flows import Prefect lazily, inside the command, so
``forgetflow --help`` stays fast.
"""

from forgetflow.cli.app import app, main

__all__ = ["app", "main"]
