"""Benchmark tasks: build a setting's dataset version, train its references, a cell's original + oracle, run one method.

Tasks pass references (dataset name, setting, scenario options, seed, method, the reference set's folder),
never models: the trained models sit in the model cache and the per-process ``bench.setup_cached`` memo,
so a task runner that runs tasks in other processes (Dask) rebuilds a setup from the cache instead of
pickling models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import bench, bench_settings, references
from forgetflow.bench_settings import Setting
from forgetflow.data import DatasetVersion
from forgetflow.project import Project

_REFERENCE_SETS: dict[str, references.ReferenceSet] = {}


def publish_results(project: Project, name: str, folder: Path, rows: list[dict[str, Any]], runner: str,
                    params: dict[str, Any]) -> tuple[str, str]:
    """A benchmark's outputs: ``results.csv``, ``results.md``, the plots, and one MLflow run holding them all.

    Returns the Markdown tables and the MLflow run id.
    """
    from forgetflow import bench_report
    from tasks import tracking

    csv_path = bench_report.write_csv(rows, folder / "results.csv")
    md_path = folder / "results.md"
    tables = bench_report.write_markdown(rows, md_path, name, params["command"], runner, params.get("setting"))
    figures = bench_report.plots(rows, folder)
    run_id = tracking.log_bench(project, name, rows, [csv_path, md_path, *figures], params)
    return tables, run_id


def bench_version(project: Project, dataset: str, setting: Setting | None = None) -> DatasetVersion:
    """The benchmark's version 1 of ``dataset`` (artifacts/bench/<dataset>), cut down to the setting's pool."""
    return bench_settings.dataset_version(project, dataset, setting or bench_settings.load_setting("default"))


def resolved(project: Project, dataset: str, setting: Setting | None = None
             ) -> tuple[DatasetVersion, bench_settings.Resolved]:
    """The setting's dataset version and what its models are trained with."""
    setting = setting or bench_settings.load_setting("default")
    version = bench_version(project, dataset, setting)
    return version, bench_settings.resolve(setting, project, version)


def _reference_set(folder: str) -> references.ReferenceSet:
    if folder not in _REFERENCE_SETS:
        _REFERENCE_SETS[folder] = references.ReferenceSet.load(Path(folder))
    return _REFERENCE_SETS[folder]


def _setup(project: Project, dataset: str, scenario: str, options: dict[str, Any], seed: int,
           setting: Setting | None = None, refs_folder: str | None = None) -> bench.Setup:
    version, r = resolved(project, dataset, setting)
    s = bench.setup_cached(version, scenario, seed, r.arch, r.arch_config, r.recipe, project.oracle_dir,
                           project.params.train.device, options, project.params.evaluate.mia_max_shadow)
    if refs_folder is not None:
        refs = _reference_set(refs_folder)
        if s.refs is None or s.refs.context.refs.key != refs.key:
            bench.attach_references(s, refs, project.params.references, Path(refs_folder))
    return s


def reference_set(project: Project, dataset: str, setting: Setting | None = None,
                  map_fn: references.Mapper = map) -> str:
    """Load or train the setting's reference set (once per setting, dataset fingerprint and seed); its folder."""
    version, r = resolved(project, dataset, setting)
    p = project.params
    trained = references.train_references(version, references.root_of(project), r.arch, r.arch_config, r.recipe, r.k,
                                          r.ref_seed, p.train.device, p.train.deterministic, False, map_fn,
                                          f"benchmark setting {r.setting.name}", p.evaluate.batch_size)
    return str(trained.folder)


@task(name="bench-setup", cache_policy=NO_CACHE)
def setup_cell(project: Project, dataset: str, scenario: str, options: dict[str, Any], seed: int,
               setting: Setting | None = None, refs_folder: str | None = None) -> list[dict[str, Any]]:
    """Train (or load) the cell's original and oracle; return the do-nothing and retrain rows."""
    s = _setup(project, dataset, scenario, options, seed, setting, refs_folder)
    label = bench.scenario_label(scenario, options)
    return [{**r, "scenario": label} for r in bench.reference_rows(s)]


@task(name="bench-method", cache_policy=NO_CACHE)
def run_cell_method(project: Project, dataset: str, scenario: str, options: dict[str, Any], seed: int,
                    method: str, setting: Setting | None = None, refs_folder: str | None = None) -> dict[str, Any]:
    """Unlearn with one method in one cell and measure it against the cell's oracle."""
    s = _setup(project, dataset, scenario, options, seed, setting, refs_folder)
    overrides = project.params.unlearn.methods.get(method)
    row = bench.run_method(s, method, overrides, preset="auto" if project.params.unlearn.preset == "auto"
                           else project.params.unlearn.preset, setting=setting.name if setting else "default")
    return {**row, "scenario": bench.scenario_label(scenario, options)}


@task(name="bench-sequential", cache_policy=NO_CACHE)
def run_sequential(project: Project, dataset: str, seed: int, methods: list[str], steps: int,
                   fraction: float, setting: Setting | None = None, refs_folder: str | None = None
                   ) -> list[dict[str, Any]]:
    """The sequential protocol for one seed (five batches, each against its own oracle)."""
    version, r = resolved(project, dataset, setting)
    refs = None
    if refs_folder is not None:
        refs = (_reference_set(refs_folder), project.params.references, Path(refs_folder))
    return bench.sequential(version, seed, methods, r.arch, r.arch_config, r.recipe, project.oracle_dir,
                            project.params.train.device, steps, fraction, project.params.evaluate.mia_max_shadow,
                            references=refs, setting=r.setting.name)
