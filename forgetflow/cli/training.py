"""``forgetflow train`` and ``forgetflow oracle``: the original model and the retrained oracle (DVC stages)."""

from __future__ import annotations

from typing import Annotated

import typer

from forgetflow.cli.common import emit, project, stdout_to_stderr


def train(
    force: Annotated[bool, typer.Option(help="register a new original even if a champion exists")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Train the original model on the current dataset version and register it as `champion`."""
    proj = project()
    from tasks import bootstrap

    with stdout_to_stderr(as_json):
        info = bootstrap.train_and_register(proj, force=force)
    emit(info.__dict__, as_json, lambda i: (
        f"champion is model version {i['version']} (run {i['run_id']}); test acc {i['metrics'].get('test_acc', float('nan')):.2f}%"
        + (" — already registered, nothing to do" if i["already_registered"] else f"; trained in {i['seconds']:.1f} s")))


def oracle(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Retrain from scratch on the current dataset version (the oracle of every erasure so far; DVC stage)."""
    from forgetflow import pipeline

    proj = project()
    with stdout_to_stderr(as_json):
        version, info = pipeline.write_oracle(proj)
    emit(info, as_json, lambda i: f"oracle for {version.label} ({i['erased_total']} erased): "
         f"{'cached' if i['cached'] else 'trained'}, {i['train_seconds']:.1f} s to train, test acc {i['test_acc']:.2f}%")
