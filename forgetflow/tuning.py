"""Declared hyper-parameter searches that produce the shipped presets.

Every method declares a search space (``register_method(..., search_space=...)``). A search runs the
method over that grid on one scenario and scores each trial with an oracle-free objective computed on
the *validation* split (never the test split, never the retrained oracle), then writes the winner to
``forgetflow/presets/<method>/<family>.yaml`` together with the space, the objective, every trial's score
and the command that reproduces it.

Objectives (lower is better; points are percent):

* ``privacy`` (families ``random`` and ``subject``): a retrained model treats forgotten samples like
  unseen ones, so ``|FA - VA| + max(0, VA0 - VA) + 100 * |AUC(forget vs val) - 0.5|`` with FA the forget
  accuracy, VA the validation accuracy, VA0 the original model's validation accuracy and AUC the
  loss-threshold attack of forget against validation samples.
* ``privacy-retain`` (families ``random`` and ``subject``, chosen with ``forgetflow tune --objective``): the
  ``privacy`` objective plus ``max(0, RA0 - RA)``, RA the accuracy on a seeded sample of at most
  ``RETAIN_SAMPLE`` retain samples and RA0 the original's: a retrained model fits its retain set as the original
  did, so a method that buys forgetting by wiping what the model learnt of the *retain* samples pays for it.
  Where the original memorises (the ``memorising`` setting) ``privacy`` cannot see that loss: validation
  accuracy barely moves when retain samples stop being memorised.
* ``full-class-retain`` (family ``full-class``, chosen with ``--objective``): ``full-class`` plus the same
  ``max(0, RA0 - RA)`` retain term.
* ``full-class`` (class c): ``FA + VA_c + max(0, VA0_rest - VA_rest)``: the class is gone from the
  training samples and from unseen samples alike, the other classes keep their validation accuracy.
* ``corrupted``: ``max(0, VA0 - VA) + FA`` with FA measured against the stored (corrupted) labels of the
  discovered samples: the model must stop fitting the known corruption without losing validation utility.

Trials whose unlearning time exceeds ``max_time_ratio`` x the original's training time (the retraining
cost, known without an oracle) are rejected.

A search may run on several cells of a scenario grid at once (``forgetflow tune --grid discovery=0.1,0.5,1.0``,
all one preset family, e.g. the corrupted grid): every trial runs on every cell, its score is the mean of the
cells' objectives and its time ratio the mean of theirs, so the preset is chosen for the grid, not for one cell.

Searches run on their own seed, ``SEARCH_SEED`` (the default of ``forgetflow tune``): the benchmarks use
seeds 0, 1, 2, so no benchmark cell is scored on the model, forget set or draw its preset was chosen on.
Every method declares its space and what the space is based on (``register_method(search_space=...,
search_basis=...)``) in its module, before any search or benchmark result is read; the preset file records
both.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from forgetflow.bench import Setup
from forgetflow.errors import ConfigError, MethodDivergedError
from forgetflow.methods import METHODS, data_for
from forgetflow.metrics.mia import balanced_auc
from forgetflow.models import clone
from forgetflow.runtime import RunContext
from forgetflow.training import outputs

SEARCH_SEED = 100  # never a benchmark seed (benchmarks use 0..K-1 with K <= 10)
RETAIN_SAMPLE = 2000  # retain samples the privacy-retain objective measures (a seeded sample)

OBJECTIVES = {
    "random": "privacy",
    "subject": "privacy",
    "full-class": "full-class",
    "corrupted": "corrupted",
}
# objectives a family may be searched with instead of its default (``forgetflow tune --objective``)
ALTERNATIVES = {"random": ["privacy-retain"], "subject": ["privacy-retain"], "full-class": ["full-class-retain"]}


def objective_for(family: str, objective: str | None = None) -> str:
    """The family's default objective, or ``objective`` where the family allows it (ConfigError otherwise)."""
    if objective is None or objective == OBJECTIVES[family]:
        return OBJECTIVES[family]
    if objective not in ALTERNATIVES.get(family, []):
        allowed = [OBJECTIVES[family], *ALTERNATIVES.get(family, [])]
        raise ConfigError(f"objective {objective!r} does not fit the {family!r} family (allowed: {', '.join(allowed)})")
    return objective


def retain_sample(s: Setup):
    """The seeded retain sample the privacy-retain objective measures."""
    n = len(s.splits.retain)
    if n <= RETAIN_SAMPLE:
        return s.splits.retain
    rng = np.random.default_rng([s.seed, 0x2E7A])
    return s.splits.retain.subset(np.sort(rng.choice(n, size=RETAIN_SAMPLE, replace=False)))


def grid(space: dict[str, list[Any]], budget: int | None, seed: int) -> list[dict[str, Any]]:
    """Every combination of ``space`` (or a seeded sample of ``budget`` of them)."""
    keys = sorted(space)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    if budget is not None and len(combos) > budget:
        rng = np.random.default_rng(seed)
        combos = [combos[i] for i in sorted(rng.choice(len(combos), size=budget, replace=False))]
    return combos


def validation_score(family: str, model, s: Setup, base: dict[str, float], objective: str | None = None
                     ) -> dict[str, float]:
    """The objective of ``family`` (or the allowed ``objective``) for ``model`` (see the module docstring), with its parts."""
    val = outputs(model, s.splits.val, device=s.device)
    forget = outputs(model, s.splits.forget, device=s.device)
    kind = objective_for(family, objective)
    if kind in ("privacy", "privacy-retain"):
        auc = balanced_auc(forget.loss.numpy(), val.loss.numpy(), s.seed)
        parts = {"forget_acc": forget.accuracy, "val_acc": val.accuracy, "auc_forget_vs_val": auc}
        score = abs(forget.accuracy - val.accuracy) + max(0.0, base["val_acc"] - val.accuracy) + 100 * abs(auc - 0.5)
    elif kind in ("full-class", "full-class-retain"):
        c = int(s.task.details["label"])
        in_c = val.labels == c
        acc_c = 100.0 * float((val.correct[in_c]).float().mean()) if bool(in_c.any()) else 0.0
        acc_rest = 100.0 * float((val.correct[~in_c]).float().mean())
        parts = {"forget_acc": forget.accuracy, "val_acc_class": acc_c, "val_acc_rest": acc_rest}
        score = forget.accuracy + acc_c + max(0.0, base["val_acc_rest"] - acc_rest)
    else:
        parts = {"forget_acc": forget.accuracy, "val_acc": val.accuracy}
        score = max(0.0, base["val_acc"] - val.accuracy) + forget.accuracy
    if kind.endswith("-retain"):  # privacy-retain, full-class-retain: what the retain sample lost, on top
        parts["retain_acc"] = outputs(model, retain_sample(s), device=s.device).accuracy
        score += max(0.0, base["retain_acc"] - parts["retain_acc"])
    return {"score": float(score), **{k: float(v) for k, v in parts.items()}}


def baseline_parts(s: Setup, objective: str | None = None) -> dict[str, float]:
    """The original model's figures the objectives compare against (validation; a retain sample for privacy-retain)."""
    val = outputs(s.original.model, s.splits.val, device=s.device)
    base = {"val_acc": val.accuracy}
    if objective and objective.endswith("-retain"):
        base["retain_acc"] = outputs(s.original.model, retain_sample(s), device=s.device).accuracy
    if "label" in s.task.details:
        in_c = val.labels == int(s.task.details["label"])
        base["val_acc_rest"] = 100.0 * float(val.correct[~in_c].float().mean())
    return base


def search(
    s: Setup | list[Setup],
    method: str,
    space: dict[str, list[Any]] | None = None,
    budget: int | None = None,
    max_time_ratio: float | None = None,
    fixed: dict[str, Any] | None = None,
    objective: str | None = None,
    cells: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the declared (or given) search for ``method`` on ``s``; return the trials and the winner.

    ``s`` may be several setups of one family (the cells of a grid, named by ``cells``): each trial then runs on
    every cell and is scored by the mean of the cells' objectives; its time ratio is the mean of the cells'.
    """
    setups = s if isinstance(s, list) else [s]
    if not setups:
        raise ConfigError("a search needs at least one scenario cell")
    families = {x.task.preset for x in setups}
    if len(families) > 1:
        raise ConfigError(f"the cells of one search must share a preset family, got {sorted(families)}")
    spec = METHODS.get(method)
    space = space or spec.search_space
    family = setups[0].task.preset
    objective = objective_for(family, objective)
    bases = [baseline_parts(x, objective) for x in setups]
    trials = []
    for i, point in enumerate(grid(space, budget, setups[0].seed)):
        values = {**(fixed or {}), **point}
        cfg = spec.resolve(None, values)
        start = time.perf_counter()
        try:
            runs = [_run_cell(spec, cfg, x, base, family, objective) for x, base in zip(setups, bases)]
        except MethodDivergedError as exc:  # a diverged trial is a result of the search, not its end
            trials.append({"trial": i, "config": point, "seconds": round(time.perf_counter() - start, 3),
                           "rejected": True, "diverged": True, "score": float("inf"), "error": str(exc)})
            continue
        mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        seconds, ratio = mean.pop("seconds"), mean.pop("time_ratio")
        trial = {"trial": i, "config": point, "seconds": round(seconds, 3), "time_ratio": round(ratio, 4),
                 "rejected": bool(max_time_ratio is not None and ratio > max_time_ratio),
                 **{k: round(v, 4) for k, v in mean.items()}}
        if len(setups) > 1:
            trial["cells"] = [{"cell": c, "score": round(r["score"], 4), "seconds": round(r["seconds"], 3)}
                              for c, r in zip(cells or [{} for _ in setups], runs)]
        trials.append(trial)
    eligible = [t for t in trials if not t["rejected"]] or [t for t in trials if not t.get("diverged")]
    if not eligible:
        raise MethodDivergedError(f"every trial of {method!r}'s search diverged; the declared space needs smaller steps")
    best = min(eligible, key=lambda t: (t["score"], t["seconds"]))
    return {"method": method, "family": family, "objective": objective, "space": space,
            "basis": basis(spec, space),
            "fixed": fixed or {}, "base": bases[0] if len(bases) == 1 else {"cells": bases},
            "trials": trials, "best": best,
            "config": spec.resolve(None, {**(fixed or {}), **best["config"]}).model_dump()}


def _run_cell(spec, cfg, s: Setup, base: dict[str, float], family: str, objective: str) -> dict[str, float]:
    """One trial on one cell: unlearn a copy of the cell's original, time it, score it on validation data."""
    model = clone(s.original.model)
    data = data_for(spec, s.splits.forget, s.splits.retain, s.splits.num_classes, s.recipe)
    run = RunContext.create(s.seed + 1000, str(s.device))
    start = time.perf_counter()
    model = spec.unlearn(model, data, cfg, run)
    seconds = time.perf_counter() - start
    ratio = seconds / s.original.seconds if s.original.seconds > 0 else 0.0
    return {"seconds": seconds, "time_ratio": ratio, **validation_score(family, model, s, base, objective)}


def basis(spec, space: dict[str, list[Any]]) -> str:
    """What a search's space rests on: the declared basis, plus every axis the caller replaced or added."""
    declared = spec.search_space or {}
    changed = {k: v for k, v in space.items() if declared.get(k) != v}
    if not changed:
        return spec.search_basis
    return (f"{spec.search_basis}; replaced by the caller: " if spec.search_basis else "given by the caller: ") + \
        ", ".join(f"{k}={v}" for k, v in changed.items())


def write_preset(result: dict[str, Any], folder: Path, context: dict[str, Any], setting: str = "default") -> Path:
    """Write a search result as ``<folder>/<method>/<family>.yaml`` (the shipped preset format); a search on
    another benchmark setting as ``<folder>/<method>/<setting>/<family>.yaml``."""
    sub = Path(result["method"]) if setting == "default" else Path(result["method"]) / setting
    path = folder / sub / f"{result['family']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Tuned defaults of {result['method']} for the {result['family']!r} scenario family"
        f"{'' if setting == 'default' else f' on the {setting!r} benchmark setting'}.\n"
        "# Read by the batch flow and `forgetflow bench` (unlearn.preset); override any key in params.yaml\n"
        f"# under unlearn.methods.{result['method']}. Produced by the search recorded below; rerun with\n"
        f"#   {context.get('command', 'forgetflow tune')}\n"
    )
    body = {
        "method": result["method"],
        "scenario": result["family"],
        "setting": setting,
        "config": result["config"],
        "search": {
            "objective": result["objective"],
            "space": result["space"],
            "basis": result.get("basis", ""),
            "fixed": result["fixed"],
            "selected_on": "validation split (never test, never the oracle)",
            "best": result["best"],
            "trials": result["trials"],
            "baseline": result["base"],
            "date": dt.date.today().isoformat(),
            **context,
        },
    }
    path.write_text(header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=110))
    return path
