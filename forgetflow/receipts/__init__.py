"""Deletion receipts: one JSON document per request, hash-chained across all batches.

A receipt links request → manifest hash → dataset version → flow run → MLflow run → model version →
metrics → verdict. Its ``sha256`` covers its canonical JSON without that field; ``prev_sha256`` is the
previous receipt's hash, so editing, removing or reordering any receipt breaks the chain. The ledger keeps
(seq, sha256, prev_sha256, path) of every receipt as a second, independent copy of the chain.

A chain only proves what it still holds: cutting its *end* (the last receipts together with their ledger
rows), or rewriting the last receipt and its ledger copy, leaves a shorter chain that is intact. So each
batch **anchors** its part of the chain outside the ledger and the receipts folder (:func:`anchor_of`): the
head receipt's hash and sequence number and the batch's receipt count go on the batch's MLflow run (tags)
and into its batch JSON (``state/reports/<batch>/summary.json``). Verification compares the chain with
every anchor it finds (:func:`check_anchors`) and every ``done`` request with the receipts
(:func:`check_done`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from forgetflow.data.manifest import Manifest, canonical_json
from forgetflow.errors import ReceiptError
from forgetflow.masking import mask_secrets

FORMAT = 1


def seal(body: dict[str, Any], seq: int, prev_sha256: str | None) -> dict[str, Any]:
    """Add ``seq``, ``prev_sha256`` and the receipt's own ``sha256``."""
    doc = {**body, "receipt_format": FORMAT, "seq": seq, "prev_sha256": prev_sha256}
    doc.pop("sha256", None)
    doc["sha256"] = hashlib.sha256(canonical_json(doc).encode()).hexdigest()
    return doc


def digest(doc: dict[str, Any]) -> str:
    """Recompute a receipt's hash from its content."""
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def receipt_path(folder: Path, seq: int, request_id: str) -> Path:
    """Where receipt ``seq`` of ``request_id`` is stored (ids made file-name safe)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in request_id)
    return folder / f"{seq:08d}-{safe}.json"


def write(doc: dict[str, Any], path: Path) -> None:
    """Write a sealed receipt atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def build_bodies(manifest: Manifest, manifest_path: str, manifest_sha256: str, requests: Sequence[dict[str, Any]],
                 context: dict[str, Any]) -> list[dict[str, Any]]:
    """One unsealed receipt body per request of the batch that was honoured.

    Bodies are masked (``forgetflow.masking``) before they are sealed: a receipt is handed to regulators and
    data subjects, and no credential that reached the batch's context (a URL with a password in an error
    or a setting) may travel with it.
    """
    bodies = []
    for req in requests:
        rid = req["request_id"]
        samples = manifest.samples_of(rid)
        bodies.append(mask_secrets({
            "request": {k: req.get(k) for k in ("request_id", "subject_id", "sample_id", "reason", "received_at",
                                                  "content_sha256")},
            "samples": {"count": len(samples), "sample_ids": samples},
            "manifest": {"path": manifest_path, "sha256": manifest_sha256, "batch_id": manifest.batch_id},
            **context,
        }))
    return bodies


@dataclass
class Verification:
    """The outcome of verifying the receipt chain."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


LinkCheck = Callable[[dict[str, Any]], list[str]]


def anchor_of(batch_id: str, docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The anchor of one batch's sealed receipts (in chain order): head hash, head and first seq, count."""
    if not docs:
        return {"batch_id": batch_id, "count": 0, "head_seq": None, "head_sha256": None, "first_seq": None}
    return {"batch_id": batch_id, "count": len(docs), "first_seq": int(docs[0]["seq"]),
            "head_seq": int(docs[-1]["seq"]), "head_sha256": str(docs[-1]["sha256"])}


def check_anchors(rows: Sequence[dict[str, Any]], anchors: Sequence[dict[str, Any]]) -> list[str]:
    """Compare the chain with every batch anchor; one line per disagreement, naming the batch and the anchor.

    Args:
        rows: the chain (ledger rows: ``seq``, ``sha256``, ``batch_id``), in order.
        anchors: ``{"batch_id", "count", "head_seq", "head_sha256", "source"}`` each (``source`` names where
            the anchor was found, e.g. ``MLflow run 3f2a…``).
    """
    problems = []
    by_batch: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_batch.setdefault(str(row.get("batch_id")), []).append(row)
    anchored = set()
    for anchor in anchors:
        batch = str(anchor.get("batch_id"))
        anchored.add(batch)
        mine = sorted(by_batch.get(batch, []), key=lambda r: int(r["seq"]))
        where = f"batch {batch}: its anchor ({anchor.get('source', 'anchor')})"
        count = int(anchor.get("count") or 0)
        if not mine and count:
            problems.append(f"{where} holds {count} receipt(s) ending at receipt {anchor.get('head_seq')}, "
                            "the chain has none of them (cut from the chain)")
            continue
        if len(mine) != count:
            problems.append(f"{where} holds {count} receipt(s), the chain has {len(mine)} "
                            f"(receipts {', '.join(str(r['seq']) for r in mine[:10])})")
        if mine:
            head = mine[-1]
            if int(head["seq"]) != int(anchor.get("head_seq") or 0):
                problems.append(f"{where} ends at receipt {anchor.get('head_seq')}, the chain's last receipt of the "
                                f"batch is {head['seq']}")
            elif str(head["sha256"]) != str(anchor.get("head_sha256")):
                problems.append(f"{where} says receipt {head['seq']} hashes to {str(anchor.get('head_sha256'))[:12]}…, "
                                f"the chain's receipt {head['seq']} hashes to {str(head['sha256'])[:12]}… (rewritten)")
    for batch, mine in by_batch.items():
        if batch not in anchored:
            problems.append(f"batch {batch}: {len(mine)} receipt(s) (from receipt {mine[0]['seq']}) are not anchored "
                            "(no MLflow run tag and no batch JSON names its head)")
    heads = [int(a["head_seq"]) for a in anchors if a.get("head_seq") is not None]
    if rows and heads and int(rows[-1]["seq"]) < max(heads):
        problems.append(f"the chain ends at receipt {rows[-1]['seq']}, but an anchor names receipt {max(heads)}: "
                        "its end was cut")
    return problems


def check_done(rows: Sequence[dict[str, Any]], done_request_ids: Sequence[str]) -> list[str]:
    """Every ``done`` request has exactly one receipt in the chain."""
    seqs: dict[str, list[int]] = {}
    for row in rows:
        seqs.setdefault(str(row["request_id"]), []).append(int(row["seq"]))
    problems = []
    for rid in sorted(done_request_ids):
        found = seqs.get(rid, [])
        if not found:
            problems.append(f"request {rid} is done but has no receipt in the chain")
        elif len(found) > 1:
            problems.append(f"request {rid} has {len(found)} receipts (receipts {', '.join(map(str, found))})")
    return problems


def verify(rows: Sequence[dict[str, Any]], root: Path, link_checks: Sequence[LinkCheck] = (),
           anchors: Sequence[dict[str, Any]] | None = None,
           done_request_ids: Sequence[str] | None = None) -> Verification:
    """Check every receipt file against its hash, the chain, the ledger's copy and each link check; then, when
    given, the chain against the batch anchors and the ``done`` requests (see the module docstring)."""
    result = Verification()
    prev: str | None = None
    for expected_seq, row in enumerate(rows, start=1):
        path = Path(row["path"])
        path = path if path.is_absolute() else root / path
        where = f"receipt {row['seq']} ({row['request_id']})"
        if row["seq"] != expected_seq:
            result.problems.append(f"{where}: ledger sequence jumps to {row['seq']} (expected {expected_seq})")
        if not path.exists():
            result.problems.append(f"{where}: file {path} is missing")
            prev = row["sha256"]
            continue
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            result.problems.append(f"{where}: {path} is not valid JSON ({exc.msg})")
            prev = row["sha256"]
            continue
        actual = digest(doc)
        if doc.get("sha256") != actual:
            result.problems.append(f"{where}: content was edited (hash {actual[:12]}… ≠ stored {str(doc.get('sha256'))[:12]}…)")
        if doc.get("sha256") != row["sha256"]:
            result.problems.append(f"{where}: file hash differs from the ledger's copy of the chain")
        if doc.get("prev_sha256") != prev:
            result.problems.append(f"{where}: chain broken (prev_sha256 does not match the previous receipt)")
        if doc.get("seq") != row["seq"] or doc.get("request", {}).get("request_id") != row["request_id"]:
            result.problems.append(f"{where}: file names another request or sequence number")
        for check in link_checks:
            result.problems.extend(f"{where}: {p}" for p in check(doc))
        prev = row["sha256"]
        result.checked += 1
    if anchors is not None:
        result.problems.extend(check_anchors(rows, anchors))
    if done_request_ids is not None:
        result.problems.extend(check_done(rows, done_request_ids))
    return result


def check_manifest_link(root: Path) -> LinkCheck:
    """A link check: the manifest file exists and hashes to what the receipt says."""

    def check(doc: dict[str, Any]) -> list[str]:
        info = doc.get("manifest", {})
        path = root / info.get("path", "")
        if not path.exists():
            return [f"manifest {info.get('path')} is missing"]
        try:
            manifest = Manifest.read(path)
        except ReceiptError as exc:  # pragma: no cover - Manifest.read raises DataError
            return [str(exc)]
        except Exception as exc:  # noqa: BLE001 - any unreadable manifest is a broken link
            return [f"manifest {info.get('path')}: {exc}"]
        if manifest.sha256 != info.get("sha256"):
            return [f"manifest {info.get('path')} hashes to {manifest.sha256[:12]}…, receipt says {str(info.get('sha256'))[:12]}…"]
        rid = doc.get("request", {}).get("request_id")
        if rid not in manifest.valid_request_ids:
            return [f"manifest {info.get('path')} does not list request {rid} as honoured"]
        if manifest.samples_of(rid) != doc.get("samples", {}).get("sample_ids"):
            return [f"manifest {info.get('path')} resolves request {rid} to other samples"]
        return []

    return check
