"""Datasets: raw sources, versions (table + sharded pixels), manifests and the sets a batch works with."""

from __future__ import annotations

from pathlib import Path

from forgetflow.config import DataParams, resolve_path
from forgetflow.data.manifest import Manifest, RequestRef, canonical_json, resolve
from forgetflow.data.samples import Batch, SampleSet, to_float
from forgetflow.data.sources import DATASETS, RawDataset, SourceSettings
from forgetflow.data.splits import Splits, build_splits
from forgetflow.data.version import DatasetVersion, build_version, content_hash
from forgetflow.errors import DataError


def source_settings(data: DataParams, root: Path, seed: int) -> SourceSettings:
    """The raw-source settings of params.yaml ``data``, paths resolved against the project root."""
    f = data.image_folder
    return SourceSettings(
        raw=resolve_path(root, data.raw) if data.raw else None,
        seed=seed,
        test_fraction=data.test_fraction,
        image_size=f.image_size,
        train_csv=f.train_csv,
        test_csv=f.test_csv,
        unseen_csv=f.unseen_csv,
        path_column=f.path_column,
        label_column=f.label_column,
        subject_pattern=f.subject_pattern,
        grayscale=f.grayscale,
    )


def prepare_version(data: DataParams, root: Path, seed: int) -> DatasetVersion:
    """Read the raw source named in params and build version 1 (in memory)."""
    raw = DATASETS.get(data.dataset)(source_settings(data, root, seed))
    return build_version(raw, seed=seed, val_fraction=data.val_fraction,
                         subject_size=tuple(data.subject_size), shard_size=data.shard_size)


def load_version(folder: Path) -> DatasetVersion:
    """Load the dataset version stored in ``folder``."""
    if not (folder / "version.json").exists():
        raise DataError(f"{folder}: no dataset version here (run `forgetflow data prepare` first)")
    return DatasetVersion.load(folder)


__all__ = [
    "Batch", "DATASETS", "DatasetVersion", "Manifest", "RawDataset", "RequestRef", "SampleSet", "SourceSettings",
    "Splits", "build_splits", "build_version", "canonical_json", "content_hash", "load_version", "prepare_version",
    "resolve", "source_settings", "to_float",
]
