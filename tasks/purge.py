"""The purge task: erased samples leave the DVC cache and remote too, with evidence for the receipts.

DVC has no targeted delete (treeverse/dvc#4218); ``dvc gc`` is keep-based. The keep set is the
**workspace**: every object that ``data.dvc`` (the current dataset version with every forget manifest)
and any other ``.dvc``/``dvc.lock`` output in the workspace references, plus the workspaces of
``purge.keep_repos``. Every older dataset version held the samples a later batch erased, so none of them
is kept, and git history (``versioning.git_commit: true``) is deliberately *not* a keep root: old
``data.dvc`` files stay in git as pointers (md5, size, file count: no content), and checking one out
afterwards reports missing cache, which is what erasure means.

Order of one purge:

1. ``dvc push`` (the remote must hold the version that is kept), list the keep set, open every object
   of the cache and refuse, before deleting anything, if a kept object holds erased content;
2. (drill point) everything so far can be rolled back;
3. ``dvc gc --workspace --cloud``: the commit point, nothing deleted can come back;
4. ``artifacts/prepared`` rewritten without the erased samples (``purge.prepared: strip``);
5. every remaining object of the cache, the remote, the workspace's data folder and the prepared folder
   is opened and scanned (:mod:`forgetflow.data.purge`); any erased hash held as content fails the purge.

Models are not data: cached models trained on superseded versions are listed, not deleted (the registry
side, superseding champions trained on erased data, belongs to promotion).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Iterator

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow import faults
from forgetflow.data import DatasetVersion
from forgetflow.data.purge import MAX_LISTED, ScanReport, strip_erased, targets_of
from forgetflow.errors import ForgetflowError
from forgetflow.project import Project
from tasks import versioning

MAX_REMOVED_LISTED = 200


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
        PurgeRefused: a kept object holds erased content (nothing was deleted).
        PurgeIncomplete: after the deletion, a scan still finds erased content.
    """
    start = time.perf_counter()
    version = DatasetVersion.load(project.version_dir)
    targets = targets_of(version)
    settings = project.params.purge
    dvc = project.params.versioning.enabled and (project.root / ".dvc").exists()
    use_remote = dvc and settings.remote
    evidence: dict[str, Any] = {
        "batch_id": batch_id,
        "dataset_version": {"dataset": version.meta["dataset"], "version": version.version,
                            "fingerprint": version.fingerprint, "dvc_md5": versioning.data_md5(project)},
        "keep": {"rule": "workspace", "keep_repos": list(settings.keep_repos), "git_history": "not kept",
                 "remote": use_remote, "dvc": dvc},
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
        faults.kill_point("purge")  # drill: past the commit point, the evidence not yet gathered
        for store in ("cache", "remote") if use_remote else ("cache",):
            gone = sorted(set(before[store]) - set(versioning.stored_objects(project, store)))
            removed[store] = {"count": len(gone), "objects": [_oid(n) for n in gone[:MAX_REMOVED_LISTED]]}
        gone_ids = {_oid(n) for n in before["cache"]} - {_oid(n) for n in versioning.stored_objects(project, "cache")}
        removed["holding_erased_content"] = {"objects": len(gone_ids & set(holding)),
                                             "erased_hashes": sum(holding[o] for o in gone_ids & set(holding))}
    evidence["removed"] = removed

    # 3. the prepared folder (uncached `prepare` output: version 1 with every sample)
    evidence["prepared"] = _strip_prepared(project, version) if settings.prepared == "strip" else {"action": "kept"}

    # 4. scan everything that remains
    report = ScanReport(targets)
    if dvc:
        report.scan_all("dvc-cache", versioning.read_objects(project, "cache"))
        if use_remote:
            report.scan_all("dvc-remote", versioning.read_objects(project, "remote"))
    report.scan_all("workspace", _folder_objects(project.data_dir, project.root))
    if project.prepared_dir.exists():
        report.scan_all("prepared", _folder_objects(project.prepared_dir, project.root))
    evidence["scan"] = report.to_dict()
    evidence["models"] = _superseded_models(project, version)
    evidence["at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    evidence["seconds"] = round(time.perf_counter() - start, 3)
    if not report.ok:
        raise PurgeIncomplete(f"purge incomplete: {report.describe_problem()}")
    return evidence


@task(name="purge", cache_policy=NO_CACHE)
def purge_erased(project: Project, batch_id: str, fail_before_delete: bool = False) -> dict[str, Any]:
    """The flow's purge step (the batch's commit point); returns the evidence every receipt carries."""
    return run_purge(project, batch_id, fail_before_delete)


def scan_only(project: Project) -> dict[str, Any]:
    """Scan the cache, the remote, the workspace and the prepared folder without deleting anything."""
    version = DatasetVersion.load(project.version_dir)
    report = ScanReport(targets_of(version))
    if project.params.versioning.enabled and (project.root / ".dvc").exists():
        report.scan_all("dvc-cache", versioning.read_objects(project, "cache"))
        if project.params.purge.remote:
            report.scan_all("dvc-remote", versioning.read_objects(project, "remote"))
    report.scan_all("workspace", _folder_objects(project.data_dir, project.root))
    if project.prepared_dir.exists():
        report.scan_all("prepared", _folder_objects(project.prepared_dir, project.root))
    return {"dataset_version": version.version, "scan": report.to_dict(),
            "at": dt.datetime.now(dt.timezone.utc).isoformat()}


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
    if evidence.get("prepared"):
        lines.append(f"artifacts/prepared: {evidence['prepared']['action']}"
                     + (f" ({evidence['prepared']['removed_samples']} sample(s) removed)"
                        if evidence["prepared"].get("removed_samples") else ""))
    lines.append(f"scan for {scan['searched']} erased content hash(es) (set sha256 {scan['erased_hashes_sha256'][:16]}…):")
    for name, store in scan["stores"].items():
        lines.append(f"  {name:11s} {store['objects']:5d} object(s), {store['images_hashed']:7d} image(s) hashed, "
                     f"erased content found: {store['erased_content_found']}, unreadable: {store['unreadable']}")
    if scan["exempt_count"]:
        lines.append(f"  exempt: {scan['exempt_count']} erased hash(es) whose identical pixels a live sample still holds")
    lines.append("verdict: no erased content remains" if scan["ok"] else f"verdict: ERASED CONTENT REMAINS: {scan['leaks'] or scan['unreadable']}")
    if evidence.get("report"):
        lines.append(f"evidence: {evidence['report']}")
    return "\n".join(lines)


def _oid(name: str) -> str:
    """A DVC object id from its path in a store (``files/md5/ab/cdef…`` → ``abcdef…``)."""
    parts = name.split("/")
    return parts[-2] + parts[-1] if len(parts) >= 2 and len(parts[-2]) == 2 else name


def _folder_objects(folder: Path, root: Path) -> Iterator[tuple[str, bytes]]:
    if not folder.exists():
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        yield str(path.relative_to(root)), path.read_bytes()


def _strip_prepared(project: Project, current: DatasetVersion) -> dict[str, Any]:
    folder = project.prepared_dir
    if not (folder / "version.json").exists():
        return {"action": "absent"}
    prepared = DatasetVersion.load(folder)
    stripped = strip_erased(prepared, current.erased)
    if stripped is None:
        return {"action": "unchanged", "samples": len(prepared.table)}
    removed = len(prepared.table) - len(stripped.table)
    stripped.write(folder)
    return {"action": "stripped", "removed_samples": removed, "samples": len(stripped.table),
            "fingerprint": stripped.fingerprint}


def _superseded_models(project: Project, current: DatasetVersion) -> dict[str, Any]:
    """Cached models whose training data is not the current version (they may have seen erased samples)."""
    keys = []
    folder = project.oracle_dir
    for meta_path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("data") and meta.get("data") != current.fingerprint:
            keys.append(meta_path.stem)
    return {"action": "listed, not deleted (models are not data; the registry supersedes champions)",
            "cached_models_keyed_to_superseded_versions": len(keys), "keys": keys[:MAX_LISTED]}
