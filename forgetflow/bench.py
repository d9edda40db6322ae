"""Benchmark core: one scenario, one seed, several methods, all measured against the same retrained oracle.

``setup`` builds the scenario task, trains (or loads from the cache) the original model and the oracle;
``run_method`` unlearns a copy of the original with one method and measures it. The rows include the
original model ("do nothing") and the oracle ("retrain") so that every gap has its scale. The Prefect flow
in ``flows/benchmark.py`` fans ``run_method`` calls out over a task runner; the CLI prints the tables.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from forgetflow.data.splits import Splits, build_splits
from forgetflow.data.version import DatasetVersion
from forgetflow.methods import METHODS, data_for
from forgetflow.metrics import Evaluation, compare_to_oracle, evaluate_model
from forgetflow.models import clone, same_architecture
from forgetflow.oracle import TrainedModel, forget_hash, train_cached
from forgetflow.runtime import RunContext, resolve_device
from forgetflow.scenarios import ScenarioTask, make_task
from forgetflow.training import Recipe

DO_NOTHING = "original"
RETRAIN = "retrain"


@dataclass
class Setup:
    """Everything the method runs of one (scenario, seed) share."""

    task: ScenarioTask
    splits: Splits
    original: TrainedModel
    oracle: TrainedModel | None
    recipe: Recipe
    seed: int
    device: torch.device
    max_shadow: int
    original_eval: Evaluation
    oracle_eval: Evaluation | None

    def extra(self, model: nn.Module) -> dict[str, float]:
        if self.task.extra_metrics is None:
            return {}
        return self.task.extra_metrics(model, self.splits, self.device)


def setup(
    version: DatasetVersion,
    scenario: str,
    seed: int,
    arch: str,
    arch_config: dict[str, Any],
    recipe: Recipe,
    cache_dir: Path,
    device: str = "auto",
    scenario_options: dict[str, Any] | None = None,
    with_oracle: bool = True,
    max_shadow: int = 5000,
    progress: bool = False,
) -> Setup:
    """Build the task and train (or load) its original model and retrained oracle."""
    task = make_task(scenario, version, seed, **(scenario_options or {}))
    splits = build_splits(task.version, task.forget_ids)
    dev = resolve_device(device)
    original = train_cached("original", splits.train, task.version.fingerprint, "", arch, arch_config, recipe, seed,
                            cache_dir, device, progress)
    oracle = None
    if with_oracle:
        oracle = train_cached("oracle", splits.retain, task.version.fingerprint, forget_hash(task.forget_ids), arch,
                              arch_config, recipe, seed, cache_dir, device, progress)
    original_eval = evaluate_model(original.model, splits, dev, max_shadow=max_shadow, seed=seed)
    oracle_eval = evaluate_model(oracle.model, splits, dev, max_shadow=max_shadow, seed=seed) if oracle else None
    return Setup(task, splits, original, oracle, recipe, seed, dev, max_shadow, original_eval, oracle_eval)


def _row(s: Setup, method: str, model: nn.Module, evaluation: Evaluation, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": s.task.scenario, "method": method, "seed": s.seed,
                           "forget_size": len(s.splits.forget), "seconds": seconds}
    row.update(evaluation.metrics)
    row.update(s.extra(model))
    if s.oracle_eval is not None and s.oracle is not None:
        row.update(compare_to_oracle(evaluation, s.oracle_eval))
        row["retrain_seconds"] = s.oracle.seconds
        row["time_ratio"] = seconds / s.oracle.seconds if s.oracle.seconds > 0 else float("nan")
    return row


def reference_rows(s: Setup) -> list[dict[str, Any]]:
    """The "do nothing" (original) row and the "retrain" (oracle) row."""
    rows = [_row(s, DO_NOTHING, s.original.model, s.original_eval, 0.0)]
    if s.oracle is not None and s.oracle_eval is not None:
        rows.append(_row(s, RETRAIN, s.oracle.model, s.oracle_eval, s.oracle.seconds))
    return rows


def run_method(s: Setup, method: str, overrides: dict[str, Any] | None = None, preset: str | None = "auto") -> dict[str, Any]:
    """Unlearn a copy of the original with ``method`` and measure it against the oracle."""
    spec = METHODS.get(method)
    scenario = s.task.preset if preset == "auto" else preset
    cfg = spec.resolve(scenario, overrides)
    model = clone(s.original.model)
    data = data_for(spec, s.splits.forget, s.splits.retain, s.splits.num_classes, s.recipe)
    run = RunContext.create(s.seed + 1000, str(s.device), deterministic=True)
    start = time.perf_counter()
    unlearned = spec.unlearn(model, data, cfg, run)
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if not same_architecture(unlearned, s.original.model):
        raise RuntimeError(f"method {method!r} returned a model of another architecture")
    evaluation = evaluate_model(unlearned, s.splits, s.device, max_shadow=s.max_shadow, seed=s.seed)
    row = _row(s, method, unlearned, evaluation, seconds)
    row["config"] = cfg.model_dump()
    return row


def aggregate(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Mean and std over seeds of ``keys``, one row per (scenario, method), methods in first-seen order."""
    order: list[tuple[str, str]] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        k = (r["scenario"], r["method"])
        if k not in groups:
            order.append(k)
            groups[k] = []
        groups[k].append(r)
    out = []
    for k in order:
        g = groups[k]
        agg: dict[str, Any] = {"scenario": k[0], "method": k[1], "seeds": len(g)}
        for key in keys:
            vals = [float(r[key]) for r in g if key in r and r[key] is not None and not _isnan(r[key])]
            agg[key] = float(np.mean(vals)) if vals else float("nan")
            agg[f"{key}_std"] = float(np.std(vals)) if len(vals) > 1 else 0.0
        out.append(agg)
    return out


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False
