"""Recovery of batches whose process died: roll back before the commit point, roll forward after it.

A batch (or an oracle audit) holds the ledger's batch lock as a lease (``forgetflow/ledger/lease.py``).
When the lease is stale (expired, or its process is gone on this host) the batch is recovered by whoever
comes next: the start of every deletion batch and oracle audit, the served flows' wait for a running
batch, and ``forgetflow batch recover``. The recoverer first takes the stale lock over (compare-and-swap
on the lease token, so two recoverers never clean up the same batch), then reads the batch's journal in
the ledger and applies one rule:

- **Before the commit point** (no ``commit`` record in the journal) everything is rolled back, as the
  flow's own undo would: registry versions made by the batch deleted (their runs marked rolled back),
  ``champion`` and ``challenger`` put back where the alias history says they were before the batch and
  the batch's alias-history rows removed, its supersession tags and rows and quality rows removed, the
  dataset version put back (``data.dvc`` recorded in the journal before the erase, checked out again),
  its manifest and candidate checkpoints deleted, its Prefect flow run and task runs marked Crashed,
  and its requests pending again (requests quarantined by validation stay quarantined).
- **From the commit point on** (the flow records ``commit`` — manifest, receipt context, batch info — just
  before the purge, after every undoable step succeeded) the batch is rolled *forward*: the purge runs
  again (it is idempotent: a purge that had already deleted the old versions finds nothing more to
  delete and scans again), receipt files the dead process wrote but never recorded are removed, the
  receipts are issued from the journal's context with the new purge evidence and the line
  ``completed_by``, and the ledger records the batch done in one transaction. Nothing before the purge
  can be redone differently, and nothing the purge deleted can come back, so finishing is the only
  consistent outcome.

What no batch owns any longer is tidied by the batch that holds the lock next (:func:`tidy`): candidate
checkpoints, manifests of failed batches, half-written temporary files, the temporary copies a killed
dataset write leaves beside ``data/current``, and Prefect tag-limit slots whose holder is gone.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgetflow.errors import ForgetflowError
from forgetflow.ledger.lease import interrupt_main, owner_id
from forgetflow.project import Project
from tasks import lineage as lineage_tasks
from tasks import tracking, versioning
from tasks.claims import lease_settings, ledger
from tasks.unlearn import GPU_TAG

log = logging.getLogger(__name__)
RECEIPT_NAME = re.compile(r"^(\d{8})-.*\.json$")


@dataclass
class Recovered:
    """One stale batch and what recovery did with it."""

    batch_id: str
    action: str  # "rolled back" | "rolled forward"
    why: str
    done: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.batch_id}: {self.action} ({self.why}): {'; '.join(self.done) or 'nothing else to clean'}"


def recover(project: Project, force: bool = False) -> list[Recovered]:
    """Recover every stale batch (every running one with ``force``); returns what was done.

    Raises:
        ForgetflowError: a batch could not be recovered (its lock stays taken over and goes stale again, so
            the next recovery retries it).
    """
    book = ledger(project)
    settings = lease_settings(project)
    if force:
        holder = book.running_batch()
        holders = [{**holder, "stale": holder["stale"] or "recovered by an operator (--force)"}] if holder else []
    else:
        holders = book.stale_holders(settings["lease_seconds"])
    out = []
    for holder in holders:
        lease = book.take_over(holder["batch_id"], holder["token"], on_lost=interrupt_main, **settings)
        if lease is None:
            log.info("batch %s changed hands while recovering it; left to its new holder", holder["batch_id"])
            continue
        try:
            out.append(_recover_one(project, holder["batch_id"], holder["stale"]))
        except Exception as exc:
            lease.stop()
            raise ForgetflowError(f"batch {holder['batch_id']} could not be recovered ({type(exc).__name__}: {exc}); "
                                  "it is retried by the next recovery") from exc
        except BaseException:  # a signal or Ctrl-C: stop here, the next recovery starts again
            lease.stop()
            raise
    return out


def recover_all(project: Project, force: bool = False) -> dict[str, Any]:
    """``forgetflow batch recover``: recover stale batches, then tidy while holding the lock for a moment.

    Returns ``{"recovered": [sentence, ...], "tidied": [...], "running": batch id or None}``; nothing is
    tidied while a live batch holds the lock (what it owns is not distinguishable from leftovers).
    """
    import datetime as dt
    import uuid

    from forgetflow.errors import LedgerConflict
    from tasks.claims import take_lock

    recovered = recover(project, force)
    book = ledger(project)
    tidy_id = dt.datetime.now(dt.timezone.utc).strftime("tidy-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    try:
        take_lock(project, tidy_id)
    except LedgerConflict:
        holder = book.running_batch()
        return {"recovered": [r.describe() for r in recovered], "tidied": [],
                "running": holder["batch_id"] if holder else None}
    try:
        tidied = tidy(project, tidy_id)
    finally:
        book.end_empty_batch(tidy_id)
    return {"recovered": [r.describe() for r in recovered], "tidied": tidied, "running": None}


def _recover_one(project: Project, batch_id: str, why: str) -> Recovered:
    book = ledger(project)
    journal = book.journal(batch_id)
    row = book.batch(batch_id) or {}
    done: list[str] = []
    try:
        crashed = crash_flow_run(row.get("flow_run_id"), f"batch {batch_id} died ({why}); recovered by {owner_id()}")
    except Exception as exc:  # noqa: BLE001 - Prefect unreachable: the ledger, registry and data still get fixed
        crashed = f"its Prefect flow run was not marked ({type(exc).__name__}: {exc})"
        log.warning("batch %s: %s", batch_id, crashed)
    if crashed:
        done.append(crashed)
    if "commit" in journal:
        return Recovered(batch_id, "rolled forward", why, done + _roll_forward(project, batch_id, journal, why))
    return Recovered(batch_id, "rolled back", why, done + _roll_back(project, batch_id, journal, why))


# ---- rolling back ----------------------------------------------------------------------------------
def _roll_back(project: Project, batch_id: str, journal: dict[str, Any], why: str) -> list[str]:
    book = ledger(project)
    done = _roll_back_registry(project, batch_id)
    rows = [r for r in book.superseded() if r["recorded_in"] == batch_id]
    if rows:
        lineage_tasks.undo_supersede(project, batch_id, rows)
        done.append(f"{len(rows)} supersession(s) undone")
    book.delete_quality(batch_id)
    if "data_before" in journal:
        _remove_dataset_temporaries(project)
        versioning.restore(project, journal["data_before"])
        done.append(f"dataset version restored (data.dvc md5 {versioning.data_md5(project)})")
    for path in [project.manifests_dir / f"{batch_id}.json", *_candidates(project, batch_id)]:
        if path.exists():
            path.unlink()
            done.append(f"removed {path.relative_to(project.root)}")
    released = book.fail_batch(batch_id, f"recovered after its process died ({why}): rolled back by {owner_id()}")
    done.append(f"{released} request(s) pending again")
    return done


def _roll_back_registry(project: Project, batch_id: str) -> list[str]:
    """Delete the batch's model versions, put its aliases back, mark its runs rolled back."""
    book = ledger(project)
    runs = tracking.runs_of(project, batch_id)
    run_ids = {r["run_id"] for r in runs}
    made = [v for v in tracking.versions(project) if v["run_id"] in run_ids]
    ours = {v["version"] for v in made}
    done = []
    name = project.params.tracking.model_name
    history = book.alias_history(name)
    for alias in (tracking.CHAMPION, tracking.CHALLENGER):
        current = tracking.alias_version(project, alias)
        if current is not None and current in ours:
            before = _alias_before(history, alias, batch_id, ours, made)
            tracking.restore_alias(project, alias, before)
            done.append(f"{alias} back to {before or 'nothing'}")
    for version in sorted(ours, key=int):
        tracking.delete_version(project, version)
        done.append(f"model version {version} deleted")
    for run in runs:
        if run["run_id"] not in {v["run_id"] for v in made}:  # delete_version marked the others
            tracking.fail_run(project, run["run_id"])
    book.delete_alias_moves(batch_id)
    return done


def _alias_before(history: list[dict[str, Any]], alias: str, batch_id: str, ours: set[str],
                  made: list[dict[str, Any]]) -> str | None:
    """Where ``alias`` pointed before the batch: its first move by the batch, else the last move before it,
    else (champion only) the version the batch's model descends from or replaces."""
    moves = [m for m in history if m["alias"] == alias]
    mine = [m for m in moves if m["batch_id"] == batch_id]
    if mine:
        return mine[0]["from_version"]
    others = [m for m in moves if m["batch_id"] != batch_id and m["to_version"] not in ours]
    if others:
        return others[-1]["to_version"]
    if alias == tracking.CHAMPION:
        for v in made:
            parent = v["tags"].get("parent_model_version") or v["tags"].get("replaces_model_version")
            if parent and parent not in ours:
                return parent
    return None


# ---- rolling forward --------------------------------------------------------------------------------
def _roll_forward(project: Project, batch_id: str, journal: dict[str, Any], why: str) -> list[str]:
    from tasks.purge import run_purge
    from tasks.receipts import issue_receipts
    from tasks.reporting import write_batch_json

    commit = journal["commit"]
    done = [f"removed {p}" for p in _remove_unrecorded_receipts(project)]
    evidence = run_purge(project, batch_id) if project.params.purge.enabled else {"enabled": False}
    done.append("purge completed" if project.params.purge.enabled else "purge disabled")
    context = {**commit["context"], "purge": evidence,
               "completed_by": f"recovery by {owner_id()} after the batch process died ({why})"}
    written: list[Path] = []
    issued = issue_receipts.fn(project, batch_id, commit["manifest"]["path"], commit["manifest"]["sha256"], context,
                               commit["info"], written)  # anchors the chain's head on the batch's MLflow run too
    done.append(f"{len(issued.paths)} receipt(s) issued, batch recorded done")
    for path in _candidates(project, batch_id):
        path.unlink(missing_ok=True)
    summary = {**commit.get("result", {}), "batch_id": batch_id, "status": "done", "receipts": issued.paths,
               "receipts_anchor": issued.anchor, "purge": evidence, "manifest": commit["manifest"],
               "completed_by": context["completed_by"],
               "report": {"error": "not rendered: the batch was completed by recovery"}}
    write_batch_json(project, summary)
    return done


def _remove_unrecorded_receipts(project: Project) -> list[str]:
    """Receipt files past the ledger's last receipt (written by a batch that died before recording them)."""
    last = ledger(project).last_receipt()
    seq = last["seq"] if last else 0
    removed = []
    folder = project.receipts_dir
    for path in sorted(folder.glob("*")) if folder.exists() else []:
        match = RECEIPT_NAME.match(path.name)
        if path.name.endswith(".tmp") or (match and int(match.group(1)) > seq):
            path.unlink()
            removed.append(str(path.relative_to(project.root)))
    return removed


# ---- what nobody owns any longer ------------------------------------------------------------------
def tidy(project: Project, holding: str) -> list[str]:
    """Remove what dead batches left and no running batch owns; call it holding the batch lock (``holding``).

    Candidate checkpoints of other batches, manifests of failed batches, temporary files of atomic writes
    (``*.tmp``), temporary dataset folders beside ``data/current``, and Prefect tag-limit slots of dead
    holders (:func:`release_dead_slots`).
    """
    book = ledger(project)
    removed: list[Path] = []
    folder = project.state_dir / "candidates"
    for path in sorted(folder.glob("*")) if folder.exists() else []:
        if not path.name.startswith(holding):
            removed.append(path)
    if project.manifests_dir.exists():
        for path in sorted(project.manifests_dir.glob("*.json")):
            row = book.batch(path.stem)
            if row is not None and row["state"] == "failed":
                removed.append(path)
    for folder in (project.receipts_dir, project.reports_dir, project.oracle_dir):
        if folder.exists():
            removed.extend(sorted(p for p in folder.rglob("*.tmp") if p.is_file()))
    for path in removed:
        path.unlink(missing_ok=True)
    notes = [f"removed {p.relative_to(project.root)}" for p in removed]
    notes += _remove_dataset_temporaries(project)
    try:
        released = release_dead_slots()
    except Exception as exc:  # noqa: BLE001 - Prefect unreachable: the rest is tidied, the slots next time
        released = f"Prefect tag-limit slots not checked ({type(exc).__name__}: {exc})"
    if released:
        notes.append(released)
    for note in notes:
        log.info("tidy: %s", note)
    return notes


def _remove_dataset_temporaries(project: Project) -> list[str]:
    """The temporary sibling folders of a dataset write that was killed (they hold sample pixels)."""
    current = project.version_dir
    out = []
    for path in sorted(current.parent.glob(f".{current.name}.*")) if current.parent.exists() else []:
        if path.is_dir() and (current.exists() or not path.name.endswith(".old")):
            shutil.rmtree(path, ignore_errors=True)
            out.append(f"removed {path.relative_to(project.root)}")
    return out


def _candidates(project: Project, batch_id: str) -> list[Path]:
    folder = project.state_dir / "candidates"
    return sorted(folder.glob(f"{batch_id}*")) if folder.exists() else []


# ---- Prefect ----------------------------------------------------------------------------------------
def crash_flow_run(flow_run_id: str | None, message: str) -> str | None:
    """Mark a dead batch's Prefect flow run and its unfinished task runs Crashed; a sentence, or None.

    Does nothing when the run is unknown to the Prefect API in use (another server, a wiped database).
    """
    if not flow_run_id:
        return None
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    try:
        run_id = uuid.UUID(flow_run_id)
    except ValueError:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            return None
        marked = 0
        for task_run in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))):
            if task_run.state is None or not task_run.state.is_final():
                client.set_task_run_state(task_run.id, Crashed(message=message), force=True)
                marked += 1
        if run.state is None or not run.state.is_final():
            client.set_flow_run_state(run_id, Crashed(message=message), force=True)
            return f"Prefect flow run {run.name} and {marked} task run(s) marked Crashed"
    return f"{marked} Prefect task run(s) marked Crashed" if marked else None


def release_dead_slots(tags: tuple[str, ...] = (GPU_TAG,)) -> str | None:
    """Give back slots of Prefect tag limits (``tag:<tag>``) that no live task run holds; a sentence, or None.

    forgetflow no longer creates ``tag:gpu`` (GPU slots are lock files: ``forgetflow/gpu_slots.py``), but a
    project made by an earlier version has one, and a batch killed inside a GPU task left its slot taken
    for good (Prefect 3.8.8 keeps the leases that would give it back in the server's memory). A slot counts
    as live when the server holds a lease for it whose task run is Running; if none is live every slot is
    freed (and stale leases revoked), else slots that no lease backs at all are.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    notes = []
    with get_client(sync_client=True) as client:
        for tag in tags:
            try:
                limit = client.read_global_concurrency_limit_by_name(f"tag:{tag}")
            except ObjectNotFound:
                continue
            if not limit.active_slots:
                continue
            holders = list(client.read_concurrency_limit_by_tag(tag).active_slots)
            running = []
            for holder in holders:
                try:
                    state = client.read_task_run(holder).state
                except ObjectNotFound:
                    continue
                if state is not None and state.is_running():
                    running.append(holder)
            if not running:
                client.reset_concurrency_limit_by_tag(tag)  # revokes leases; the count is set below
                keep = 0
            elif limit.active_slots > len(holders):
                keep = len(holders)
            else:
                continue
            client.update_global_concurrency_limit(limit.name, GlobalConcurrencyLimitUpdate(active_slots=keep))
            notes.append(f"Prefect limit {limit.name}: {limit.active_slots - keep} slot(s) of dead holders released")
    return "; ".join(notes) or None


def describe(recovered: list[Recovered]) -> str:
    """The human summary of a recovery."""
    return "\n".join(r.describe() for r in recovered) if recovered else "no stale batch"
