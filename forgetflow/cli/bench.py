"""``forgetflow bench`` and ``forgetflow tune``: compare methods against the retrained oracle; search presets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import command_line, emit, kv, overrides, project, stdout_to_stderr
from forgetflow.errors import ConfigError, MethodDivergedError

PRESETS = Path(__file__).resolve().parents[1] / "presets"  # forgetflow/presets: shipped as package data


def bench(
    dataset: Annotated[str, typer.Option(help="fashion-mnist, digits or image-folder")] = "fashion-mnist",
    scenario: Annotated[str, typer.Option(help="random, subject, full-class, corrupted or sequential")] = "random",
    methods: Annotated[str, typer.Option(help="comma-separated registered methods")] = "finetune,neggrad-plus",
    seeds: Annotated[int, typer.Option(help="seeds 0..K-1")] = 3,
    option: Annotated[Optional[list[str]], typer.Option(help="scenario option key=value (repeatable)")] = None,
    grid: Annotated[Optional[list[str]], typer.Option(help="scenario option grid key=v1,v2 (repeatable)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default: state/bench/<name>)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local task-runner threads (1 = timings on a quiet machine); "
                                                   "default: params.yaml runner")] = None,
    dask: Annotated[Optional[str], typer.Option(help="Dask scheduler address: fan out through prefect-dask; "
                                                "default: params.yaml runner")] = None,
    setting: Annotated[str, typer.Option(help="benchmark setting: default, memorising or a setting .yaml file "
                                              "(forgetflow/settings/)")] = "default",
    per_sample: Annotated[bool, typer.Option(help="train/load the setting's reference models and add the per-sample "
                                                  "LiRA/RMIA columns")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
) -> None:
    """Benchmark methods against the retrained oracle: tables (Markdown + CSV), plots, MLflow runs."""
    import datetime as dt

    from forgetflow import bench_report
    from forgetflow.bench_settings import load_setting
    from forgetflow.methods import METHODS
    from forgetflow.scenarios import SCENARIOS

    proj = project()
    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        METHODS.get(m)
    if scenario != "sequential":
        SCENARIOS.get(scenario)
    bench_setting = load_setting(setting)  # a bad name or file fails here, before any work
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = (f"{dataset}-{bench_setting.name}-{scenario}-{stamp}" if bench_setting.name != "default"
            else f"{dataset}-{scenario}-{stamp}")
    folder = out or proj.state_dir / "bench" / name
    with stdout_to_stderr(True):
        from flows import runners
        from flows.benchmark import benchmark
        from tasks.benchmarking import publish_results

        chosen = runners.override(proj.params, workers, dask)  # the flags override params.yaml's runner
        runner_label = runners.describe(chosen)
        rows = benchmark.with_options(task_runner=runners.task_runner(chosen))(
            params_path=str(proj.params_path), overrides=overrides(), dataset=dataset, scenario=scenario,
            methods=names, seeds=seeds, options=kv(option), grid=kv(grid, lists=True), setting=setting,
            per_sample=per_sample)
        if scenario == "sequential":
            for r in rows:
                r["scenario"] = f"sequential step {r['step']}"
        table, run_id = publish_results(
            proj, name, folder, rows, runner_label,
            {"dataset": dataset, "setting": bench_setting.name, "scenario": scenario, "methods": names,
             "seeds": seeds, "per_sample": per_sample, "options": kv(option), "grid": kv(grid, lists=True),
             "command": command_line(), "runner": runner_label})
    if as_json:
        emit(bench_report.table_rows(rows), True)
    else:
        typer.echo(table)
        typer.echo(f"results: {folder}  (MLflow run {run_id})")


def tune(
    methods: Annotated[str, typer.Option(help="comma-separated methods")],
    dataset: Annotated[str, typer.Option(help="dataset to search on")] = "fashion-mnist",
    scenario: Annotated[str, typer.Option(help="random, subject, full-class or corrupted")] = "random",
    option: Annotated[Optional[list[str]], typer.Option(help="scenario option key=value (repeatable)")] = None,
    grid: Annotated[Optional[list[str]], typer.Option(help="search on every cell of a grid at once, key=v1,v2 "
                                                          "(repeatable; the score is the mean over the cells)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of the search's scenario draw and models "
                                                     "(default 100: never a benchmark seed)")] = None,
    budget: Annotated[Optional[int], typer.Option(help="at most N grid points (seeded sample)")] = None,
    max_time_ratio: Annotated[Optional[float], typer.Option(help="reject trials slower than this x retraining")] = None,
    write: Annotated[bool, typer.Option(help="write the winners to forgetflow/presets/<method>/[<setting>/]<family>.yaml")] = False,
    setting: Annotated[str, typer.Option(help="benchmark setting to search on: default, memorising or a setting "
                                              ".yaml file; presets of another setting than default are written "
                                              "under forgetflow/presets/<method>/<setting>/")] = "default",
    objective: Annotated[Optional[str], typer.Option(help="search objective instead of the family's default: "
                                                         "privacy-retain for random/subject, full-class-retain for "
                                                         "full-class (forgetflow/tuning.py)")] = None,
    space: Annotated[Optional[list[str]], typer.Option(help="replace the declared values of one hyper-parameter: "
                                                           "key=v1,v2 (repeatable; recorded in the preset)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="with --write: the presets folder to write into "
                                                     "(default: forgetflow/presets, the shipped presets)")] = None,
) -> None:
    """Search each method's declared space on the validation split; optionally ship the winners as presets."""
    import numpy as np

    from forgetflow import bench, tuning
    from forgetflow.bench_settings import load_setting
    from forgetflow.methods import METHODS
    from forgetflow.scenarios import grid_cells

    proj = project()
    from tasks.benchmarking import resolved

    names = [m.strip() for m in methods.split(",") if m.strip()]
    for m in names:
        METHODS.get(m)
    chosen = load_setting(setting)  # a bad name or file fails here, before any work
    given = kv(space, lists=True)
    if scenario not in tuning.OBJECTIVES:
        raise ConfigError(f"--scenario {scenario}: tune searches {', '.join(tuning.OBJECTIVES)}")
    tuning.objective_for(scenario, objective)  # each of these scenarios is its own preset family
    for m in names:
        unknown = sorted(set(given) - set(METHODS.get(m).config.model_fields))
        if unknown:
            raise ConfigError(f"--space {unknown[0]}: not a hyper-parameter of {m} "
                              f"(has: {', '.join(METHODS.get(m).config.model_fields)})")
    seed = tuning.SEARCH_SEED if seed is None else seed
    version, r = resolved(proj, dataset, chosen)
    opts = kv(option)
    cells = grid_cells(scenario, opts, kv(grid, lists=True)) if grid else [opts]
    s = [bench.setup(version, scenario, seed, r.arch, r.arch_config, r.recipe, proj.oracle_dir,
                     proj.params.train.device, cell, with_oracle=False, max_shadow=proj.params.evaluate.mia_max_shadow)
         for cell in cells]
    failed = []
    for m in names:
        declared = METHODS.get(m).search_space or {}
        try:
            result = tuning.search(s, m, space={**declared, **given} if given else None, budget=budget,
                                   max_time_ratio=max_time_ratio, objective=objective, cells=cells)
        except MethodDivergedError as exc:  # the other methods' searches still run
            typer.echo(f"{m}: no preset: {exc}", err=True)
            failed.append(m)
            continue
        best = result["best"]
        typer.echo(f"{m} [{result['family']}]: best {best['config']} score {best['score']:.3f} "
                   f"({best['seconds']:.1f} s, {len(result['trials'])} trials)")
        if write:
            path = tuning.write_preset(result, out or PRESETS, {
                "command": command_line(), "dataset": dataset, "scenario_options": opts,
                **({"cells": cells} if grid else {}), "seed": seed,
                "original_train_seconds": round(float(np.mean([x.original.seconds for x in s])), 2),
                "train_recipe": s[0].recipe.__dict__,
                "model": {"arch": r.arch, **{k: v for k, v in r.arch_config.items() if k not in ("in_channels", "num_classes", "image_size")}}},
                chosen.name)
            typer.echo(f"  wrote {path}")
    if failed:
        raise MethodDivergedError(f"no preset for {', '.join(failed)}: every trial diverged")
