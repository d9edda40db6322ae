"""The purge task: erased samples leave every place the project stores them, with evidence for the receipts.

DVC has no targeted delete (treeverse/dvc#4218); ``dvc gc`` is keep-based. The keep set is the
**workspace**: every object that ``data.dvc`` (the current dataset version with every forget manifest)
and any other ``.dvc``/``dvc.lock`` output in the workspace references, plus the workspaces of
``purge.keep_repos``. Every older dataset version held the samples a later batch erased, so none of them
is kept, and git history (``versioning.git_commit: true``) is deliberately *not* a keep root: old
``data.dvc`` files stay in git as pointers (md5, size, file count: no content), and checking one out
afterwards reports missing cache, which is what erasure means.

Order of one purge (docs/erasure.md):

0. tombstones still holding bare content hashes (written before keyed hashes) are keyed, as a new DVC
   version of ``data/`` (a standalone purge of an older project; a batch's erase already wrote them keyed);
1. ``dvc push`` (the remote must hold the version that is kept), list the keep set, open every object
   of the cache and refuse, before deleting anything, if a kept object holds erased content; check that
   every dataset copy under ``artifacts/`` can be stripped with this key;
2. (drill point) everything so far can be rolled back;
3. ``dvc gc --workspace --cloud``: the commit point, nothing deleted can come back;
4. every dataset-version copy under ``artifacts/`` (``prepared``, the benchmark's ``bench/<dataset>``) is
   rewritten without the erased samples (``purge.prepared: strip``); temporary files of other batches
   (``state/candidates``) and half-written version folders holding erased content are deleted;
5. models trained on erased samples lose their weights once superseded for ``purge.models`` days
   (registry versions in MLflow, cached models under ``artifacts/``): :mod:`forgetflow.retention`;
6. every remaining object of the DVC cache and remote, ``data/``, ``artifacts/``, ``state/``, ``.dvc/tmp``
   and the MLflow artifacts is opened and scanned (:mod:`forgetflow.data.purge`). Erased content in what
   DVC keeps fails the purge (:class:`PurgeIncomplete`); anywhere else the purge does not own, the
   evidence names it (``remaining``) and the receipts carry that, instead of claiming a clean store.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import pipeline, retention
from forgetflow.data import DatasetVersion
from forgetflow.data.purge import MAX_LISTED, ScanReport, Targets, scan_object, strip_erased, targets_of
from forgetflow.data.tombstones import KEY_FILE, TombstoneKey
from forgetflow.errors import DataError, ForgetflowError
from forgetflow.lineage import Erasure
from forgetflow.project import Project
from tasks import versioning

log = logging.getLogger(__name__)
MAX_REMOVED_LISTED = 200
OWNED_STORES = ("dvc-cache", "dvc-remote", "workspace")  # what the purge guarantees; a leak there fails it


class PurgeRefused(ForgetflowError):
    """The purge found a problem before deleting anything; the batch can still roll back."""


class PurgeIncomplete(ForgetflowError):
    """The purge deleted objects but erased content is still stored somewhere (named in the message)."""


def run_purge(project: Project, batch_id: str | None = None, fail_before_delete: bool = False) -> dict[str, Any]:
    """Purge every stored object holding erased samples; return the evidence (see the module docstring).

    Args:
        project: the project.
        batch_id: the batch this purge completes (None for ``forgetflow purge``).
        fail_before_delete: a drill: raise after the checks, before the first deletion.

    Raises:
        PurgeRefused: a kept object holds erased content, or a key does not fit (nothing was deleted).
        PurgeIncomplete: after the deletion, a scan still finds erased content in what DVC keeps.
    """
    start = time.perf_counter()
    now = dt.datetime.now(dt.timezone.utc)
    key = pipeline.tombstone_key(project)
    settings = project.params.purge
    dvc = project.params.versioning.enabled and (project.root / ".dvc").exists()
    use_remote = dvc and settings.remote
    try:
        version = DatasetVersion.load(project.version_dir)
        keyed_now = _key_tombstones(project, version, key, dvc)
        version = DatasetVersion.load(project.version_dir)
        targets = targets_of(version, key)
        copies = _dataset_copies(project)
        for folder in copies:
            DatasetVersion.load(folder).with_keyed_tombstones(key)  # the same key, or refuse now
    except DataError as exc:
        raise PurgeRefused(f"purge refused, nothing deleted: {exc}") from exc
    evidence: dict[str, Any] = {
        "batch_id": batch_id,
        "dataset_version": {"dataset": version.meta["dataset"], "version": version.version,
                            "fingerprint": version.fingerprint, "dvc_md5": versioning.data_md5(project)},
        "keep": {"rule": "workspace", "keep_repos": list(settings.keep_repos), "git_history": "not kept",
                 "remote": use_remote, "dvc": dvc},
        "tombstones": {"hash": "hmac-sha256", "key_id": key.key_id,
                       "key_source": "environment" if key.source == "environment" else "state file",
                       "keyed_now": keyed_now},
    }

    # 1. checks that can still fail safely
    holding: dict[str, int] = {}
    before: dict[str, list[str]] = {"cache": [], "remote": []}
    if dvc:
        if use_remote:
            versioning.push(project)
        kept = set(versioning.kept_objects(project))
        pre = ScanReport(targets)
        leaking_kept = []
        for scan in pre.scan_all("cache", versioning.read_objects(project, "cache")):
            before["cache"].append(scan.name)
            if scan.hits:
                holding[_oid(scan.name)] = len(scan.hits)
                if _oid(scan.name) in kept:
                    leaking_kept.append(f"{_oid(scan.name)} ({scan.kind}, {len(scan.hits)} erased hash(es))")
        if leaking_kept:
            raise PurgeRefused(f"purge refused, nothing deleted: an object the workspace keeps holds erased content: "
                               f"{', '.join(leaking_kept[:3])}")
        if use_remote:
            before["remote"] = versioning.stored_objects(project, "remote")
        evidence["keep"]["objects"] = len(kept)
    if fail_before_delete:
        raise RuntimeError("injected failure in step 'purge' after its checks, before the first deletion (drill)")

    # 2. the commit point
    removed: dict[str, Any] = {}
    if dvc:
        versioning.collect_garbage(project, use_remote, list(settings.keep_repos))
        for store in ("cache", "remote") if use_remote else ("cache",):
            gone = sorted(set(before[store]) - set(versioning.stored_objects(project, store)))
            removed[store] = {"count": len(gone), "objects": [_oid(n) for n in gone[:MAX_REMOVED_LISTED]]}
        gone_ids = {_oid(n) for n in before["cache"]} - {_oid(n) for n in versioning.stored_objects(project, "cache")}
        removed["holding_erased_content"] = {"objects": len(gone_ids & set(holding)),
                                             "erased_hashes": sum(holding[o] for o in gone_ids & set(holding))}
    evidence["removed"] = removed

    # 3. copies of dataset versions, temporary files, models
    evidence["copies"] = {_rel(project, f): (_strip_copy(f, version, targets) if settings.prepared == "strip"
                                             else {"action": "kept (purge.prepared: keep)"}) for f in copies}
    evidence["prepared"] = evidence["copies"].get(_rel(project, project.prepared_dir), {"action": "absent"})
    evidence["temporary"] = _remove_temporary(project, batch_id, targets)
    evidence["models"] = purge_models(project, version, batch_id, now)

    # 4. scan everything that remains
    report = scan_stores(project, targets)
    evidence["scan"] = report.to_dict()
    evidence["remaining"] = _remaining(report, evidence["models"]) + _links(project)
    evidence["at"] = now.isoformat()
    evidence["seconds"] = round(time.perf_counter() - start, 3)
    owned = report.leaks_in(OWNED_STORES)
    if owned:
        raise PurgeIncomplete(f"purge incomplete: {_describe_findings(owned)}")
    if evidence["remaining"]:
        log.warning("purge: erased data remains where the purge does not clean it: %s",
                    "; ".join(r["object"] + " (" + r["what"] + ")" for r in evidence["remaining"][:3]))
    return evidence


@task(name="purge", cache_policy=NO_CACHE)
def purge_erased(project: Project, batch_id: str, fail_before_delete: bool = False) -> dict[str, Any]:
    """The flow's purge step (the batch's commit point); returns the evidence every receipt carries."""
    return run_purge(project, batch_id, fail_before_delete)


def scan_only(project: Project) -> dict[str, Any]:
    """Scan every store without deleting anything; list what ``purge.models`` would delete."""
    version = DatasetVersion.load(project.version_dir)
    key = pipeline.tombstone_key(project)
    now = dt.datetime.now(dt.timezone.utc)
    report = scan_stores(project, targets_of(version, key))
    models = purge_models(project, version, None, now, dry_run=True)
    return {"dataset_version": version.version, "scan": report.to_dict(), "models": models,
            "remaining": _remaining(report, models) + _links(project), "at": now.isoformat()}


def scan_stores(project: Project, targets: Targets) -> ScanReport:
    """Open and scan every object of every place the project stores data in (see the module docstring)."""
    from tasks import tracking

    report = ScanReport(targets)
    if project.params.versioning.enabled and (project.root / ".dvc").exists():
        report.scan_all("dvc-cache", versioning.read_objects(project, "cache"))
        if project.params.purge.remote:
            report.scan_all("dvc-remote", versioning.read_objects(project, "remote"))
        report.scan_all("dvc-tmp", _folder_objects(project.root / ".dvc" / "tmp", project.root))
    report.scan_all("workspace", _folder_objects(project.data_dir, project.root))
    report.scan_all("artifacts", _folder_objects(project.artifacts_dir, project.root))
    skip = [project.state_dir / KEY_FILE]
    remote = Path(project.dvc_remote_url)
    if remote.is_absolute():
        skip.append(remote)  # scanned as the DVC remote
    report.scan_all("state", _folder_objects(project.state_dir, project.root, skip))
    mlflow_db = project.tracking_uri[len("sqlite:///"):] if project.tracking_uri.startswith("sqlite:///") else None
    objects = list(_folder_objects(Path(mlflow_db), project.root)) if mlflow_db and Path(mlflow_db).is_file() else []
    report.scan_all("mlflow", [*objects, *tracking.artifact_objects(project)])
    return report


def running_batch(project: Project) -> str | None:
    """The id of a batch that is running now (a standalone purge must not race it), or None."""
    from tasks.claims import ledger

    holder = ledger(project).running_batch()
    return holder["batch_id"] if holder else None


def write_report(project: Project, evidence: dict[str, Any]) -> Path:
    """Keep a standalone purge's evidence under state/reports (a batch's goes into its receipts)."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = project.reports_dir / f"purge-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evidence, indent=1, sort_keys=True) + "\n")
    return path


def describe(evidence: dict[str, Any]) -> str:
    """The human rendering of a purge's (or a scan's) evidence."""
    scan = evidence["scan"]
    lines = []
    removed = evidence.get("removed") or {}
    for store in ("cache", "remote"):
        if store in removed:
            lines.append(f"removed from the DVC {store}: {removed[store]['count']} object(s)")
    if "holding_erased_content" in removed:
        held = removed["holding_erased_content"]
        lines.append(f"  of them holding erased content: {held['objects']} object(s), {held['erased_hashes']} erased hash(es)")
    for folder, copy in (evidence.get("copies") or {}).items():
        lines.append(f"{folder}: {copy['action']}"
                     + (f" ({copy['removed_samples']} sample(s) removed)" if copy.get("removed_samples") else ""))
    temporary = evidence.get("temporary") or {}
    if temporary.get("deleted"):
        lines.append(f"temporary files deleted: {len(temporary['deleted'])}")
    models = evidence.get("models") or {}
    if models:
        lines.append(f"models trained on erased samples (purge.models: {_days(models.get('retention_days'))}): "
                     f"weights deleted {len(models.get('deleted', []))}"
                     + (" (dry run: would delete)" if models.get("dry_run") else "")
                     + f", retained {len(models.get('retained', []))}, unmatched {len(models.get('unmatched', []))}")
        for item in models.get("retained", [])[:5]:
            lines.append(f"  retained: {item['model']} until {item.get('until') or 'further notice'} ({item['why']})")
    lines.append(f"scan for {scan['searched']} erased image(s) by keyed hash (set sha256 {scan['erased_hashes_sha256'][:16]}…, "
                 f"key id {scan.get('key_id', '?')}):")
    for name, store in scan["stores"].items():
        lines.append(f"  {name:11s} {store['objects']:5d} object(s), {store['images_hashed']:7d} image(s) hashed, "
                     f"erased content found: {store['erased_content_found']}, unreadable: {store['unreadable']}, "
                     f"bare-hash mentions: {store.get('bare_hash_mentions', 0)}")
    if scan["exempt_count"]:
        lines.append(f"  exempt: {scan['exempt_count']} erased image(s) whose identical pixels a live sample still holds")
    remaining = evidence.get("remaining") or []
    for item in remaining[:10]:
        lines.append(f"  REMAINS: {item['store']} {item['object']}: {item['what']}; {item['action']}")
    if len(remaining) > 10:
        lines.append(f"  … and {len(remaining) - 10} more (see the JSON evidence)")
    if scan["ok"]:
        lines.append("verdict: no erased content remains" + (" (but see the named records above)" if remaining else ""))
    else:
        lines.append(f"verdict: ERASED CONTENT REMAINS: {_describe_findings(scan['leaks'] + scan['unreadable'])}")
    if evidence.get("report"):
        lines.append(f"evidence: {evidence['report']}")
    return "\n".join(lines)


# ---- the pieces ------------------------------------------------------------------------------------
def _days(value: Any) -> str:
    return "null (never)" if value is None else f"{value:g} day(s)"


def _oid(name: str) -> str:
    """A DVC object id from its path in a store (``files/md5/ab/cdef…`` → ``abcdef…``)."""
    parts = name.split("/")
    return parts[-2] + parts[-1] if len(parts) >= 2 and len(parts[-2]) == 2 else name


def _rel(project: Project, path: Path) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


def _folder_objects(folder: Path, root: Path, skip: list[Path] | None = None) -> Iterator[tuple[str, bytes]]:
    if not folder.exists():
        return
    skipped = [s.resolve() for s in skip or []]
    files = folder.rglob("*") if folder.is_dir() else [folder]
    for path in sorted(p for p in files if p.is_file() and not p.is_symlink()):
        resolved = path.resolve()
        if any(resolved == s or s in resolved.parents for s in skipped):
            continue
        try:
            data = path.read_bytes()
        except OSError:  # removed while we listed (a temporary file): nothing left to scan
            continue
        try:
            name = str(path.relative_to(root))
        except ValueError:
            name = str(path)
        yield name, data


def _links(project: Project) -> list[dict[str, Any]]:
    """Symbolic links inside the scanned folders: not followed (their targets belong to someone else), so named."""
    out = []
    for store, folder in (("workspace", project.data_dir), ("artifacts", project.artifacts_dir),
                          ("state", project.state_dir)):
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            if path.is_symlink():
                out.append({"store": store, "object": _rel(project, path),
                            "what": f"symbolic link to {path.readlink()}, not followed",
                            "action": "its target was neither scanned nor purged: purge it where it lives"})
    return out


def _describe_findings(found: list[dict[str, Any]]) -> str:
    parts = [f"{f['store']} object {f['object']} " + (f"({f['kind']}) holds {f['hashes']} erased hash(es)"
                                                       if "hashes" in f else f"cannot be read ({f.get('error')})")
             for f in found[:3]]
    return "; ".join(parts) + (f" (+{len(found) - 3} more)" if len(found) > 3 else "")


def _key_tombstones(project: Project, version: DatasetVersion, key: TombstoneKey, dvc: bool) -> int:
    """Tombstones of the current version written with bare hashes are keyed (a new DVC object); returns how many."""
    keyed = version.with_keyed_tombstones(key)
    if keyed is version:
        return 0
    count = int(len(version.erased))
    keyed.write(project.version_dir)
    if dvc:
        versioning.track_and_push(project)
    log.warning("purge: %d tombstone(s) of %s held bare content hashes; keyed with key id %s", count,
                version.label, key.key_id)
    return count


def _dataset_copies(project: Project) -> list[Path]:
    """Every dataset-version folder under ``artifacts/`` (``prepared``, ``bench/<dataset>``, …), not hidden ones."""
    root = project.artifacts_dir
    if not root.exists():
        return []
    found = []
    for meta in sorted(root.rglob("version.json")):
        folder = meta.parent
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue  # a half-written temporary folder: see _remove_temporary
        if (folder / "samples.parquet").exists():
            found.append(folder)
    return found


def _strip_copy(folder: Path, current: DatasetVersion, targets: Targets) -> dict[str, Any]:
    copy = DatasetVersion.load(folder)
    stripped = strip_erased(copy, current, targets)
    if stripped is None:
        return {"action": "unchanged", "samples": len(copy.table)}
    removed = len(copy.table) - len(stripped.table)
    stripped.write(folder)
    return {"action": "stripped" if removed else "tombstones keyed", "removed_samples": removed,
            "samples": len(stripped.table), "fingerprint": stripped.fingerprint}


def _remove_temporary(project: Project, batch_id: str | None, targets: Targets) -> dict[str, Any]:
    """Delete what interrupted work left: candidate models of other batches, half-written versions with erased data.

    ``state/candidates/<batch>*.pt`` are the unlearned or retrained models of a batch until it ends; one of
    another batch is a leftover (the purge runs under the batch lock, so no other batch is running) and may
    hold erased data. Hidden ``.<name>.*`` folders next to a dataset version are what an interrupted atomic
    write left; those that hold erased content go.
    """
    deleted = []
    candidates = project.state_dir / "candidates"
    for path in sorted(candidates.glob("*")) if candidates.exists() else []:
        if path.is_file() and not (batch_id and path.name.startswith(batch_id)):
            path.unlink(missing_ok=True)
            deleted.append(_rel(project, path))
    for top in (project.data_dir, project.artifacts_dir):
        for folder in sorted(top.rglob(".*")) if top.exists() else []:
            if not folder.is_dir() or not ((folder / "shards").exists() or (folder / "samples.parquet").exists()):
                continue
            if any(scan_object(n, d, targets).hits for n, d in _folder_objects(folder, project.root)):
                shutil.rmtree(folder, ignore_errors=True)
                deleted.append(_rel(project, folder))
    return {"deleted": deleted}


def _remaining(report: ScanReport, models: dict[str, Any]) -> list[dict[str, Any]]:
    """What the purge leaves in place although it holds or names erased data, each with what to do about it."""
    out = []
    for leak in report.leaks:
        out.append({"store": leak["store"], "object": leak["object"],
                    "what": f"erased content ({leak['kind']}, {leak['hashes']} image(s))",
                    "action": "not a file the purge rewrites: delete or rewrite it, then run `forgetflow purge --scan-only`"})
    for bad in report.unreadable:
        out.append({"store": bad["store"], "object": bad["object"], "what": f"unreadable ({bad['error']})",
                    "action": "could not be checked: repair or delete it, then run `forgetflow purge --scan-only`"})
    for bare in report.bare:
        out.append({"store": bare["store"], "object": bare["object"],
                    "what": f"names {bare['hashes']} erased image(s) by bare content hash ({bare['kind']})",
                    "action": "no pixels, but whoever holds such an image can confirm it was erased; written before "
                              "keyed hashes (a manifest's hash is in its receipts, so it is not rewritten)"})
    for item in models.get("retained", []):
        out.append({"store": item.get("store", "models"), "object": item["model"],
                    "what": "model weights trained on erased samples",
                    "action": f"retained until {item.get('until') or 'further notice'}: {item['why']}"})
    for item in models.get("not_deleted", []):
        out.append({"store": item.get("store", "models"), "object": item["model"],
                    "what": "model weights trained on erased samples", "action": f"deletion failed: {item['why']}"})
    return out


# ---- models ----------------------------------------------------------------------------------------
def _utc(value: Any) -> dt.datetime | None:
    if value is None or value == "":
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def history(project: Project, current: DatasetVersion, now: dt.datetime) -> list[retention.VersionRecord]:
    """The dataset's versions (ledger rows plus the current one, which a running batch has not recorded yet)."""
    from tasks.claims import ledger

    rows = {int(r["version"]): r for r in ledger(project).versions(str(current.meta["dataset"]))}
    out = []
    for number, row in sorted(rows.items()):
        out.append(retention.VersionRecord(number, str(row["fingerprint"]), row.get("batch_id"), _utc(row.get("created_at")),
                                           _manifest_sha(project, row.get("batch_id"))))
    if current.version not in rows:
        out.append(retention.VersionRecord(current.version, current.fingerprint, current.meta.get("batch_id"), now,
                                           _manifest_sha(project, current.meta.get("batch_id"))))
    if current.meta.get("parent_fingerprint") and current.version - 1 not in rows:
        out.append(retention.VersionRecord(current.version - 1, str(current.meta["parent_fingerprint"])))
    return out


def _manifest_sha(project: Project, batch_id: str | None) -> str | None:
    if not batch_id:
        return None
    path = pipeline.manifest_path(project, str(batch_id))
    try:
        return str(json.loads(path.read_text()).get("sha256") or "") or None
    except (OSError, json.JSONDecodeError):
        return None


def purge_models(project: Project, current: DatasetVersion, batch_id: str | None, now: dt.datetime,
                 dry_run: bool = False) -> dict[str, Any]:
    """Delete the weights of models trained on erased samples once superseded for ``purge.models`` days.

    Registered versions (lineage, ``forgetflow.superseded_at``; an alias keeps them) and cached models under
    ``artifacts/`` (their ``.json`` meta against the version history). Metadata stays: the registry version,
    its tags and run; the cache's ``.json`` (marked with when and why its weights went). Returns the evidence:
    ``deleted``, ``retained`` (with until when and why), ``unmatched`` (models whose training data is unknown,
    left alone), ``not_deleted`` (a deletion that failed).
    """
    days = project.params.purge.models
    out: dict[str, Any] = {"retention_days": days, "dry_run": dry_run, "deleted": [], "retained": [],
                           "unmatched": [], "not_deleted": [], "already_deleted": 0}
    by = f"purge of batch {batch_id}" if batch_id else "forgetflow purge"
    _registry_models(project, current, now, days, by, dry_run, out)
    _cached_models(project, current, now, days, by, dry_run, out)
    for name in ("deleted", "retained", "unmatched", "not_deleted"):
        out[f"{name}_count"] = len(out[name])
        out[name] = out[name][:MAX_REMOVED_LISTED]
    return out


def _registry_models(project: Project, current: DatasetVersion, now: dt.datetime, days: float | None, by: str,
                     dry_run: bool, out: dict[str, Any]) -> None:
    from forgetflow import lineage
    from tasks import lineage as lineage_tasks
    from tasks import tracking

    if not tracking.store_exists(project):
        return
    try:
        listed = tracking.versions(project)
    except Exception as exc:  # noqa: BLE001 - no registry reachable: say so, delete nothing there
        out["not_deleted"].append({"store": "mlflow", "model": "registry", "why": f"registry not readable: {exc}"})
        return
    if not listed:
        return
    records = {v["version"]: lineage.ModelRecord.from_registry(v) for v in listed}
    gone = lineage_tasks.erasures(project, _pending_erasure(current))
    aliases = {tracking.alias_version(project, a): a for a in (tracking.CHAMPION, tracking.CHALLENGER)}
    for entry in listed:
        version, tags = entry["version"], entry["tags"]
        held = lineage.held(version, records, gone)
        if not held:
            continue
        if tags.get(tracking.WEIGHTS_PURGED_TAG, "").startswith("20"):
            out["already_deleted"] += 1
            continue
        model = f"registry version {version}"
        decision = retention.decide(_utc(tags.get("forgetflow.superseded_at")), days, now, aliases.get(version))
        item = {"store": "mlflow", "model": model, "role": records[version].role, "holds_data_erased_by": held[:MAX_LISTED]}
        if decision.action == "retain":
            out["retained"].append({**item, "until": decision.until.isoformat(timespec="seconds") if decision.until else None,
                                    "why": decision.why})
            continue
        if dry_run:
            out["deleted"].append({**item, "why": decision.why})
            continue
        try:
            done = tracking.purge_version_weights(project, version, by, f"held data erased by batch {held[0]}")
        except Exception as exc:  # noqa: BLE001 - name it; the rest of the purge goes on
            out["not_deleted"].append({**item, "why": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        if done["not_deleted"]:
            out["not_deleted"].append({**item, "why": "the artifact store kept " + ", ".join(done["not_deleted"][:3])})
        else:
            out["deleted"].append({**item, "artifacts": done["deleted"], "why": decision.why})


def _pending_erasure(current: DatasetVersion) -> Erasure | None:
    batch = current.meta.get("batch_id")
    if not batch:
        return None
    samples = int((current.erased["batch_id"] == batch).sum()) if len(current.erased) else 0
    return Erasure(str(batch), current.version, samples)


def _cached_models(project: Project, current: DatasetVersion, now: dt.datetime, days: float | None, by: str,
                   dry_run: bool, out: dict[str, Any]) -> None:
    from forgetflow import lineage
    from tasks import lineage as lineage_tasks
    from tasks import tracking

    root = project.artifacts_dir
    weights = sorted(p for p in root.rglob("*.pt") if p.is_file()) if root.exists() else []
    if not weights:
        return
    known = history(project, current, now)
    registry: dict[str, Any] | None = None
    for path in weights:
        rel = _rel(project, path)
        meta_path = path.with_suffix(".json")
        meta = _read_json(meta_path)
        item: dict[str, Any] = {"store": "artifacts", "model": rel}
        if "data" not in meta and meta.get("key"):  # artifacts/models/oracle.pt names its cache entry
            meta = {**_read_json(project.oracle_dir / f"{meta['key']}.json"), **{k: v for k, v in meta.items() if k != "key"}}
        if meta.get("data"):
            holding = retention.cached_holding(meta, known)
            if holding.status == "unknown":
                out["unmatched"].append({**item, "why": "trained on data the dataset's version history does not know "
                                                        "(another dataset or a benchmark scenario's variant)"})
                continue
            if holding.status == "clean":
                continue
            held, since = holding.batches, holding.since
        elif meta.get("model_version"):  # artifacts/models/original.pt: the copy of a registered version
            if registry is None:
                try:
                    listed = tracking.versions(project) if tracking.store_exists(project) else []
                except Exception:  # noqa: BLE001 - unreadable registry: the copy cannot be matched
                    listed = []
                registry = {"records": {v["version"]: lineage.ModelRecord.from_registry(v) for v in listed},
                            "tags": {v["version"]: v["tags"] for v in listed},
                            "gone": lineage_tasks.erasures(project, _pending_erasure(current))}
            version = str(meta["model_version"])
            if version not in registry["records"]:
                out["unmatched"].append({**item, "why": f"names registry version {version}, which does not exist"})
                continue
            held = lineage.held(version, registry["records"], registry["gone"])
            if not held:
                continue
            since = _utc(registry["tags"][version].get("forgetflow.superseded_at"))
        else:
            out["unmatched"].append({**item, "why": f"no meta ({meta_path.name}) says what it was trained on"})
            continue
        decision = retention.decide(since, days, now)
        item["holds_data_erased_by"] = held[:MAX_LISTED]
        if decision.action == "retain":
            out["retained"].append({**item, "until": decision.until.isoformat(timespec="seconds") if decision.until else None,
                                    "why": decision.why})
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
            if meta_path.exists():
                marked = {**_read_json(meta_path), "weights_purged_at": now.isoformat(timespec="seconds"),
                          "weights_purged_by": f"{by}: held data erased by batch {held[0]}"}
                tmp = meta_path.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(marked, indent=2, sort_keys=True) + "\n")
                tmp.replace(meta_path)
        out["deleted"].append({**item, "why": decision.why})


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}
