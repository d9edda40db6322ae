"""The data contract, as plain data: which facts must hold for a dataset version and a forget manifest.

The core derives a few tables from a version and a manifest (one row per manifest entry, one per shard,
one per class) and lists the rules over their columns. The Great Expectations adapter
(``tasks/validation.py``) turns every rule into an expectation and runs them; this module never imports GX.
A failing ``manifest`` rule quarantines the requests of the failing rows with the rule's message; a failing
``dataset`` or ``shards`` rule stops the batch (the data itself is broken); ``warning`` rules are reported only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from forgetflow.data.manifest import Manifest
from forgetflow.data.version import SPLITS, TABLE_COLUMNS, DatasetVersion
from forgetflow.ledger.reasons import REASONS

Frame = Literal["dataset", "manifest", "shards", "balance"]


@dataclass(frozen=True)
class Rule:
    """One expectation: the GX class name, its arguments, and what a person reads when it fails."""

    name: str
    frame: Frame
    expectation: str
    kwargs: dict[str, Any]
    message: str  # formatted with the failing row's columns, e.g. "{sample_id} is not in {version}"
    severity: Literal["critical", "warning"] = "critical"
    meta: dict[str, Any] = field(default_factory=dict)


def manifest_frame(version: DatasetVersion, manifest: Manifest) -> pd.DataFrame:
    """One row per (request, sample) entry, with the facts the manifest rules check."""
    rows = manifest.rows.copy()
    table = version.table
    # .tolist() and plain sets: iterating Arrow-backed string columns (pandas 3) value by value is slow
    known = set(table["sample_id"].tolist())
    erased = dict(zip(version.erased["sample_id"], version.erased["erased_in_version"])) if len(version.erased) else {}
    train = table[table["split"] == "train"]
    candidates = set(rows["sample_id"].dropna().tolist())
    retain = train[[s not in candidates for s in train["sample_id"].tolist()]]
    retain_ids = set(retain["sample_id"].tolist())
    by_hash: dict[str, str] = {}  # content hash -> the first retained sample with it
    for h, sid in zip(retain["content_hash"].tolist(), retain["sample_id"].tolist()):
        if isinstance(h, str):
            by_hash.setdefault(h, sid)
    ids = rows["sample_id"].tolist()
    # an erased sample is "known" (it has a tombstone), so the not-already-erased rule names it
    rows["known"] = [bool(s in known or s in erased) if isinstance(s, str) else True for s in ids]
    rows["erased_in_version"] = pd.array([erased.get(s) if isinstance(s, str) else None for s in ids], dtype="Int64")
    rows["already_erased"] = rows["erased_in_version"].notna()
    rows["in_retain"] = [bool(s in retain_ids) if isinstance(s, str) else False for s in ids]
    # the manifest names images by keyed hash; the live table has the bare hash of each sample being forgotten
    live_hash = dict(zip(table["sample_id"].tolist(), table["content_hash"].tolist()))
    rows["duplicate_in_retain"] = [by_hash.get(live_hash.get(s)) if isinstance(s, str) else None for s in ids]
    rows["version"] = version.label
    rows["max_label"] = version.num_classes - 1
    return rows.reset_index(drop=True)


def shard_frame(version: DatasetVersion) -> pd.DataFrame:
    """One row per shard: dtype, per-image shape, pixel range and row counts (table vs file)."""
    images = version.images
    table = version.table
    out = []
    for shard, group in table.groupby("shard"):
        block = images[table.index.get_indexer(group.index)]
        out.append({
            "shard": int(shard),
            "dtype": str(block.dtype),
            "shape": "x".join(str(d) for d in block.shape[1:]),
            "pixel_min": int(block.min()) if block.size else 0,
            "pixel_max": int(block.max()) if block.size else 0,
            "rows": int(len(group)),
        })
    return pd.DataFrame(out)


def balance_frame(version: DatasetVersion, forget_ids: list[str]) -> pd.DataFrame:
    """Per class: its share of the training split before and after removing ``forget_ids`` (points)."""
    train = version.rows("train")
    forget = set(forget_ids)
    after = train[[s not in forget for s in train["sample_id"].tolist()]]
    k = version.num_classes
    before_share = np.bincount(train["label"], minlength=k) / max(1, len(train)) * 100
    after_share = np.bincount(after["label"], minlength=k) / max(1, len(after)) * 100
    return pd.DataFrame({"label": np.arange(k), "share_before": before_share, "share_after": after_share,
                         "shift": after_share - before_share})


def rules(version: DatasetVersion, max_class_shift: float) -> list[Rule]:
    """Every rule of the contract for this version."""
    k = version.num_classes
    shape = "x".join(str(d) for d in version.shape)
    return [
        # the dataset table
        Rule("table_columns", "dataset", "ExpectTableColumnsToMatchSet", {"column_set": TABLE_COLUMNS, "exact_match": True},
             "the sample table's columns are not the expected ones"),
        Rule("sample_ids_unique", "dataset", "ExpectColumnValuesToBeUnique", {"column": "sample_id"},
             "sample id {sample_id} appears more than once in the dataset table"),
        Rule("sample_ids_present", "dataset", "ExpectColumnValuesToNotBeNull", {"column": "sample_id"},
             "a dataset row has no sample id"),
        Rule("labels_in_domain", "dataset", "ExpectColumnValuesToBeBetween", {"column": "label", "min_value": 0, "max_value": k - 1},
             "sample {sample_id} has label {label}, outside 0.." + str(k - 1)),
        Rule("splits_known", "dataset", "ExpectColumnValuesToBeInSet", {"column": "split", "value_set": list(SPLITS)},
             "sample {sample_id} has unknown split {split}"),
        Rule("content_hash_format", "dataset", "ExpectColumnValuesToMatchRegex", {"column": "content_hash", "regex": r"^[0-9a-f]{32}$"},
             "sample {sample_id} has a malformed content hash"),
        # the pixels
        Rule("pixels_uint8", "shards", "ExpectColumnValuesToBeInSet", {"column": "dtype", "value_set": ["uint8"]},
             "shard {shard} holds {dtype} pixels, expected uint8"),
        Rule("pixels_shape", "shards", "ExpectColumnValuesToBeInSet", {"column": "shape", "value_set": [shape]},
             "shard {shard} holds images of shape {shape}, expected " + shape),
        Rule("pixels_range", "shards", "ExpectColumnValuesToBeBetween", {"column": "pixel_max", "min_value": 0, "max_value": 255},
             "shard {shard} has pixel values outside 0..255"),
        # the manifest
        Rule("request_resolves", "manifest", "ExpectColumnValuesToNotBeNull", {"column": "sample_id"},
             "request {request_id} resolves to no training sample (subject {subject_id} is unknown in {version})"),
        Rule("sample_known", "manifest", "ExpectColumnValuesToBeInSet", {"column": "known", "value_set": [True]},
             "sample {sample_id} is not in dataset version {version}"),
        Rule("not_already_erased", "manifest", "ExpectColumnValuesToBeInSet", {"column": "already_erased", "value_set": [False]},
             "sample {sample_id} was already erased (in version {erased_in_version})"),
        Rule("training_split_only", "manifest", "ExpectColumnValuesToBeInSet", {"column": "split", "value_set": ["train"]},
             "sample {sample_id} is in the {split} split; only training samples can be forgotten"),
        Rule("manifest_labels_in_domain", "manifest", "ExpectColumnValuesToBeBetween", {"column": "label", "min_value": 0, "max_value": k - 1},
             "sample {sample_id} has label {label}, outside 0.." + str(k - 1)),
        Rule("reason_known", "manifest", "ExpectColumnValuesToBeInSet", {"column": "reason", "value_set": list(REASONS)},
             "request {request_id} has unknown reason {reason}"),
        Rule("entries_unique", "manifest", "ExpectCompoundColumnsToBeUnique", {"column_list": ["request_id", "sample_id"]},
             "request {request_id} lists sample {sample_id} twice"),
        Rule("forget_retain_disjoint", "manifest", "ExpectColumnValuesToBeInSet", {"column": "in_retain", "value_set": [False]},
             "sample {sample_id} would be in both the forget and the retain set"),
        Rule("no_duplicate_in_retain", "manifest", "ExpectColumnValuesToBeNull", {"column": "duplicate_in_retain"},
             "sample {sample_id} has an exact duplicate {duplicate_in_retain} in the retain set (same content hash): "
             "forgetting it alone would leave the same image in training"),
        # class balance of what remains (reported, never blocks: full-class forgetting shifts it by design)
        Rule("class_balance_shift", "balance", "ExpectColumnValuesToBeBetween",
             {"column": "shift", "min_value": -max_class_shift, "max_value": max_class_shift},
             "class {label} share moves by {shift:.2f} points", severity="warning"),
    ]


def describe_failure(rule: Rule, row: dict[str, Any]) -> str:
    """The rule's message filled with a failing row's values (missing values shown as '?')."""

    class _Missing(dict):
        def __missing__(self, key: str) -> str:
            return "?"

    try:
        return rule.message.format_map(_Missing({k: ("?" if v is None else v) for k, v in row.items()}))
    except (ValueError, TypeError):
        return rule.message
