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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from forgetflow.bench_membership import BenchReferences, SampleScores, membership_columns
from forgetflow.data.splits import Splits, build_splits
from forgetflow.data.version import DatasetVersion
from forgetflow.errors import MethodDivergedError
from forgetflow.methods import METHODS, data_for
from forgetflow.metrics import Evaluation, compare_to_oracle, evaluate_model
from forgetflow.models import clone, same_architecture
from forgetflow.oracle import TrainedModel, forget_hash, train_cached
from forgetflow.references import ReferenceSet
from forgetflow.runtime import RunContext, resolve_device
from forgetflow.scenarios import ScenarioTask, make_task
from forgetflow.training import Recipe

if TYPE_CHECKING:
    from forgetflow.config import ReferenceParams

DO_NOTHING = "original"
RETRAIN = "retrain"
WRECK_DROP = 10.0  # points of test accuracy below the oracle's (else the original's) at which a cell is flagged as wrecking the model


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
    # per-sample membership (attach_references): the setting's reference views and the oracle's scores
    refs: BenchReferences | None = None
    oracle_scores: dict[str, SampleScores] | None = None

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
    # the original sees the training split in table order: its cache key names no forget set, so its training
    # data must not depend on one (splits.train would put the forget samples first)
    original = train_cached("original", task.version.sample_set(split="train"), task.version.fingerprint, "", arch,
                            arch_config, recipe, seed, cache_dir, device, progress)
    oracle = None
    if with_oracle:
        oracle = train_cached("oracle", splits.retain, task.version.fingerprint, forget_hash(task.forget_ids), arch,
                              arch_config, recipe, seed, cache_dir, device, progress)
    original_eval = evaluate_model(original.model, splits, dev, max_shadow=max_shadow, seed=seed)
    oracle_eval = evaluate_model(oracle.model, splits, dev, max_shadow=max_shadow, seed=seed) if oracle else None
    return Setup(task, splits, original, oracle, recipe, seed, dev, max_shadow, original_eval, oracle_eval)


_SETUPS: dict[str, Setup] = {}


def setup_cached(version: DatasetVersion, scenario: str, seed: int, arch: str, arch_config: dict[str, Any],
                 recipe: Recipe, cache_dir: Path, device: str = "auto", scenario_options: dict[str, Any] | None = None,
                 max_shadow: int = 5000, progress: bool = False) -> Setup:
    """``setup`` memoised per process: method runs of one (scenario, seed) share models and evaluations."""
    from forgetflow.data.manifest import canonical_json

    key = canonical_json({"v": version.fingerprint, "s": scenario, "seed": seed, "arch": arch, "cfg": arch_config,
                          "r": recipe.__dict__, "o": scenario_options or {}, "m": max_shadow, "d": str(cache_dir)})
    if key not in _SETUPS:
        _SETUPS[key] = setup(version, scenario, seed, arch, arch_config, recipe, cache_dir, device, scenario_options,
                             True, max_shadow, progress)
    return _SETUPS[key]


def scenario_label(scenario: str, options: dict[str, Any] | None) -> str:
    """``corrupted[backdoor,0.5]``-style label of a scenario with its options (the row's scenario column)."""
    if not options:
        return scenario
    return f"{scenario}[{','.join(str(v) for _, v in sorted(options.items()))}]"


def _row(s: Setup, method: str, model: nn.Module, evaluation: Evaluation, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"scenario": s.task.scenario, "method": method, "seed": s.seed, **{
                           f"opt_{k}": v for k, v in s.task.details.items() if isinstance(v, (int, float, str))},
                           "forget_size": len(s.splits.forget), "seconds": seconds}
    row.update(evaluation.metrics)
    row.update(s.extra(model))
    row.update(per_sample_columns(s, model, evaluation))
    if s.oracle_eval is not None and s.oracle is not None:
        row.update(compare_to_oracle(evaluation, s.oracle_eval))
        row["retrain_seconds"] = s.oracle.seconds
        row["time_ratio"] = seconds / s.oracle.seconds if s.oracle.seconds > 0 else float("nan")
    if method not in (DO_NOTHING, RETRAIN):
        # the oracle is what the method must match: forgetting a whole class costs the oracle that class's test samples
        target = ((s.oracle_eval.metrics.get("test_acc"), "oracle") if s.oracle_eval is not None
                  else (s.original_eval.metrics.get("test_acc"), "original"))
        row["flags"] = "; ".join(cell_flags(row, *target))
    return row


def cell_flags(row: dict[str, Any], reference_test_acc: float | None, reference: str = "original") -> list[str]:
    """Why a method's cell must not be read as a result: it wrecked the model (test accuracy more than
    ``WRECK_DROP`` points below the ``reference`` model's: the oracle's where there is one), or it cost more
    than retraining."""
    flags = []
    test_acc = row.get("test_acc")
    if test_acc is not None and reference_test_acc is not None and test_acc < reference_test_acc - WRECK_DROP:
        flags.append(f"wrecked: test accuracy {test_acc:.1f} against the {reference}'s {reference_test_acc:.1f}")
    ratio = row.get("time_ratio")
    if ratio is not None and not _isnan(ratio) and ratio > 1.0:
        flags.append(f"slower than retraining ({ratio:.2f} x)")
    return flags


def attach_references(s: Setup, refs: ReferenceSet, settings: ReferenceParams, folder: Path | None = None,
                      out_only: tuple[str, ...] = ()) -> Setup:
    """Give a setup the setting's reference models: every row then carries the per-sample columns.

    Forget samples the scenario altered (corrupted labels or triggers) are rescored by the checkpoints in
    ``folder``; ``out_only`` names samples erased before this task (forgetflow/bench_membership.py).
    """
    s.refs = BenchReferences.for_splits(refs, settings, s.splits, tuple(s.task.corrupted_ids), folder, s.device,
                                        out_only)
    if s.oracle is not None and s.oracle_eval is not None:
        s.oracle_scores = s.refs.scores(s.oracle.model, s.oracle_eval.forget, s.oracle_eval.test, s.splits, s.device)
    return s


def per_sample_columns(s: Setup, model: nn.Module, evaluation: Evaluation) -> dict[str, Any]:
    """LiRA / RMIA detected shares at 1 % FPR and the distance to the oracle's scores (none without references)."""
    if s.refs is None:
        return {}
    return membership_columns(s.refs.scores(model, evaluation.forget, evaluation.test, s.splits, s.device),
                              s.oracle_scores)


def reference_rows(s: Setup) -> list[dict[str, Any]]:
    """The "do nothing" (original) row and the "retrain" (oracle) row."""
    rows = [{**_row(s, DO_NOTHING, s.original.model, s.original_eval, 0.0),
             "_forget_loss": s.original_eval.forget.loss.tolist()}]
    if s.oracle is not None and s.oracle_eval is not None:
        rows.append({**_row(s, RETRAIN, s.oracle.model, s.oracle_eval, s.oracle.seconds),
                     "_forget_loss": s.oracle_eval.forget.loss.tolist()})
    return rows


def run_method(s: Setup, method: str, overrides: dict[str, Any] | None = None, preset: str | None = "auto",
               setting: str = "default") -> dict[str, Any]:
    """Unlearn a copy of the original with ``method`` and measure it against the oracle.

    The preset is the one tuned on benchmark ``setting`` where the method ships one, else the default setting's
    (the row's ``preset`` and ``warning`` say which ran)."""
    spec = METHODS.get(method)
    scenario = s.task.preset if preset == "auto" else preset
    cfg = spec.resolve(scenario, overrides, setting=setting)
    applied = spec.applied_preset(scenario, setting)
    model = clone(s.original.model)
    data = data_for(spec, s.splits.forget, s.splits.retain, s.splits.num_classes, s.recipe)
    run = RunContext.create(s.seed + 1000, str(s.device), deterministic=True)
    start = time.perf_counter()
    try:
        unlearned = spec.unlearn(model, data, cfg, run)
    except MethodDivergedError as exc:  # a row that says so, rather than a benchmark that stops
        return {"scenario": s.task.scenario, "method": method, "seed": s.seed, "forget_size": len(s.splits.forget),
                "seconds": time.perf_counter() - start, "diverged": str(exc), "config": cfg.model_dump(),
                "preset": applied["applied"], "warning": applied["warning"] or "",
                "flags": "diverged: " + str(exc).replace("; ", ", ")}
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if not same_architecture(unlearned, s.original.model):
        raise RuntimeError(f"method {method!r} returned a model of another architecture")
    evaluation = evaluate_model(unlearned, s.splits, s.device, max_shadow=s.max_shadow, seed=s.seed)
    row = _row(s, method, unlearned, evaluation, seconds)
    row["config"] = cfg.model_dump()
    row["preset"] = applied["applied"]
    row["warning"] = applied["warning"] or ""
    row["_forget_loss"] = evaluation.forget.loss.tolist()  # for the histograms; not a table column
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


def sequential(
    version: DatasetVersion,
    seed: int,
    methods: list[str],
    arch: str,
    arch_config: dict[str, Any],
    recipe: Recipe,
    cache_dir: Path,
    device: str = "auto",
    steps: int = 5,
    fraction: float = 0.02,
    max_shadow: int = 5000,
    preset: str | None = "auto",
    references: tuple[ReferenceSet, ReferenceParams, Path | None] | None = None,
    setting: str = "default",
) -> list[dict[str, Any]]:
    """Five (``steps``) deletion batches in a row, each measured against its own retrained oracle.

    Batch k forgets a fresh random ``fraction`` of the training split; the model after batch k-1 is the
    starting point of batch k; the retain set of batch k excludes everything forgotten so far, and the
    forget set it is evaluated on is the union of every batch so far (so a rebound of forgotten knowledge
    shows). Oracle k is trained from scratch on retain k (cached). Rows carry ``step``. With ``references``
    (set, attack settings, checkpoint folder) every row carries the per-sample columns.
    """
    from forgetflow.data.splits import build_splits as _build

    train_ids = version.rows("train")["sample_id"].to_numpy(dtype=object)
    rng = np.random.default_rng([seed, 0x5E0])
    order = rng.permutation(train_ids)
    per_step = max(1, int(round(fraction * len(train_ids))))
    dev = resolve_device(device)
    rows: list[dict[str, Any]] = []
    original = train_cached("original", version.sample_set(split="train"), version.fingerprint, "", arch, arch_config,
                            recipe, seed, cache_dir, device)
    models = {m: clone(original.model) for m in methods}
    for step in range(1, steps + 1):
        forgotten = sorted(str(x) for x in order[: step * per_step])
        batch = sorted(str(x) for x in order[(step - 1) * per_step : step * per_step])
        splits = _build(version, forgotten)
        oracle = train_cached("oracle", splits.retain, version.fingerprint, forget_hash(forgotten), arch, arch_config,
                              recipe, seed, cache_dir, device)
        oracle_eval = evaluate_model(oracle.model, splits, dev, max_shadow=max_shadow, seed=seed)
        fake_task = ScenarioTask("sequential", version, forgotten, "privacy", {"step": step, "fraction": fraction})
        s = Setup(fake_task, splits, original, oracle, recipe, seed, dev, max_shadow,
                  evaluate_model(original.model, splits, dev, max_shadow=max_shadow, seed=seed), oracle_eval)
        if references is not None:
            attach_references(s, *references)
        if step == 1:
            rows.extend({**r, "step": 0} for r in reference_rows(s)[:1])
        rows.append({**_row(s, RETRAIN, oracle.model, oracle_eval, oracle.seconds), "step": step})
        batch_rows = version.table[version.table["sample_id"].isin(batch)].sort_values("sample_id")
        forget_now = version.sample_set(batch_rows)
        for method in methods:
            spec = METHODS.get(method)
            scenario = "random" if preset == "auto" else preset
            cfg = spec.resolve(scenario, None, setting=setting)
            data = data_for(spec, forget_now, splits.retain, splits.num_classes, recipe)
            run = RunContext.create(seed + 1000 * step, str(dev))
            start = time.perf_counter()
            models[method] = spec.unlearn(models[method], data, cfg, run)
            seconds = time.perf_counter() - start
            evaluation = evaluate_model(models[method], splits, dev, max_shadow=max_shadow, seed=seed)
            applied = spec.applied_preset(scenario, setting)
            rows.append({**_row(s, method, models[method], evaluation, seconds), "step": step,
                         "preset": applied["applied"], "warning": applied["warning"] or ""})
    return rows
