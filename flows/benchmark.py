"""The benchmark flow: scenario cells × seeds × methods, fanned out through a task runner.

Phase 0 loads or trains the setting's reference models (one task each; once per setting, dataset fingerprint
and reference seed); phase 1 trains (or loads) every cell's original and oracle; phase 2 maps one task per
(cell, seed, method). With references every row carries the per-sample columns (forgetflow/bench_membership.py).
The default runner runs one task at a time, so that every wall time is measured on a quiet machine; a
Dask address (``forgetflow bench --dask tcp://...``) spreads the work over a cluster through prefect-dask,
trading timing fidelity for throughput (the runner used is recorded with the results).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from forgetflow import runtime_env
from forgetflow.bench_settings import load_setting
from forgetflow.project import Project
from forgetflow.scenarios import grid_cells
from tasks import references as reference_tasks
from tasks.benchmarking import reference_set, run_cell_method, run_sequential, setup_cell

@flow(name="benchmark")
def benchmark(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None,
              dataset: str = "fashion-mnist", scenario: str = "random", methods: list[str] | None = None,
              seeds: int = 3, options: dict[str, Any] | None = None, grid: dict[str, list[Any]] | None = None,
              steps: int = 5, setting: str = "default", per_sample: bool = True) -> list[dict[str, Any]]:
    """Run the benchmark and return every row (the CLI writes the tables, plots and MLflow runs).

    ``setting`` names a shipped benchmark setting or a setting file (forgetflow/bench_settings.py);
    ``per_sample`` trains or loads its reference models for the per-sample columns.
    """
    project = Project.load(params_path, overrides)
    runtime_env.apply(project)
    chosen = load_setting(setting)
    methods = list(methods or [])
    rows: list[dict[str, Any]] = []
    refs = reference_set(project, dataset, chosen, reference_tasks.submit_all) if per_sample else None
    if scenario == "sequential":
        futures = [run_sequential.submit(project, dataset, seed, methods, steps,
                                         float((options or {}).get("fraction", 0.02)), chosen, refs)
                   for seed in range(seeds)]
        for f in futures:
            rows.extend(f.result())
        return [{**r, "setting": chosen.name} for r in rows]
    plan = [(cell, seed) for cell in grid_cells(scenario, options or {}, grid) for seed in range(seeds)]
    setups = [setup_cell.submit(project, dataset, scenario, cell, seed, chosen, refs) for cell, seed in plan]
    for f in setups:
        rows.extend(f.result())
    runs = [run_cell_method.submit(project, dataset, scenario, cell, seed, m, chosen, refs)
            for cell, seed in plan for m in methods]
    rows.extend(f.result() for f in runs)
    return [{**r, "setting": chosen.name} for r in rows]
