"""Model lineage: which erasures a registered model version already excludes, and which erased data it holds.

Every registered version is one of three kinds (the ``forgetflow.role`` tag):

* ``original`` — trained from scratch on dataset version *n*: it excludes every erasure that led to *n*;
* ``retrain`` — trained from scratch on the retain set of dataset version *n* in batch *b* (or, for an oracle
  audit, on version *n* itself): it excludes every erasure up to *n*, and *b*;
* ``unlearned`` — its parent's weights after unlearning batch *b*: it excludes what its parent excluded, and *b*.

A model "holds erased data" when some erasure batch is in none of those. Such a model is *superseded*: it must
never serve again (a rollback refuses it), whatever its metrics. Nothing here talks to the registry; the
callers in ``tasks/`` turn registry versions and ledger rows into these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

FULL_TRAINING = ("original", "retrain")


@dataclass(frozen=True)
class ModelRecord:
    """What lineage needs to know about one registered model version."""

    version: str
    role: str
    dataset_version: int | None = None
    batch_id: str | None = None
    parent: str | None = None
    train_samples: int | None = None
    created_ms: int = 0
    superseded_by: str | None = None

    @classmethod
    def from_registry(cls, entry: Mapping[str, Any]) -> "ModelRecord":
        """Build a record from ``{"version", "tags", "created_ms"}`` as the tracking adapter lists versions."""
        tags = entry.get("tags") or {}

        def _int(key: str) -> int | None:
            value = tags.get(key)
            return int(value) if value not in (None, "") and str(value).lstrip("-").isdigit() else None

        role = tags.get("forgetflow.role") or "unknown"
        return cls(
            version=str(entry["version"]),
            role=role,
            dataset_version=_int("dataset_version"),
            batch_id=tags.get("batch_id") or None,
            parent=(tags.get("parent_model_version") or None) if role == "unlearned" else None,
            train_samples=_int("train_samples"),
            created_ms=int(entry.get("created_ms") or 0),
            superseded_by=tags.get("forgetflow.superseded_by") or None,
        )


@dataclass(frozen=True)
class Erasure:
    """One batch's erasure: the dataset version it produced and how many training samples it removed."""

    batch_id: str
    version: int
    samples: int


def covered(version: str, records: Mapping[str, ModelRecord], erasures: Sequence[Erasure]) -> set[str]:
    """The erasure batches whose samples the model ``version`` never learned or has unlearned."""
    seen: set[str] = set()
    out: set[str] = set()
    current: str | None = version
    while current is not None and current not in seen:
        seen.add(current)
        record = records.get(current)
        if record is None:  # an unknown ancestor: assume it excluded nothing (conservative)
            break
        if record.role in FULL_TRAINING:
            if record.dataset_version is not None:
                out |= {e.batch_id for e in erasures if e.version <= record.dataset_version}
            if record.role == "retrain" and record.batch_id:
                out.add(record.batch_id)
            break
        if record.role == "unlearned":
            if record.batch_id:
                out.add(record.batch_id)
            current = record.parent
            continue
        break  # an unknown role excludes nothing
    return out


def held(version: str, records: Mapping[str, ModelRecord], erasures: Sequence[Erasure]) -> list[str]:
    """Erasure batches (oldest first) whose erased samples the model ``version`` still holds."""
    done = covered(version, records, erasures)
    return [e.batch_id for e in sorted(erasures, key=lambda e: e.version) if e.batch_id not in done]


def root(version: str, records: Mapping[str, ModelRecord]) -> ModelRecord | None:
    """The last training from scratch in the model's lineage (itself, for an original or a retrain)."""
    seen: set[str] = set()
    current: str | None = version
    while current is not None and current not in seen:
        seen.add(current)
        record = records.get(current)
        if record is None:
            return None
        if record.role in FULL_TRAINING:
            return record
        current = record.parent
    return None


def erased_since(record: ModelRecord, records: Mapping[str, ModelRecord], erasures: Sequence[Erasure]) -> int:
    """Training samples erased by batches that the full training ``record`` did not already exclude."""
    done = covered(record.version, records, erasures)
    return sum(e.samples for e in erasures if e.batch_id not in done)


def erasures_from_versions(rows: Sequence[Mapping[str, Any]]) -> list[Erasure]:
    """Erasures from the ledger's dataset-version rows (one dataset): a row made by a batch is one erasure."""
    by_version = {int(r["version"]): r for r in rows}
    out = []
    for number in sorted(by_version):
        row = by_version[number]
        if not row.get("batch_id"):
            continue
        parent = by_version.get(int(row["parent"])) if row.get("parent") is not None else None
        before = int(parent["erased_total"]) if parent is not None else 0
        out.append(Erasure(str(row["batch_id"]), number, int(row["erased_total"]) - before))
    return out
