"""Model retention after erasure: which stored models were trained on erased samples, and when their weights go.

A model memorises some of its training samples, so a model trained on samples that were later erased is
personal data too (docs/erasure.md, "Models"). The purge deletes the *weights* of such models once they are
superseded for longer than ``purge.models`` days (0 = at once, null = never) and keeps their metadata: the
registry version with its tags and run, the cache's ``.json``. This module decides; ``tasks/purge.py`` and
``tasks/tracking.py`` list the models and delete.

Two kinds of stored model:

* **Registered versions** (MLflow). Whether one holds erased data is the lineage rule of
  :mod:`forgetflow.lineage`; it is superseded from its ``forgetflow.superseded_at`` tag. A version that holds
  an alias (``champion`` serving while a successor awaits approval, say) keeps its weights until it loses it.
* **Cached models** (``artifacts/oracles``, ``artifacts/references``, ``artifacts/models``): a ``.pt`` with a
  ``.json`` meta naming ``data`` (the fingerprint of the dataset version it was trained on) and
  ``excluded`` (what it left out: a forget manifest's SHA-256 for a batch's oracle, ``""`` for an original,
  ``erased:N`` for a retrain of a whole version). :func:`cached_holding` holds such a model against the
  dataset's version history: trained on version *n*, it holds the samples of every later erasure except
  the one its ``excluded`` names. A fingerprint that is not in the history (another dataset, a benchmark
  scenario) is reported as ``unknown`` and left alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence


@dataclass(frozen=True)
class VersionRecord:
    """One dataset version of the history: what a cached model's ``data`` fingerprint is matched against."""

    version: int
    fingerprint: str
    batch_id: str | None = None  # the batch that made this version by erasing (None for version 1)
    created_at: dt.datetime | None = None
    manifest_sha256: str | None = None  # that batch's forget manifest


@dataclass(frozen=True)
class Holding:
    """Whether a stored model holds erased samples, which batches erased them and since when."""

    status: Literal["clean", "holds", "unknown"]
    batches: list[str] = field(default_factory=list)
    since: dt.datetime | None = None  # when the first of those erasures happened
    trained_on: int | None = None  # dataset version number, when known


def cached_holding(meta: Mapping[str, Any], history: Sequence[VersionRecord]) -> Holding:
    """Hold a cached model's meta (``data``, ``excluded``) against the dataset's version history.

    Args:
        meta: the model's ``.json`` (at least ``data``; ``excluded`` defaults to ``""``).
        history: every version of the dataset, any order; the newest is the current one.
    """
    fingerprint = str(meta.get("data") or "")
    by_fingerprint = {r.fingerprint: r for r in history}
    trained = by_fingerprint.get(fingerprint)
    if trained is None:
        return Holding("unknown")
    excluded = str(meta.get("excluded") or "")
    later = sorted((r for r in history if r.version > trained.version), key=lambda r: r.version)
    # an oracle of batch b is trained on the version b started from, without b's samples
    held = [r for r in later if not (r.version == trained.version + 1 and r.manifest_sha256 and excluded == r.manifest_sha256)]
    if not held:
        return Holding("clean", trained_on=trained.version)
    return Holding("holds", [str(r.batch_id) for r in held], held[0].created_at, trained.version)


@dataclass(frozen=True)
class Decision:
    """What the purge does with one model's weights."""

    action: Literal["delete", "retain"]
    until: dt.datetime | None = None  # retained: when the window ends (None: indefinitely / while serving)
    why: str = ""


def decide(since: dt.datetime | None, days: float | None, now: dt.datetime, serving: str | None = None) -> Decision:
    """Delete or retain the weights of a model that holds erased samples.

    Args:
        since: when it started to hold erased samples (superseded); None = now.
        days: the retention window (``purge.models``); None keeps weights indefinitely.
        now: the time of the purge.
        serving: the alias it still holds, if any (its weights stay while it does).
    """
    if serving:
        return Decision("retain", None, f"holds the {serving} alias (deleted by the first purge after it loses it)")
    if days is None:
        return Decision("retain", None, "purge.models is null: weights are kept indefinitely")
    start = since or now
    until = start + dt.timedelta(days=days)
    if until <= now:
        return Decision("delete", None, f"superseded since {start.isoformat(timespec='seconds')}, window {days:g} day(s)")
    return Decision("retain", until, f"retention window of {days:g} day(s) after {start.isoformat(timespec='seconds')}")
