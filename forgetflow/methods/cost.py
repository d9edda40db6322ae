"""A method's cost, predicted before it runs: the work its budget implies, times a measured speed.

Work is counted in **sample passes**: one forward and one backward pass of one sample through the model
being unlearned. A forward pass alone counts ``FORWARD`` (a backward pass costs about twice a forward).
Every method declares a pure cost function ``(cfg, sizes) -> sample passes`` next to its loop
(``register_method(..., cost=...)``); retraining from scratch costs ``recipe epochs x |D_r|`` sample passes.

The speed comes from the model itself: ``measure_seconds_per_pass`` times a few training steps on a copy
(about a second on a CPU). Predicted seconds = passes x that speed, for the method and for retraining alike,
so the comparison "is unlearning cheaper than retraining?" does not depend on the machine. Methods whose
work depends on the data (REM's flush runs until the forget accuracy falls below gamma, MU-Mis stops when its
rule fires) predict with a stated assumption (REM) or their cap (MU-Mis): a prediction is an estimate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from forgetflow import training
from forgetflow.data.samples import SampleSet
from forgetflow.models import clone

FORWARD = 1.0 / 3.0  # a forward pass alone, in sample passes


@dataclass(frozen=True)
class Sizes:
    """The set sizes a prediction needs: forget, retain (train = both) and the recipe's epochs (retraining)."""

    forget: int
    retain: int
    recipe_epochs: int = 1

    @property
    def train(self) -> int:
        return self.forget + self.retain


@dataclass(frozen=True)
class CostPrediction:
    """Predicted work and time of one run."""

    method: str
    passes: float
    seconds: float
    seconds_per_pass: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def predict(spec, cfg, sizes: Sizes, seconds_per_pass: float) -> CostPrediction:
    """The predicted cost of running ``spec`` with ``cfg`` on sets of ``sizes`` at ``seconds_per_pass``."""
    passes = float(spec.cost(cfg, sizes))
    return CostPrediction(spec.name, passes, passes * seconds_per_pass, seconds_per_pass)


def retrain_passes(sizes: Sizes) -> float:
    """Retraining from scratch: the recipe's epochs over the retain set."""
    return float(sizes.recipe_epochs * sizes.retain)


def measure_seconds_per_pass(model: nn.Module, samples: SampleSet, device: torch.device | str = "cpu",
                             batch_size: int = 128, steps: int = 3) -> float:
    """Seconds per sample pass of ``model``: ``steps`` timed SGD steps on a copy, after one untimed warm-up step.

    The model itself is not touched. Batches are the first ``batch_size`` samples of ``samples`` (repeated).
    """
    if len(samples) == 0:
        raise ValueError("measure_seconds_per_pass needs at least one sample")
    probe = clone(model).to(device).train()
    optimizer = training.sgd(probe, lr=1e-6)
    batch = next(iter(samples.head(batch_size).batches(batch_size, device=device)))
    training.step(optimizer, training.ce_loss(probe, batch))  # warm-up: allocations, kernel selection
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        training.step(optimizer, training.ce_loss(probe, batch))
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (steps * len(batch.y))
