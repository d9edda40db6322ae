"""Dataset versions: a sample table plus sharded pixels, written so that DVC can deduplicate them.

On disk a version is a folder::

    version.json        dataset, version number, parent, fingerprint, shape, classes, counts
    samples.parquet     sample_id, uid, subject_id, label, split, content_hash, shard, offset
    erased.parquet      every sample erased so far (sample_id, subject_id, content_hmac, version, batch_id):
                        the tombstones, naming each erased image by a keyed hash (forgetflow/data/tombstones.py)
    shards/shard-NNNNN.npy   uint8 pixels [n, C, H, W], rows in uid order

Pixels are sharded by uid so that an erasure rewrites only the shards that held erased samples: the
unchanged shards keep their bytes, DVC stores them once, and a purge of old versions (see the operations
issue) removes exactly the objects that still contain erased pixels. Every file is written
deterministically (no timestamps), so the same source and seed give the same DVC hash on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch

from forgetflow.data import tombstones as keys
from forgetflow.data.samples import SampleSet
from forgetflow.data.sources import RawDataset
from forgetflow.data.tombstones import TombstoneKey
from forgetflow.errors import DataError

FORMAT = 1
SPLITS = ("train", "val", "test", "unseen")
TABLE_COLUMNS = ["sample_id", "uid", "subject_id", "label", "split", "content_hash", "shard", "offset"]
ERASED_COLUMNS = ["sample_id", "subject_id", "content_hmac", "erased_in_version", "batch_id"]
# tombstones written before keyed hashes: the bare content hash (converted by ``with_keyed_tombstones``)
LEGACY_ERASED_COLUMNS = ["sample_id", "subject_id", "content_hash", "erased_in_version", "batch_id"]


def content_hash(image: np.ndarray) -> str:
    """Hash of one image's pixels and shape (not its label): 32 hex digits of SHA-256."""
    h = hashlib.sha256()
    h.update(str(tuple(image.shape)).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()[:32]


def content_hashes(images: np.ndarray) -> np.ndarray:
    """``content_hash`` of every image in ``images``."""
    return np.array([content_hash(img) for img in images], dtype=object)


@dataclass
class DatasetVersion:
    """A dataset version in memory: metadata, the sample table, pixels (loaded lazily) and tombstones."""

    meta: dict
    table: pd.DataFrame
    erased: pd.DataFrame
    root: Path | None = None
    _images: np.ndarray | None = field(default=None, repr=False)

    # ---- reading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, root: Path) -> "DatasetVersion":
        """Read a version folder (pixels stay on disk until asked for)."""
        root = Path(root)
        meta_path = root / "version.json"
        if not meta_path.exists():
            raise DataError(f"{root}: not a dataset version (version.json missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise DataError(f"{meta_path}: unsupported format {meta.get('format')!r}")
        table = pd.read_parquet(root / "samples.parquet")
        missing = set(TABLE_COLUMNS) - set(table.columns)
        if missing:
            raise DataError(f"{root / 'samples.parquet'}: columns missing: {', '.join(sorted(missing))}")
        erased_path = root / "erased.parquet"
        erased = pd.read_parquet(erased_path) if erased_path.exists() else _empty_erased()
        return cls(meta=meta, table=table, erased=erased, root=root)

    @property
    def images(self) -> np.ndarray:
        """All pixels ``[N, C, H, W]`` in table order."""
        if self._images is None:
            if self.root is None:
                raise DataError("dataset version has no pixels and no folder to read them from")
            self._images = _read_shards(self.root, self.table)
        return self._images

    @property
    def version(self) -> int:
        return int(self.meta["version"])

    @property
    def fingerprint(self) -> str:
        return str(self.meta["fingerprint"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["shape"])  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """A short human name, e.g. ``fashion-mnist@v3``."""
        return f"{self.meta['dataset']}@v{self.version}"

    def rows(self, split: str) -> pd.DataFrame:
        """The table rows of one split."""
        return self.table[self.table["split"] == split]

    def sample_set(self, rows: pd.DataFrame | None = None, split: str | None = None) -> SampleSet:
        """Pixels and labels of ``rows`` (or of a whole ``split``) as a ``SampleSet``, in row order."""
        if rows is None:
            if split is None:
                raise ValueError("give rows or a split")
            rows = self.rows(split)
        positions = self.table.index.get_indexer(rows.index)
        images = self.images[positions]
        return SampleSet(
            images=torch.from_numpy(np.ascontiguousarray(images)),
            labels=torch.as_tensor(rows["label"].to_numpy(dtype=np.int64).copy()),
            ids=rows["sample_id"].to_numpy(dtype=object),
            uids=torch.as_tensor(rows["uid"].to_numpy(dtype=np.int64).copy()),
        )

    @property
    def tombstones_keyed(self) -> bool:
        """Whether the tombstones name erased images by keyed hash (False: written before keys existed)."""
        return "content_hmac" in self.erased.columns

    def with_keyed_tombstones(self, key: TombstoneKey) -> "DatasetVersion":
        """This version with its tombstones keyed by ``key`` (converted when they hold bare hashes).

        Conversion needs no image: the keyed hash is HMAC(key, content hash), and the bare content hash is
        what old tombstones stored. The table, pixels and fingerprint are unchanged.

        Raises:
            DataError: the tombstones were keyed with another key.
        """
        keys.check_key(self.meta, key, self.label)
        if self.tombstones_keyed:
            if len(self.erased) and not self.meta.get("tombstone_key_id"):
                raise DataError(f"{self.label}: keyed tombstones without a tombstone_key_id in version.json")
            return self
        erased = self.erased.copy()
        erased["content_hmac"] = key.digests(erased["content_hash"].astype(str).tolist())
        meta = dict(self.meta)
        meta.update(tombstone_key_id=key.key_id, tombstone_scheme=keys.SCHEME)
        return DatasetVersion(meta=meta, table=self.table, erased=erased[ERASED_COLUMNS].reset_index(drop=True),
                              root=self.root, _images=self._images)

    def subjects(self) -> list[str]:
        """Ids of the data subjects that own training samples, sorted."""
        train = self.rows("train")
        return sorted(s for s in train["subject_id"].unique() if s)

    # ---- writing -------------------------------------------------------------------------------
    def write(self, root: Path) -> Path:
        """Write this version to ``root`` atomically (a temporary sibling folder, then a rename)."""
        root = Path(root)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            (tmp / "shards").mkdir()
            images = self.images
            previous = self.root if self.root is not None and (self.root / "shards").exists() else None
            table = self.table.reset_index(drop=True)
            for shard, group in table.groupby("shard", sort=True):
                name = f"shard-{int(shard):05d}.npy"
                block = images[group.index.to_numpy()]
                old = previous / "shards" / name if previous is not None else None
                if old is not None and old.exists() and _same_shard(old, block):
                    _link_or_copy(old, tmp / "shards" / name)  # unchanged: identical bytes, one DVC object
                else:
                    np.save(tmp / "shards" / name, np.ascontiguousarray(block), allow_pickle=False)
            if len(self.erased) and not self.tombstones_keyed:
                raise DataError(f"{self.label}: tombstones hold bare content hashes; key them first "
                                "(DatasetVersion.with_keyed_tombstones)")
            table[TABLE_COLUMNS].to_parquet(tmp / "samples.parquet", index=False)
            stones = self.erased if self.tombstones_keyed else _empty_erased()
            stones[ERASED_COLUMNS].reset_index(drop=True).to_parquet(tmp / "erased.parquet", index=False)
            (tmp / "version.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
            if root.exists():
                old_dir = root.parent / f".{root.name}.old"
                shutil.rmtree(old_dir, ignore_errors=True)
                os.replace(root, old_dir)
                os.replace(tmp, root)
                shutil.rmtree(old_dir, ignore_errors=True)
            else:
                os.replace(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.root = root
        self.table = table
        return root

    def without(self, sample_ids: Iterable[str], batch_id: str, key: TombstoneKey | None = None) -> "DatasetVersion":
        """The next version: these training samples removed, their tombstones added, shards compacted.

        Args:
            sample_ids: training samples to erase.
            batch_id: the batch that erases them (recorded in their tombstones).
            key: the project's tombstone key (default: ``FORGETFLOW_TOMBSTONE_KEY``); tombstones written
                before keys existed are converted with it.
        """
        key = keys.require_key(key)
        previous = self.with_keyed_tombstones(key).erased
        ids = sorted(set(sample_ids))
        table = self.table.reset_index(drop=True)
        hit = table["sample_id"].isin(ids)
        found = set(table.loc[hit, "sample_id"])
        unknown = [s for s in ids if s not in found]
        if unknown:
            raise DataError(f"{self.label}: cannot erase unknown samples: {', '.join(unknown[:5])}")
        not_train = table.loc[hit & (table["split"] != "train"), "sample_id"].tolist()
        if not_train:
            raise DataError(f"{self.label}: only training samples can be erased: {', '.join(not_train[:5])}")
        removed = table[hit]
        keep = table[~hit].copy()
        images = self.images[keep.index.to_numpy()]
        keep = keep.reset_index(drop=True)
        keep["offset"] = keep.groupby("shard").cumcount().astype(np.int32)
        tombstones = pd.DataFrame(
            {
                "sample_id": removed["sample_id"].to_numpy(),
                "subject_id": removed["subject_id"].to_numpy(),
                "content_hmac": key.digests(removed["content_hash"].astype(str).tolist()),
                "erased_in_version": self.version + 1,
                "batch_id": batch_id,
            }
        )
        erased = pd.concat([previous, tombstones], ignore_index=True) if len(previous) else tombstones
        meta = dict(self.meta)
        meta.update(
            version=self.version + 1,
            parent_version=self.version,
            parent_fingerprint=self.fingerprint,
            batch_id=batch_id,
            counts=_counts(keep),
            subjects=int(keep.loc[keep["split"] == "train", "subject_id"].replace("", np.nan).nunique()),
            erased=int(len(erased)),
            tombstone_key_id=key.key_id,
            tombstone_scheme=keys.SCHEME,
        )
        meta["fingerprint"] = table_fingerprint(keep)
        return DatasetVersion(meta=meta, table=keep, erased=erased[ERASED_COLUMNS], root=self.root, _images=images)


def build_version(
    raw: RawDataset,
    seed: int,
    val_fraction: float,
    subject_size: tuple[int, int],
    shard_size: int,
) -> DatasetVersion:
    """Version 1 of a dataset: ids, a seeded validation split, data subjects, content hashes, shards."""
    n = len(raw.labels)
    if n == 0:
        raise DataError(f"{raw.name}: no samples")
    if raw.images.dtype != np.uint8 or raw.images.ndim != 4:
        raise DataError(f"{raw.name}: images must be uint8 [N, C, H, W], got {raw.images.dtype} {raw.images.shape}")
    rng = np.random.default_rng(seed)
    split = raw.split.astype(object).copy()
    given_subjects = raw.subjects if len(raw.subjects) == n else np.array([""] * n, dtype=object)

    # Validation split carved from the source's training split; grouped by subject where the source
    # names subjects, so that no person is on both sides.
    train_pos = np.flatnonzero(split == "train")
    if val_fraction > 0:
        if any(given_subjects[train_pos]):
            groups = sorted({s for s in given_subjects[train_pos] if s})
            chosen = set(rng.permutation(np.array(groups, dtype=object))[: max(1, int(round(val_fraction * len(groups))))])
            val_pos = train_pos[[s in chosen for s in given_subjects[train_pos]]]
        else:
            val_pos = rng.permutation(train_pos)[: int(round(val_fraction * len(train_pos)))]
        split[val_pos] = "val"

    subjects = np.array([""] * n, dtype=object)
    train_pos = np.flatnonzero(split == "train")
    subjects[train_pos] = given_subjects[train_pos]
    orphans = train_pos[subjects[train_pos] == ""]
    lo, hi = subject_size
    order = rng.permutation(orphans)
    start, k = 0, 0
    width = max(5, len(str(len(order))))
    while start < len(order):
        size = int(rng.integers(lo, hi + 1))
        subjects[order[start : start + size]] = f"subj-{k:0{width}d}"
        start += size
        k += 1

    names = raw.names if len(raw.names) == n else np.array([f"{raw.name}-{i:06d}" for i in range(n)], dtype=object)
    if len(set(names)) != n:
        raise DataError(f"{raw.name}: sample names are not unique")
    uid = np.arange(n, dtype=np.int64)
    table = pd.DataFrame(
        {
            "sample_id": names.astype(str),
            "uid": uid,
            "subject_id": subjects.astype(str),
            "label": raw.labels.astype(np.int64),
            "split": split.astype(str),
            "content_hash": content_hashes(raw.images).astype(str),
            "shard": (uid // shard_size).astype(np.int32),
            "offset": (uid % shard_size).astype(np.int32),
        }
    )
    meta = {
        "format": FORMAT,
        "dataset": raw.name,
        "version": 1,
        "parent_version": None,
        "parent_fingerprint": None,
        "batch_id": None,
        "seed": seed,
        "shape": list(raw.images.shape[1:]),
        "classes": list(raw.classes),
        "counts": _counts(table),
        "subjects": int(table.loc[table["split"] == "train", "subject_id"].nunique()),
        "erased": 0,
        "shard_size": shard_size,
        "fingerprint": table_fingerprint(table),
    }
    return DatasetVersion(meta=meta, table=table, erased=_empty_erased(), root=None, _images=raw.images)


def table_fingerprint(table: pd.DataFrame) -> str:
    """SHA-256 over the sorted (sample_id, label, split, content_hash) rows: the version's content id."""
    h = hashlib.sha256()
    rows = table.sort_values("sample_id")[["sample_id", "label", "split", "content_hash"]]
    for sid, label, split, chash in rows.itertuples(index=False):
        h.update(f"{sid}\t{label}\t{split}\t{chash}\n".encode())
    return h.hexdigest()


def _counts(table: pd.DataFrame) -> dict[str, int]:
    counts = table["split"].value_counts()
    return {s: int(counts.get(s, 0)) for s in SPLITS if counts.get(s, 0) or s != "unseen"}


def _empty_erased() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "erased_in_version" else "object") for c in ERASED_COLUMNS})


def _read_shards(root: Path, table: pd.DataFrame) -> np.ndarray:
    shards = {}
    for shard in sorted(table["shard"].unique()):
        path = root / "shards" / f"shard-{int(shard):05d}.npy"
        if not path.exists():
            raise DataError(f"{path}: shard missing")
        shards[int(shard)] = np.load(path, allow_pickle=False)
    first = next(iter(shards.values()))
    out = np.empty((len(table),) + first.shape[1:], dtype=np.uint8)
    shard_col = table["shard"].to_numpy()
    offset_col = table["offset"].to_numpy()
    for shard, arr in shards.items():
        rows = np.flatnonzero(shard_col == shard)
        if len(rows) and offset_col[rows].max() >= len(arr):
            raise DataError(f"{root}: shard {shard} has {len(arr)} rows but the table points past them")
        out[rows] = arr[offset_col[rows]]
    return out


def _same_shard(path: Path, block: np.ndarray) -> bool:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return arr.shape == block.shape and bool(np.array_equal(arr, block))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
