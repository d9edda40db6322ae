"""``forgetflow data …``: dataset versions, data subjects and samples."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from forgetflow.cli.common import project
from forgetflow.errors import ForgetflowError

app = typer.Typer(no_args_is_help=True, help="Dataset versions, subjects and samples.")


@app.command("prepare")
def prepare(force: Annotated[bool, typer.Option(help="rebuild even if prepared")] = False) -> None:
    """Build dataset version 1 from the raw files into artifacts/prepared (the `prepare` DVC stage)."""
    from forgetflow import pipeline

    proj = project()
    version = pipeline.prepare(proj, force=force)
    typer.echo(f"prepared {version.label}: {version.meta['counts']} ({version.meta['subjects']} data subjects) "
               f"in {proj.prepared_dir}")


@app.command("init")
def init() -> None:
    """Create the current dataset version under data/ (tracked by DVC, pushed, recorded in the ledger)."""
    proj = project()
    from tasks import bootstrap

    version = bootstrap.ensure_data(proj)
    typer.echo(f"current dataset version: {version.label} ({version.meta['counts']['train']} training samples)")


@app.command("subjects")
def subjects(limit: Annotated[Optional[int], typer.Option(help="print at most N")] = None) -> None:
    """Print the ids of data subjects that own training samples, one a line."""
    from forgetflow import pipeline

    for subject in pipeline.current_version(project()).subjects()[: limit or None]:
        typer.echo(subject)


@app.command("samples")
def samples(
    split: Annotated[Optional[str], typer.Option(help="train, val, test or unseen")] = None,
    limit: Annotated[Optional[int], typer.Option(help="print at most N")] = None,
) -> None:
    """Print sample ids, one a line."""
    from forgetflow import pipeline
    from forgetflow.data.version import SPLITS

    if split is not None and split not in SPLITS:
        raise ForgetflowError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    version = pipeline.current_version(project())
    rows = version.rows(split) if split else version.table
    for sample in rows["sample_id"].head(limit if limit else len(rows)):
        typer.echo(sample)
