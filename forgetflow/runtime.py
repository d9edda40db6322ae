"""Seeds, devices and the run context every method receives.

Randomness in methods comes only from ``RunContext.generator`` (and ``RunContext.numpy_rng``); metrics
leave a method only through ``RunContext.report``, a callback that tasks connect to MLflow and tests to
a list. The core never imports a tracking library.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from forgetflow.errors import ConfigError

log = logging.getLogger(__name__)

Reporter = Callable[[str, float, int], None]


def _no_report(key: str, value: float, step: int) -> None:
    return None


class StepLog:
    """A reporter that keeps every reported ``(key, value, step)``.

    Training and unlearning run before their MLflow run exists (the run is logged with the finished model),
    so a task hands one of these to ``RunContext.create`` and logs ``records`` once the run is there
    (``tasks/tracking.py: log_steps``).
    """

    def __init__(self) -> None:
        self.records: list[tuple[str, float, int]] = []

    def __call__(self, key: str, value: float, step: int) -> None:
        self.records.append((key, float(value), int(step)))


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {device!r} but no CUDA device is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda[:N], not {device!r}")
    return torch.device(device)


def set_seed(seed: int, deterministic: bool = True) -> int:
    """Seed python, numpy and torch; optionally ask torch for deterministic kernels. Returns the seed."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), not {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls on CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


@dataclass
class RunContext:
    """What a method or training loop may use besides its data: device, seeded RNGs, a reporter."""

    seed: int
    device: torch.device
    generator: torch.Generator
    numpy_rng: np.random.Generator
    deterministic: bool = True
    report_fn: Reporter = _no_report
    progress: bool = False
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def create(
        cls,
        seed: int,
        device: str = "auto",
        deterministic: bool = True,
        report: Reporter | None = None,
        progress: bool = False,
    ) -> "RunContext":
        """Seed everything and return a fresh context."""
        set_seed(seed, deterministic)
        generator = torch.Generator(device="cpu")
        generator.manual_seed(seed)
        return cls(
            seed=seed,
            device=resolve_device(device),
            generator=generator,
            numpy_rng=np.random.default_rng(seed),
            deterministic=deterministic,
            report_fn=report or _no_report,
            progress=progress,
        )

    def child(self, offset: int) -> "RunContext":
        """A context with an independent stream (seed + offset), same device and reporter."""
        generator = torch.Generator(device="cpu")
        generator.manual_seed(self.seed + offset)
        return RunContext(
            seed=self.seed + offset,
            device=self.device,
            generator=generator,
            numpy_rng=np.random.default_rng(self.seed + offset),
            deterministic=self.deterministic,
            report_fn=self.report_fn,
            progress=self.progress,
        )

    def report(self, key: str, value: float, step: int = 0) -> None:
        """Send one metric to whoever listens (MLflow in tasks, a list in tests)."""
        self.report_fn(key, float(value), int(step))

    def randint(self, low: int, high: int, size: tuple[int, ...]) -> torch.Tensor:
        """Integers in [low, high) from the run's generator (on CPU, then moved to the device)."""
        return torch.randint(low, high, size, generator=self.generator).to(self.device)

    def elapsed(self) -> float:
        """Seconds since the context was created."""
        return time.perf_counter() - self.started

    def describe(self) -> dict[str, object]:
        """Seed, device and library versions, for MLflow params and receipts."""
        return {
            "seed": self.seed,
            "device": str(self.device),
            "deterministic": self.deterministic,
            "torch": torch.__version__,
        }
