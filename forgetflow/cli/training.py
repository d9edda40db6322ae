"""``forgetflow train`` and ``forgetflow oracle``: the original model and the retrained oracle (DVC stages)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer

from forgetflow.cli.common import emit, overrides, project, stdout_to_stderr


def train(
    force: Annotated[bool, typer.Option(help="register a new original even if a champion exists")] = False,
    references: Annotated[bool, typer.Option("--references/--no-references", help="also train the reference models "
                                             "of this dataset version when it has none (references.enabled)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Train the original model on the current dataset version and register it as `champion`; then the reference
    models of the version (docs/verification.md)."""
    proj = project()
    from tasks import bootstrap

    with stdout_to_stderr(as_json):
        info = bootstrap.train_and_register(proj, force=force).__dict__
        info["references"] = None
        if references and proj.params.references.enabled:
            from flows import references as reference_flows

            # reference models follow the dataset version: a set for this one unless it has one
            info["references"] = reference_flows.refresh(str(proj.params_path), overrides(), why="forgetflow train")
    emit(info, as_json, lambda i: (
        f"champion is model version {i['version']} (run {i['run_id']}); test acc {i['metrics'].get('test_acc', float('nan')):.2f}%"
        + (" — already registered, nothing to do" if i["already_registered"] else f"; trained in {i['seconds']:.1f} s")
        + (f"\n{references_line(i['references'])}" if i["references"] else "")))


def references_line(r: dict[str, Any]) -> str:
    """One line about a reference set: which version, K, seed, trained or loaded."""
    state = "loaded from the cache" if r.get("cached") else f"trained in {r['train_seconds']:.0f} s"
    return (f"reference models for {r.get('dataset_version', 'v' + str(r['version']))}: K={r['k']}, seed {r['seed']}, "
            f"{state} ({r['key']})")


def references(
    k: Annotated[Optional[int], typer.Option("--k", help="reference models, even (default: references.k)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local task-runner threads (default: params.yaml runner)")] = None,
    dask: Annotated[Optional[str], typer.Option(help="Dask scheduler address (default: params.yaml runner)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Train (or load) the reference models of the current dataset version and score every sample (DVC stage)."""
    proj = project()
    chosen = {**overrides(), **({"references.k": k} if k is not None else {})}  # an odd K: a one-line error
    with stdout_to_stderr(as_json):
        from flows import references as reference_flows
        from flows import runners

        params = runners.override(proj.params, workers, dask)
        info = reference_flows.run(str(proj.params_path), chosen, runner=runners.task_runner(params))
        info["runner"] = runners.describe(params)
        proj.models_dir.mkdir(parents=True, exist_ok=True)
        (proj.models_dir / "references.json").write_text(json.dumps(info, indent=1) + "\n")
    emit(info, as_json, references_line)


def oracle(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Retrain from scratch on the current dataset version (the oracle of every erasure so far; DVC stage)."""
    from forgetflow import pipeline

    proj = project()
    with stdout_to_stderr(as_json):
        version, info = pipeline.write_oracle(proj)
    emit(info, as_json, lambda i: f"oracle for {version.label} ({i['erased_total']} erased): "
         f"{'cached' if i['cached'] else 'trained'}, {i['train_seconds']:.1f} s to train, test acc {i['test_acc']:.2f}%")
