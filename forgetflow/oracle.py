"""Trained-model cache: originals and retrained oracles are trained once per (data, forget set, recipe, seed).

The key hashes the dataset version's fingerprint, the hash of the forget set (or manifest), the
architecture, the recipe and the seed. Next to ``<key>.pt`` a ``<key>.json`` records how long training took
on this machine, which is the retraining time every unlearning time is compared against.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn

from forgetflow.data.manifest import canonical_json
from forgetflow.data.samples import SampleSet
from forgetflow.models import build_model, load_checkpoint, save_checkpoint
from forgetflow.runtime import Reporter, RunContext
from forgetflow.training import Recipe, train_model


@dataclass(frozen=True)
class TrainedModel:
    """A model from the cache (or just trained) and how long training it took."""

    model: nn.Module
    key: str
    seconds: float
    cached: bool
    path: Path


def forget_hash(forget_ids: list[str]) -> str:
    """SHA-256 of the sorted forget ids (what an oracle is keyed by when there is no manifest file)."""
    return hashlib.sha256("\n".join(sorted(forget_ids)).encode()).hexdigest()


def cache_key(role: str, fingerprint: str, excluded_hash: str, arch: str, arch_config: dict[str, Any],
              recipe: Recipe, seed: int) -> str:
    """The cache key of a trained model."""
    payload = {"role": role, "data": fingerprint, "excluded": excluded_hash, "arch": arch,
               "arch_config": arch_config, "recipe": asdict(recipe), "seed": seed}
    return f"{role}-{hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]}"


def is_cached(role: str, fingerprint: str, excluded_hash: str, arch: str, arch_config: dict[str, Any], recipe: Recipe,
              seed: int, cache_dir: Path) -> bool:
    """Whether :func:`train_cached` would load this model instead of training it."""
    key = cache_key(role, fingerprint, excluded_hash, arch, arch_config, recipe, seed)
    return (cache_dir / f"{key}.pt").exists() and (cache_dir / f"{key}.json").exists()


def train_cached(
    role: str,
    samples: SampleSet,
    fingerprint: str,
    excluded_hash: str,
    arch: str,
    arch_config: dict[str, Any],
    recipe: Recipe,
    seed: int,
    cache_dir: Path,
    device: str = "auto",
    progress: bool = False,
    deterministic: bool = True,
    report: Reporter | None = None,
) -> TrainedModel:
    """Load the model for this key from ``cache_dir`` or train it on ``samples`` and store it.

    ``report`` receives the training curve (``<role>/loss`` per epoch) when the model is trained, not when
    it comes from the cache.
    """
    key = cache_key(role, fingerprint, excluded_hash, arch, arch_config, recipe, seed)
    path = cache_dir / f"{key}.pt"
    meta_path = cache_dir / f"{key}.json"
    run = RunContext.create(seed, device, deterministic=deterministic, report=report, progress=progress)
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return TrainedModel(load_checkpoint(path, run.device), key, float(meta["seconds"]), True, path)
    model = build_model(arch, **arch_config)
    start = time.perf_counter()
    train_model(model, samples, recipe, run, desc=role)
    seconds = time.perf_counter() - start
    save_checkpoint(model, path)
    meta = {"key": key, "role": role, "seconds": seconds, "samples": len(samples), "data": fingerprint,
            "excluded": excluded_hash, "arch": arch, "arch_config": arch_config, "recipe": asdict(recipe),
            "seed": seed, "device": str(run.device)}
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(meta_path)
    return TrainedModel(model, key, seconds, False, path)
