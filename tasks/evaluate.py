"""Evaluation tasks: the retrained oracle (cached) and the metrics of candidate, champion and oracle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import pipeline
from forgetflow.metrics import compare_to_oracle, evaluate_model
from forgetflow.metrics.mia import confidence
from forgetflow.models import load_checkpoint
from forgetflow.project import Project
from forgetflow.runtime import resolve_device
from tasks import tracking
from tasks.unlearn import gpu_task


@dataclass
class OracleResult:
    path: str
    seconds: float  # how long training it took (measured when it was trained)
    cached: bool
    key: str


@gpu_task("train-oracle")
def train_oracle(project: Project, manifest_path: str, manifest_sha256: str) -> OracleResult:
    """Retrain from scratch on the retain set with the original recipe (or reuse the cached oracle)."""
    version = pipeline.current_version(project)
    manifest = pipeline.Manifest.read(project.root / manifest_path)
    splits = pipeline.splits_for(version, manifest)
    trained = pipeline.train_oracle(project, version, manifest_sha256, splits)
    return OracleResult(str(trained.path), trained.seconds, trained.cached, trained.key)


@dataclass
class Scores:
    metrics: dict[str, float]
    champion: dict[str, float]
    oracle: dict[str, float] | None
    gaps: dict[str, float] = field(default_factory=dict)
    report_path: str = ""


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_candidate(project: Project, batch_id: str, manifest_path: str, candidate_path: str,
                       champion_version: str, oracle: OracleResult | None, candidate_is_oracle: bool = False,
                       label: str = "") -> Scores:
    """Forget/retain/test accuracy and every MIA convention for candidate, champion and oracle; gaps.

    Writes ``evaluation<label>.json`` and the per-sample losses and true-label confidences on the forget and
    test sets (``outputs<label>.npz``, for the report's histograms) under ``state/reports/<batch>/``. A retrained
    candidate that is the oracle (``candidate_is_oracle``) is evaluated once.
    """
    version = pipeline.current_version(project)
    manifest = pipeline.Manifest.read(project.root / manifest_path)
    splits = pipeline.splits_for(version, manifest)
    device = resolve_device(project.params.train.device)
    kw = {"device": device, "batch_size": project.params.evaluate.batch_size,
          "max_shadow": project.params.evaluate.mia_max_shadow, "seed": project.params.seed}
    candidate = evaluate_model(load_checkpoint(Path(candidate_path), device), splits, **kw)
    champion = evaluate_model(tracking.load_version_model(project, champion_version, str(device)), splits, **kw)
    if oracle is None:
        oracle_eval = None
    elif candidate_is_oracle:
        oracle_eval = candidate
    else:
        oracle_eval = evaluate_model(load_checkpoint(Path(oracle.path), device), splits, **kw)
    gaps = compare_to_oracle(candidate, oracle_eval) if oracle_eval else {}
    report = {"batch_id": batch_id, "forget_samples": len(splits.forget), "retain_samples": len(splits.retain),
              "test_samples": len(splits.test), "candidate": candidate.metrics, "champion": champion.metrics,
              "oracle": oracle_eval.metrics if oracle_eval else None, "gaps": gaps,
              "mia_conventions": _mia_names()}
    folder = project.reports_dir / batch_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"evaluation{label}.json"
    path.write_text(json.dumps(report, indent=1))
    arrays = {}
    for role, evaluation in (("candidate", candidate), ("champion", champion), ("oracle", oracle_eval)):
        if evaluation is not None:
            for name, out in (("forget", evaluation.forget), ("test", evaluation.test)):
                arrays[f"{role}_{name}_loss"] = out.loss.numpy()
                arrays[f"{role}_{name}_confidence"] = confidence(out)
    np.savez_compressed(folder / f"outputs{label}.npz", **arrays)
    return Scores(candidate.metrics, champion.metrics, oracle_eval.metrics if oracle_eval else None, gaps,
                  str(path.relative_to(project.root)))


def _mia_names() -> dict[str, str]:
    from forgetflow.metrics.mia import MIAS

    return {MIAS.get(n).key: f"{n}: {MIAS.get(n).convention}" for n in MIAS.names()}
