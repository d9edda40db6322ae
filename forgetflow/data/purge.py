"""Erasure in storage: find stored objects that still hold erased content, and strip it from a version.

A purge removes every DVC object that only superseded dataset versions reference (see ``tasks/purge.py``);
this module holds the pure parts around it:

- :func:`targets_of` turns the current version's tombstones into the set of content hashes to look for.
  An erased image whose exact pixels are still held by a *live* sample of the current version (an exact
  duplicate in the test split, say) cannot be absent from storage; such hashes are listed as exempt,
  with the live sample ids, instead of being reported as leaks.
- :func:`scan_object` opens one stored object (its bytes) and says what it is and which erased hashes it
  holds as *content*: every image of a ``.npy`` array is hashed with
  :func:`forgetflow.data.version.content_hash`, every row of a sample table is checked. Tombstone tables
  (``erased.parquet``) and forget manifests name erased hashes on purpose (they are the audit record, not
  the data); those mentions are counted as ``records``, never as hits.
- :class:`ScanReport` sums the findings per store (DVC cache, DVC remote, prepared folder) into the
  evidence that goes into every deletion receipt.
- :func:`strip_erased` rewrites a version without the tombstoned samples (used for ``artifacts/prepared``,
  the uncached ``prepare`` output that still holds version 1 with every sample).

Nothing here touches DVC: the caller lists and reads the objects.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from forgetflow.data.version import ERASED_COLUMNS, DatasetVersion, content_hash, table_fingerprint

NPY_MAGIC = b"\x93NUMPY"
PARQUET_MAGIC = b"PAR1"
MAX_LISTED = 20  # objects and hashes listed by name in the evidence; the counts are always complete


@dataclass(frozen=True)
class Targets:
    """The erased content hashes a scan looks for."""

    erased: frozenset[str]
    exempt: dict[str, list[str]] = field(default_factory=dict)  # hash -> live sample ids with the same pixels

    @property
    def searched(self) -> frozenset[str]:
        """Erased hashes that must not be found as content anywhere."""
        return self.erased - frozenset(self.exempt)

    @property
    def digest(self) -> str:
        """SHA-256 over the sorted erased hashes: names the exact set a scan looked for."""
        return hashlib.sha256("\n".join(sorted(self.erased)).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"erased_hashes": len(self.erased), "erased_hashes_sha256": self.digest,
                "searched": len(self.searched),
                "exempt": {h: ids for h, ids in sorted(self.exempt.items())[:MAX_LISTED]},
                "exempt_count": len(self.exempt)}


def targets_of(version: DatasetVersion) -> Targets:
    """The tombstoned content hashes of ``version``; those still held by one of its live samples are exempt."""
    erased = frozenset(str(h) for h in version.erased["content_hash"]) if len(version.erased) else frozenset()
    live = version.table[version.table["content_hash"].isin(erased)]
    exempt = {str(h): sorted(str(s) for s in group["sample_id"]) for h, group in live.groupby("content_hash")}
    return Targets(erased, exempt)


@dataclass
class ObjectScan:
    """What one stored object is and which erased hashes it holds."""

    name: str
    size: int
    kind: str  # pixels | sample-table | tombstones | manifest | dir | json | other | unreadable
    images: int = 0
    rows: int = 0
    hits: list[str] = field(default_factory=list)  # erased hashes held as content (pixels or live rows)
    records: int = 0  # erased hashes named by tombstones or manifests (the audit record, by design)
    error: str | None = None


def scan_object(name: str, data: bytes, searched: frozenset[str]) -> ObjectScan:
    """Open one stored object and find the erased hashes it holds.

    Args:
        name: how the object is named in its store (reported as given).
        data: the object's bytes.
        searched: content hashes that must not be held (``Targets.searched``).
    """
    scan = ObjectScan(name=name, size=len(data), kind="other")
    try:
        if data.startswith(NPY_MAGIC):
            _scan_array(scan, data, searched)
        elif data.startswith(PARQUET_MAGIC):
            _scan_table(scan, data, searched)
        elif data.lstrip()[:1] in (b"{", b"["):
            _scan_json(scan, data, searched)
    except Exception as exc:  # noqa: BLE001 - an object that cannot be opened is a finding, not a crash
        scan.kind = "unreadable"
        scan.error = f"{type(exc).__name__}: {exc}"[:300]
    return scan


def _scan_array(scan: ObjectScan, data: bytes, searched: frozenset[str]) -> None:
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.ndim == 3:  # a single image
        arr = arr[None]
    if arr.ndim != 4:
        scan.kind = "array"
        return
    scan.kind = "pixels"
    scan.images = int(arr.shape[0])
    found = {h for h in (content_hash(img) for img in arr) if h in searched}
    scan.hits = sorted(found)


def _scan_table(scan: ObjectScan, data: bytes, searched: frozenset[str]) -> None:
    table = pd.read_parquet(io.BytesIO(data))
    scan.rows = int(len(table))
    if "content_hash" not in table.columns:
        scan.kind = "table"
        return
    named = set(table["content_hash"].astype(str)) & searched
    if "erased_in_version" in table.columns:
        scan.kind = "tombstones"
        scan.records = len(named)
    else:
        scan.kind = "sample-table"
        scan.hits = sorted(named)


def _scan_json(scan: ObjectScan, data: bytes, searched: frozenset[str]) -> None:
    doc = json.loads(data)
    if isinstance(doc, list) and all(isinstance(e, dict) and "md5" in e and "relpath" in e for e in doc):
        scan.kind = "dir"
        scan.rows = len(doc)
    elif isinstance(doc, dict) and isinstance(doc.get("rows"), list) and "batch_id" in doc:
        scan.kind = "manifest"
        scan.rows = len(doc["rows"])
        scan.records = len({str(r.get("content_hash")) for r in doc["rows"] if isinstance(r, dict)} & searched)
    else:
        scan.kind = "json"


@dataclass
class StoreSummary:
    """The scan of one store (the DVC cache, the DVC remote, a folder)."""

    objects: int = 0
    bytes: int = 0
    images: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    records: int = 0
    hits: int = 0
    unreadable: int = 0


@dataclass
class ScanReport:
    """Findings over every store a purge scanned; ``ok`` when no erased hash is held as content anywhere."""

    targets: Targets
    stores: dict[str, StoreSummary] = field(default_factory=dict)
    leaks: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)

    def add(self, store: str, scan: ObjectScan) -> None:
        s = self.stores.setdefault(store, StoreSummary())
        s.objects += 1
        s.bytes += scan.size
        s.images += scan.images
        s.kinds[scan.kind] = s.kinds.get(scan.kind, 0) + 1
        s.records += scan.records
        s.hits += len(scan.hits)
        if scan.hits:
            self.leaks.append({"store": store, "object": scan.name, "kind": scan.kind, "hashes": len(scan.hits),
                               "examples": scan.hits[:5]})
        if scan.kind == "unreadable":
            s.unreadable += 1
            self.unreadable.append({"store": store, "object": scan.name, "error": scan.error})

    def scan_all(self, store: str, objects: Iterable[tuple[str, bytes]]) -> list[ObjectScan]:
        """Scan every (name, bytes) of a store; returns the per-object findings."""
        self.stores.setdefault(store, StoreSummary())
        out = []
        for name, data in objects:
            scan = scan_object(name, data, self.targets.searched)
            self.add(store, scan)
            out.append(scan)
        return out

    @property
    def ok(self) -> bool:
        return not self.leaks and not self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            **self.targets.summary(),
            "stores": {name: {"objects": s.objects, "bytes": s.bytes, "images_hashed": s.images,
                              "kinds": dict(sorted(s.kinds.items())), "erased_records": s.records,
                              "erased_content_found": s.hits, "unreadable": s.unreadable}
                       for name, s in sorted(self.stores.items())},
            "leaks": self.leaks[:MAX_LISTED],
            "unreadable": self.unreadable[:MAX_LISTED],
        }

    def describe_problem(self) -> str:
        """One line naming where erased content (or an unreadable object) was found."""
        parts = [f"{leak['store']} object {leak['object']} ({leak['kind']}) holds {leak['hashes']} erased hash(es)"
                 for leak in self.leaks[:3]]
        parts += [f"{u['store']} object {u['object']} cannot be read ({u['error']})" for u in self.unreadable[:3]]
        more = len(self.leaks) + len(self.unreadable) - len(parts)
        return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def strip_erased(version: DatasetVersion, tombstones: pd.DataFrame) -> DatasetVersion | None:
    """``version`` without the samples named by ``tombstones`` (same version number, shards compacted).

    Returns None when none of them is present. The removed rows become the stripped version's own tombstones,
    so a dataset version later initialised from it still knows they were erased.
    """
    ids = set(tombstones["sample_id"].astype(str)) if len(tombstones) else set()
    table = version.table.reset_index(drop=True)
    hit = table["sample_id"].isin(ids)
    if not hit.any():
        return None
    keep = table[~hit].copy()
    images = version.images[keep.index.to_numpy()]
    keep = keep.reset_index(drop=True)
    keep["offset"] = keep.groupby("shard").cumcount().astype(np.int32)
    removed = set(table.loc[hit, "sample_id"])
    stones = tombstones[tombstones["sample_id"].isin(removed)][ERASED_COLUMNS]
    erased = pd.concat([version.erased[ERASED_COLUMNS], stones], ignore_index=True) if len(version.erased) else stones
    erased = erased.drop_duplicates("sample_id").sort_values("sample_id").reset_index(drop=True)
    counts = keep["split"].value_counts()
    meta = dict(version.meta)
    meta.update(
        counts={s: int(counts.get(s, 0)) for s in version.meta["counts"]},
        subjects=int(keep.loc[keep["split"] == "train", "subject_id"].replace("", np.nan).nunique()),
        erased=int(len(erased)),
        fingerprint=table_fingerprint(keep),
        stripped_of_erased=int(len(erased)),
    )
    return DatasetVersion(meta=meta, table=keep, erased=erased, root=version.root, _images=images)
