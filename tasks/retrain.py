"""The retrain task: when policy says unlearning no longer suffices, the batch's model is retrained from scratch.

The retrained model is the batch's oracle (``tasks.evaluate.train_oracle``): the original recipe and seed
on the retain set of the current dataset version, cached by data version + manifest + recipe + seed, so it
is trained once even when it also serves as the yardstick. It never saw the erased samples: exact unlearning.
"""

from __future__ import annotations

import dataclasses
import shutil

from forgetflow import pipeline
from forgetflow.project import Project
from forgetflow.runtime import RunContext
from tasks.evaluate import OracleResult
from tasks.unlearn import Candidate, gpu_task


@gpu_task("retrain")
def retrain_candidate(project: Project, batch_id: str, oracle: OracleResult, champion_version: str,
                      request_ids: list[str], forget_samples: int) -> Candidate:
    """The batch's candidate is the retrained model (a copy of the oracle checkpoint the batch owns)."""
    path = project.state_dir / "candidates" / f"{batch_id}-retrain.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(oracle.path, path)
    run = RunContext.create(project.params.seed, project.params.train.device, project.params.train.deterministic)
    phase = {"method": "retrain", "preset": None,
             "config": {"recipe": dataclasses.asdict(pipeline.recipe(project)), "seed": project.params.seed,
                        "cache_key": oracle.key, "cached": oracle.cached},
             "requests": list(request_ids), "forget_samples": forget_samples, "seconds": oracle.seconds}
    return Candidate(str(path), oracle.seconds, [phase], champion_version, run.describe())
