"""Benchmark tasks: build the benchmark's dataset version, train a cell's original + oracle, run one method.

Tasks pass references (dataset name, scenario options, seed, method), never models: the trained models sit
in the model cache and the per-process ``bench.setup_cached`` memo, so a task runner that runs tasks in other
processes (Dask) rebuilds a setup from the cache instead of pickling models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import bench, pipeline
from forgetflow.data import DatasetVersion, load_version, prepare_version
from forgetflow.project import Project


def publish_results(project: Project, name: str, folder: Path, rows: list[dict[str, Any]], runner: str,
                    params: dict[str, Any]) -> tuple[str, str]:
    """A benchmark's outputs: ``results.csv``, ``results.md``, the plots, and one MLflow run holding them all.

    Returns the Markdown tables and the MLflow run id.
    """
    from forgetflow import bench_report
    from tasks import tracking

    csv_path = bench_report.write_csv(rows, folder / "results.csv")
    md_path = folder / "results.md"
    tables = bench_report.write_markdown(rows, md_path, name, params["command"], runner)
    figures = bench_report.plots(rows, folder)
    run_id = tracking.log_bench(project, name, rows, [csv_path, md_path, *figures], params)
    return tables, run_id


def bench_version(project: Project, dataset: str) -> DatasetVersion:
    """The benchmark's version 1 of ``dataset`` (built once under artifacts/bench/<dataset>)."""
    folder = project.artifacts_dir / "bench" / dataset
    if (folder / "version.json").exists():
        return load_version(folder)
    data = project.params.data.model_copy(update={"dataset": dataset})
    version = prepare_version(data, project.root, project.params.seed)
    version.write(folder)
    return load_version(folder)


def _setup(project: Project, dataset: str, scenario: str, options: dict[str, Any], seed: int) -> bench.Setup:
    version = bench_version(project, dataset)
    name, config = pipeline.arch(project, version)
    return bench.setup_cached(version, scenario, seed, name, config, pipeline.recipe(project), project.oracle_dir,
                              project.params.train.device, options, project.params.evaluate.mia_max_shadow)


@task(name="bench-setup", cache_policy=NO_CACHE)
def setup_cell(project: Project, dataset: str, scenario: str, options: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Train (or load) the cell's original and oracle; return the do-nothing and retrain rows."""
    s = _setup(project, dataset, scenario, options, seed)
    label = bench.scenario_label(scenario, options)
    return [{**r, "scenario": label} for r in bench.reference_rows(s)]


@task(name="bench-method", cache_policy=NO_CACHE)
def run_cell_method(project: Project, dataset: str, scenario: str, options: dict[str, Any], seed: int,
                    method: str) -> dict[str, Any]:
    """Unlearn with one method in one cell and measure it against the cell's oracle."""
    s = _setup(project, dataset, scenario, options, seed)
    overrides = project.params.unlearn.methods.get(method)
    row = bench.run_method(s, method, overrides, preset="auto" if project.params.unlearn.preset == "auto"
                           else project.params.unlearn.preset)
    return {**row, "scenario": bench.scenario_label(scenario, options)}


@task(name="bench-sequential", cache_policy=NO_CACHE)
def run_sequential(project: Project, dataset: str, seed: int, methods: list[str], steps: int,
                   fraction: float) -> list[dict[str, Any]]:
    """The sequential protocol for one seed (five batches, each against its own oracle)."""
    version = bench_version(project, dataset)
    name, config = pipeline.arch(project, version)
    return bench.sequential(version, seed, methods, name, config, pipeline.recipe(project), project.oracle_dir,
                            project.params.train.device, steps, fraction, project.params.evaluate.mia_max_shadow)
