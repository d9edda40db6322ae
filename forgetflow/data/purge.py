"""Erasure in storage: find stored objects that still hold erased content, and strip it from a version.

A purge removes every DVC object that only superseded dataset versions reference, rewrites every copy of a
dataset version the project keeps, and scans every place the project writes to (see ``tasks/purge.py`` and
docs/erasure.md); this module holds the pure parts around it:

- :func:`targets_of` turns the current version's tombstones into the set of keyed content hashes to look
  for (``forgetflow/data/tombstones.py``). An erased image whose exact pixels are still held by a *live*
  sample of the current version (an exact duplicate in the test split, say) cannot be absent from storage;
  such hashes are listed as exempt, with the live sample ids, instead of being reported as leaks.
- :func:`scan_object` opens one stored object (its bytes) and says what it is and which erased images it
  holds as *content*: every uint8 image of a ``.npy`` array (also inside ``.npz`` and other zip archives)
  is hashed with :func:`forgetflow.data.version.content_hash` and keyed, every row of a sample table is
  checked. Tombstone tables, forget manifests and any other file that *names* an erased image by its
  keyed hash are counted as ``records`` (the audit trail, by design). A file that names one by its bare
  content hash (manifests and reports written before keyed hashes) is a ``bare mention``: it holds no
  pixels, but it lets whoever holds the image confirm it was erased, so the evidence names it.
  Model weights (torch zip checkpoints) are recognised and left to the model side of the purge.
- :class:`ScanReport` sums the findings per store into the evidence that goes into every deletion receipt.
- :func:`strip_erased` rewrites a dataset version without the erased samples (``artifacts/prepared``, the
  benchmark's copies under ``artifacts/bench``).

What the scan cannot see: pixels in formats it does not decode (PNG/JPEG files, pickles, float arrays made
from the images) and what models memorised. The first are out of the project's writing paths (it writes
pixels only as uint8 ``.npy``); the second is what ``purge.models`` is for.

Nothing here touches DVC or MLflow: the caller lists and reads the objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from forgetflow.data.tombstones import SCHEME, TombstoneKey
from forgetflow.data.version import ERASED_COLUMNS, DatasetVersion, content_hash, table_fingerprint

NPY_MAGIC = b"\x93NUMPY"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
SQLITE_MAGIC = b"SQLite format 3\x00"
MAX_LISTED = 20  # objects and hashes listed by name in the evidence; the counts are always complete
MAX_MEMBER_BYTES = 1 << 30  # zip members larger than this are not opened (reported unreadable)
_KEYED_TOKEN = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_BARE_TOKEN = re.compile(rb"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


@dataclass(frozen=True)
class Targets:
    """The erased images a scan looks for, as keyed hashes, and the key to hash what it opens."""

    erased: frozenset[str]  # keyed hashes (tombstones' content_hmac)
    key: TombstoneKey
    exempt: dict[str, list[str]] = field(default_factory=dict)  # keyed hash -> live sample ids with the same pixels

    @property
    def searched(self) -> frozenset[str]:
        """Keyed hashes of erased images that must not be found as content anywhere."""
        return self.erased - frozenset(self.exempt)

    @property
    def digest(self) -> str:
        """SHA-256 over the sorted keyed hashes: names the exact set a scan looked for."""
        return hashlib.sha256("\n".join(sorted(self.erased)).encode()).hexdigest()

    def match(self, content_hashes: Iterable[str]) -> list[str]:
        """Keyed hashes of the searched images among these bare content hashes (sorted, unique)."""
        if not self.searched:
            return []
        return sorted({self.key.digest(h) for h in content_hashes} & self.searched)

    def summary(self) -> dict[str, Any]:
        return {"erased_hashes": len(self.erased), "erased_hashes_sha256": self.digest,
                "hash": SCHEME, "key_id": self.key.key_id,
                "searched": len(self.searched),
                "exempt": {h: ids for h, ids in sorted(self.exempt.items())[:MAX_LISTED]},
                "exempt_count": len(self.exempt)}


def targets_of(version: DatasetVersion, key: TombstoneKey) -> Targets:
    """The keyed hashes of ``version``'s tombstones; those still held by one of its live samples are exempt.

    Raises:
        DataError: the tombstones were keyed with another key.
    """
    version = version.with_keyed_tombstones(key)
    erased = frozenset(str(h) for h in version.erased["content_hmac"]) if len(version.erased) else frozenset()
    exempt: dict[str, list[str]] = {}
    if erased:
        keyed = key.digests(version.table["content_hash"].astype(str).tolist())
        for h, sid in zip(keyed, version.table["sample_id"].tolist()):
            if h in erased:
                exempt.setdefault(h, []).append(str(sid))
    return Targets(erased, key, {h: sorted(ids) for h, ids in exempt.items()})


@dataclass
class ObjectScan:
    """What one stored object is and which erased images it holds or names."""

    name: str
    size: int
    # pixels | array | pickle | archive | sample-table | tombstones | table | manifest | dir | json | model |
    # database | other | unreadable
    kind: str
    images: int = 0
    rows: int = 0
    hits: list[str] = field(default_factory=list)  # keyed hashes of erased images held as content (pixels, live rows)
    records: int = 0  # erased images named by keyed hash (tombstones, manifests, reports): the audit record
    bare: list[str] = field(default_factory=list)  # keyed hashes of erased images named here by their bare hash
    error: str | None = None


def scan_object(name: str, data: bytes, targets: Targets) -> ObjectScan:
    """Open one stored object and find the erased images it holds or names.

    Args:
        name: how the object is named in its store (reported as given).
        data: the object's bytes.
        targets: what to look for.
    """
    scan = ObjectScan(name=name, size=len(data), kind="other")
    try:
        if data.startswith(NPY_MAGIC):
            _scan_array(scan, data, targets)
        elif data.startswith(PARQUET_MAGIC):
            _scan_table(scan, data, targets)
        elif data.startswith(ZIP_MAGIC):
            _scan_zip(scan, data, targets)
        elif data.startswith(SQLITE_MAGIC):
            scan.kind = "database"
            _scan_mentions(scan, data, targets)
        elif data.lstrip()[:1] in (b"{", b"["):
            _scan_json(scan, data, targets)
        else:
            _scan_mentions(scan, data, targets)
    except Exception as exc:  # noqa: BLE001 - an object that cannot be opened is a finding, not a crash
        scan.kind = "unreadable"
        scan.error = f"{type(exc).__name__}: {exc}"[:300]
    return scan


def _image_views(arr: np.ndarray) -> list[np.ndarray]:
    """The ways a uint8 array may hold images of shape [C, H, W] (what ``content_hash`` hashes)."""
    if arr.ndim == 4:
        views = [arr]
        if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):  # [N, H, W, C]
            views.append(arr.transpose(0, 3, 1, 2))
        return views
    if arr.ndim == 3:  # one [C, H, W] image, or N grayscale [H, W] images
        return [arr[None], arr[:, None]]
    if arr.ndim == 2:  # one grayscale image
        return [arr[None, None]]
    return []


def _scan_array(scan: ObjectScan, data: bytes, targets: Targets) -> None:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        scan.kind = "pickle"  # an object array: never unpickled (it could run code), so not opened
        return
    views = _image_views(arr) if arr.dtype == np.uint8 else []
    if not views:
        scan.kind = "array"  # per-sample values, not pixels
        return
    scan.kind = "pixels"
    scan.images += int(views[0].shape[0])
    found = set(scan.hits)
    for view in views:
        found.update(targets.match(content_hash(img) for img in view))
    scan.hits = sorted(found)


def _scan_table(scan: ObjectScan, data: bytes, targets: Targets) -> None:
    table = pd.read_parquet(io.BytesIO(data))
    scan.rows = int(len(table))
    if "erased_in_version" in table.columns and "content_hmac" in table.columns:
        scan.kind = "tombstones"
        scan.records = len(set(table["content_hmac"].astype(str)) & targets.searched)
    elif "erased_in_version" in table.columns and "content_hash" in table.columns:
        scan.kind = "tombstones"  # written before keyed hashes: bare hashes of erased images
        scan.bare = targets.match(table["content_hash"].astype(str))
    elif "content_hash" in table.columns:
        scan.kind = "sample-table"
        scan.hits = targets.match(table["content_hash"].astype(str))
    else:
        scan.kind = "table"


def _scan_zip(scan: ObjectScan, data: bytes, targets: Targets) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            scan.kind = "model"  # a torch checkpoint: weights, left to purge.models
            return
        scan.kind = "archive"  # .npz and other zips: every member is opened like an object of its own
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                raise ValueError(f"member {info.filename} is {info.file_size} bytes (limit {MAX_MEMBER_BYTES})")
            inner = scan_object(f"{scan.name}:{info.filename}", archive.read(info), targets)
            if inner.kind == "unreadable":
                raise ValueError(f"member {info.filename}: {inner.error}")
            scan.images += inner.images
            scan.rows += inner.rows
            scan.records += inner.records
            scan.hits = sorted(set(scan.hits) | set(inner.hits))
            scan.bare = sorted(set(scan.bare) | set(inner.bare))


def _scan_json(scan: ObjectScan, data: bytes, targets: Targets) -> None:
    doc = json.loads(data)
    if isinstance(doc, list) and all(isinstance(e, dict) and "md5" in e and "relpath" in e for e in doc):
        scan.kind = "dir"
        scan.rows = len(doc)
        return
    if isinstance(doc, dict) and isinstance(doc.get("rows"), list) and "batch_id" in doc:
        scan.kind = "manifest"
        scan.rows = len(doc["rows"])
    else:
        scan.kind = "json"
    _scan_mentions(scan, data, targets)


def _scan_mentions(scan: ObjectScan, data: bytes, targets: Targets) -> None:
    """Count erased images named by keyed hash (records) or by bare content hash (bare mentions)."""
    if not targets.searched:
        return
    keyed = {m.decode() for m in _KEYED_TOKEN.findall(data)}
    scan.records += len(keyed & targets.searched)
    bare = {m.decode() for m in _BARE_TOKEN.findall(data)}
    scan.bare = sorted(set(scan.bare) | set(targets.match(bare)))


@dataclass
class StoreSummary:
    """The scan of one store (the DVC cache, the DVC remote, a folder)."""

    objects: int = 0
    bytes: int = 0
    images: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    records: int = 0
    hits: int = 0
    bare: int = 0
    unreadable: int = 0


@dataclass
class ScanReport:
    """Findings over every store a purge scanned; ``ok`` when no erased image is held as content anywhere."""

    targets: Targets
    stores: dict[str, StoreSummary] = field(default_factory=dict)
    leaks: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    bare: list[dict[str, Any]] = field(default_factory=list)

    def add(self, store: str, scan: ObjectScan) -> None:
        s = self.stores.setdefault(store, StoreSummary())
        s.objects += 1
        s.bytes += scan.size
        s.images += scan.images
        s.kinds[scan.kind] = s.kinds.get(scan.kind, 0) + 1
        s.records += scan.records
        s.hits += len(scan.hits)
        s.bare += len(scan.bare)
        if scan.hits:
            self.leaks.append({"store": store, "object": scan.name, "kind": scan.kind, "hashes": len(scan.hits),
                               "examples": scan.hits[:5]})
        if scan.bare:
            self.bare.append({"store": store, "object": scan.name, "kind": scan.kind, "hashes": len(scan.bare)})
        if scan.kind == "unreadable":
            s.unreadable += 1
            self.unreadable.append({"store": store, "object": scan.name, "error": scan.error})

    def scan_all(self, store: str, objects: Iterable[tuple[str, bytes]]) -> list[ObjectScan]:
        """Scan every (name, bytes) of a store; returns the per-object findings."""
        self.stores.setdefault(store, StoreSummary())
        out = []
        for name, data in objects:
            scan = scan_object(name, data, self.targets)
            self.add(store, scan)
            out.append(scan)
        return out

    def leaks_in(self, stores: Iterable[str]) -> list[dict[str, Any]]:
        """The leaks and unreadable objects of these stores."""
        wanted = set(stores)
        return [x for x in self.leaks + self.unreadable if x["store"] in wanted]

    @property
    def ok(self) -> bool:
        return not self.leaks and not self.unreadable

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            **self.targets.summary(),
            "stores": {name: {"objects": s.objects, "bytes": s.bytes, "images_hashed": s.images,
                              "kinds": dict(sorted(s.kinds.items())), "erased_records": s.records,
                              "erased_content_found": s.hits, "bare_hash_mentions": s.bare,
                              "unreadable": s.unreadable}
                       for name, s in sorted(self.stores.items())},
            "leaks": self.leaks[:MAX_LISTED],
            "leak_count": len(self.leaks),
            "unreadable": self.unreadable[:MAX_LISTED],
            "bare_mentions": self.bare[:MAX_LISTED],
            "bare_mention_objects": len(self.bare),
        }

    def describe_problem(self) -> str:
        """One line naming where erased content (or an unreadable object) was found."""
        parts = [f"{leak['store']} object {leak['object']} ({leak['kind']}) holds {leak['hashes']} erased hash(es)"
                 for leak in self.leaks[:3]]
        parts += [f"{u['store']} object {u['object']} cannot be read ({u['error']})" for u in self.unreadable[:3]]
        more = len(self.leaks) + len(self.unreadable) - len(parts)
        return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def strip_erased(version: DatasetVersion, current: DatasetVersion, targets: Targets) -> DatasetVersion | None:
    """``version`` (a copy of some dataset version) without the samples ``current`` erased.

    A sample goes when a tombstone of ``current`` names its id, or when its pixels are an erased image
    (keyed hash in ``targets.searched``: a copy built with other sample ids). The version number stays;
    shards are compacted. The removed rows become the copy's own tombstones (keyed), so a dataset version
    later initialised from it still knows they were erased. Returns None when nothing is to be removed and
    the copy's tombstones are already keyed.

    Raises:
        DataError: the copy's tombstones were keyed with another key.
    """
    key = targets.key
    was_keyed = version.tombstones_keyed or not len(version.erased)
    version = version.with_keyed_tombstones(key)
    stones_of = current.with_keyed_tombstones(key).erased
    ids = set(stones_of["sample_id"].astype(str)) if len(stones_of) else set()
    table = version.table.reset_index(drop=True)
    keyed = pd.Series(key.digests(table["content_hash"].astype(str).tolist()), index=table.index) \
        if targets.searched else pd.Series([""] * len(table), index=table.index)
    hit = table["sample_id"].isin(ids) | keyed.isin(targets.searched)
    if not hit.any():
        return None if was_keyed else version  # nothing to remove, but bare-hash tombstones to rewrite
    keep = table[~hit].copy()
    images = version.images[keep.index.to_numpy()]
    keep = keep.reset_index(drop=True)
    keep["offset"] = keep.groupby("shard").cumcount().astype(np.int32)
    by_id = stones_of.drop_duplicates("sample_id").set_index("sample_id")
    by_hash = stones_of.drop_duplicates("content_hmac").set_index("content_hmac")
    new_stones = []
    for idx in table.index[hit]:
        sid, h = str(table.at[idx, "sample_id"]), keyed.at[idx]
        source = by_id.loc[sid] if sid in by_id.index else by_hash.loc[h]
        new_stones.append({"sample_id": sid, "subject_id": str(table.at[idx, "subject_id"]),
                           "content_hmac": key.digest(str(table.at[idx, "content_hash"])),
                           "erased_in_version": int(source["erased_in_version"]), "batch_id": str(source["batch_id"])})
    stones = pd.DataFrame(new_stones, columns=ERASED_COLUMNS)
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
        tombstone_key_id=key.key_id,
        tombstone_scheme=SCHEME,
    )
    return DatasetVersion(meta=meta, table=keep, erased=erased, root=version.root, _images=images)
