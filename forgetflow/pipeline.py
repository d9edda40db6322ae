"""The pure steps of forgetflow's jobs, which ``tasks/`` wrap and ``flows/`` chain.

Nothing here talks to MLflow, DVC, Great Expectations or Prefect: these functions read and write the
project's own files (dataset versions, manifests, the model cache) and compute.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from forgetflow.data import DatasetVersion, Manifest, RequestRef, build_splits, load_version, prepare_version, resolve
from forgetflow.data.purge import strip_erased, targets_of
from forgetflow.data.splits import Splits
from forgetflow.data.tombstones import TombstoneKey, load_key
from forgetflow.errors import DataError
from forgetflow.ledger.reasons import CORRUPTION_REASONS
from forgetflow.methods import METHODS, data_for
from forgetflow.methods.cost import Sizes, measure_seconds_per_pass, predict, retrain_passes
from forgetflow.models import clone, same_architecture
from forgetflow.oracle import TrainedModel, is_cached, train_cached
from forgetflow import recipes
from forgetflow.project import Project
from forgetflow.runtime import Reporter, RunContext, resolve_device
from forgetflow.scenarios import REASON_PRESET
from forgetflow.training import Recipe

log = logging.getLogger(__name__)


# ---- data ---------------------------------------------------------------------------------------
def prepare(project: Project, force: bool = False) -> DatasetVersion:
    """Build version 1 from the raw files into ``artifacts/prepared`` (the ``prepare`` stage's output).

    Samples erased so far (the current version's tombstones) are left out when ``purge.prepared`` is
    ``strip``, as the purge leaves this folder: preparing again never brings an erased sample back.
    """
    if not force and (project.prepared_dir / "version.json").exists():
        return load_version(project.prepared_dir)
    version = prepare_version(project.params.data, project.root, project.params.seed)
    if project.params.purge.prepared == "strip" and (project.version_dir / "version.json").exists():
        current = load_version(project.version_dir)
        version = strip_erased(version, current, targets_of(current, tombstone_key(project))) or version
    version.write(project.prepared_dir)
    return version


def current_version(project: Project, create: bool = True) -> DatasetVersion:
    """The current dataset version under ``data/current``; created from the prepared one when absent."""
    if (project.version_dir / "version.json").exists():
        return load_version(project.version_dir)
    if not create:
        raise DataError(f"{project.version_dir}: no dataset version yet (run `forgetflow data prepare`)")
    prepared = prepare(project)
    project.version_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = project.version_dir.parent / ".current.init"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(prepared.root, tmp)
    tmp.replace(project.version_dir)
    return load_version(project.version_dir)


def version_row(version: DatasetVersion, dvc_md5: str | None, batch_id: str | None) -> dict[str, Any]:
    """The ledger's record of a dataset version."""
    import datetime as dt

    return {"dataset": version.meta["dataset"], "version": version.version, "fingerprint": version.fingerprint,
            "dvc_md5": dvc_md5, "parent": version.meta.get("parent_version"), "batch_id": batch_id,
            "train_samples": int(version.meta["counts"].get("train", 0)), "erased_total": int(version.meta["erased"]),
            "created_at": dt.datetime.now(dt.timezone.utc)}


# ---- models -------------------------------------------------------------------------------------
def recipe(project: Project) -> Recipe:
    """The project's training recipe (the original's, the oracle's and the references')."""
    return recipes.training_recipe(project.params)


def arch(project: Project, version: DatasetVersion) -> tuple[str, dict[str, Any]]:
    """The architecture name and config for models of this project on this dataset version."""
    return recipes.architecture(project.params, version)


def train_original(project: Project, version: DatasetVersion, progress: bool | None = None,
                   report: Reporter | None = None) -> TrainedModel:
    """Train (or load from the cache) the original model on the version's whole training split."""
    name, config = arch(project, version)
    train = version.sample_set(split="train")
    return train_cached("original", train, version.fingerprint, "", name, config, recipe(project), project.params.seed,
                        project.oracle_dir, project.params.train.device,
                        project.params.train.progress if progress is None else progress,
                        project.params.train.deterministic, report)


def train_oracle(project: Project, version: DatasetVersion, manifest_sha256: str, splits: Splits,
                 progress: bool | None = None) -> TrainedModel:
    """The retrained oracle: the original's recipe on the retain set, cached by (version, manifest, recipe, seed)."""
    name, config = arch(project, version)
    return train_cached("oracle", splits.retain, version.fingerprint, manifest_sha256, name, config, recipe(project),
                        project.params.seed, project.oracle_dir, project.params.train.device,
                        project.params.train.progress if progress is None else progress,
                        project.params.train.deterministic)


def retrain_current(project: Project, version: DatasetVersion, progress: bool | None = None) -> TrainedModel:
    """Retrain from scratch on a version's whole training split: the oracle of every erasure so far."""
    name, config = arch(project, version)
    return train_cached("oracle", version.sample_set(split="train"), version.fingerprint, f"erased:{version.meta['erased']}",
                        name, config, recipe(project), project.params.seed, project.oracle_dir,
                        project.params.train.device, project.params.train.progress if progress is None else progress,
                        project.params.train.deterministic)


def _oracle_key(project: Project, version: DatasetVersion) -> tuple[str, str, str]:
    """The cache entry (role, data fingerprint, excluded hash) of a model trained on ``version``'s training split.

    Version 1 has the original's training samples. A version made by a batch has exactly the training samples
    of that batch's oracle (its parent's retain set, in the same order), so with the same recipe and seed the
    batch's oracle is this version's oracle. Any other version gets a key of its own.
    """
    if not version.meta.get("erased"):
        return "original", version.fingerprint, ""
    batch, parent = version.meta.get("batch_id"), version.meta.get("parent_fingerprint")
    manifest = manifest_path(project, batch) if batch else None
    if parent and manifest is not None and manifest.exists():
        return "oracle", parent, Manifest.read(manifest).sha256
    return "oracle", version.fingerprint, f"erased:{version.meta['erased']}"


def oracle_of_current(project: Project, version: DatasetVersion, train: bool = True) -> TrainedModel | None:
    """The oracle of every erasure up to ``version``, reusing the equal cached model (see :func:`_oracle_key`).

    With ``train=False`` it returns None instead of training when nothing equal is cached.
    """
    role, fingerprint, excluded = _oracle_key(project, version)
    name, config = arch(project, version)
    if not train and not is_cached(role, fingerprint, excluded, name, config, recipe(project), project.params.seed,
                                   project.oracle_dir):
        return None
    return train_cached(role, version.sample_set(split="train"), fingerprint, excluded, name, config, recipe(project),
                        project.params.seed, project.oracle_dir, project.params.train.device,
                        project.params.train.progress, project.params.train.deterministic)


def write_oracle(project: Project, train: bool = True) -> tuple[DatasetVersion, dict[str, Any]] | None:
    """Write the current version's oracle as ``models/oracle.pt`` and ``models/oracle.json`` (the
    ``train_oracle`` stage's outputs); returns the version and what the JSON holds.

    With ``train=False`` it writes only a cached oracle and returns None when there is none.
    """
    import json

    from forgetflow.models import save_checkpoint
    from forgetflow.runtime import resolve_device
    from forgetflow.training import accuracy

    version = current_version(project, create=False)
    trained = oracle_of_current(project, version, train)
    if trained is None:
        return None
    save_checkpoint(trained.model, project.models_dir / "oracle.pt")
    device = resolve_device(project.params.train.device)
    info = {"key": trained.key, "cached": trained.cached, "train_seconds": trained.seconds,
            "dataset_version": version.version, "erased_total": version.meta["erased"],
            "test_acc": accuracy(trained.model, version.sample_set(split="test"), device=device)}
    (project.models_dir / "oracle.json").write_text(json.dumps(info, indent=1) + "\n")
    return version, info


# ---- manifests ----------------------------------------------------------------------------------
def resolve_requests(version: DatasetVersion, batch_id: str, requests: Sequence[dict[str, Any]],
                     key: TombstoneKey | None = None) -> Manifest:
    refs = [RequestRef(r["request_id"], r["reason"], r.get("subject_id"), r.get("sample_id")) for r in requests]
    return resolve(version, batch_id, refs, key)


def tombstone_key(project: Project) -> TombstoneKey:
    """The project's tombstone key (``FORGETFLOW_TOMBSTONE_KEY``, else ``state/tombstone.key``, created on first use)."""
    return load_key(project.state_dir)


def manifest_path(project: Project, batch_id: str) -> Path:
    return project.manifests_dir / f"{batch_id}.json"


def demo_requests(version: DatasetVersion, now: str) -> list[dict[str, Any]]:
    """A handful of sample requests for the demo: three data subjects (privacy), one mislabelled training
    sample, and one request for a test-split sample that validation must quarantine."""
    subjects = version.subjects()
    train = version.rows("train")
    owned = train[train["subject_id"].isin(subjects[:3])]
    spare = train[~train.index.isin(owned.index)]
    rows = [{"request_id": f"demo-{i + 1:03d}", "subject_id": s, "sample_id": "", "reason": "privacy",
             "received_at": now} for i, s in enumerate(subjects[:3])]
    rows.append({"request_id": "demo-004", "subject_id": "", "sample_id": str(spare["sample_id"].iloc[-1]),
                 "reason": "mislabelled", "received_at": now})
    rows.append({"request_id": "demo-005", "subject_id": "", "sample_id": str(version.rows("test")["sample_id"].iloc[0]),
                 "reason": "other", "received_at": now})
    return rows


def write_demo_requests(project: Project, version: DatasetVersion, now: str) -> Path:
    """The demo's requests as a CSV under ``state/``, written once, so that a rerun files the very same
    requests (which the ledger accepts once)."""
    import csv

    path = project.state_dir / "demo-requests.csv"
    if not path.exists():
        rows = demo_requests(version, now)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


# ---- method choice ------------------------------------------------------------------------------
@dataclass
class Phase:
    """One unlearning pass of a batch: a method, its preset family and the requests it handles."""

    method: str
    preset: str | None
    request_ids: list[str]
    forget_ids: list[str] = field(default_factory=list)


def plan_phases(project: Project, version: DatasetVersion, manifest: Manifest, method: str | None = None) -> list[Phase]:
    """Group the batch's honoured requests by the method that handles them (corruption first).

    ``method`` (or ``unlearn.method`` when not ``auto``) forces one method for every request. Otherwise each
    request's reason picks its method from ``unlearn.by_reason``. The preset family follows the reason
    (corrupted data → ``corrupted``) and, for privacy requests, the shape of the forget set: a whole class →
    ``full-class``; at least 2 % of the training split → ``random``; else ``subject``.
    """
    params = project.params.unlearn
    forced = method or (params.method if params.method != "auto" else None)
    rows = manifest.rows[manifest.rows["request_id"].isin(manifest.valid_request_ids)]
    reasons = rows.groupby("request_id")["reason"].first().to_dict()
    groups: dict[tuple[str, bool], list[str]] = {}
    for rid, reason in sorted(reasons.items()):
        corrupted = reason in CORRUPTION_REASONS
        name = forced or params.by_reason[reason]
        groups.setdefault((name, corrupted), []).append(rid)
    phases = []
    for (name, corrupted), rids in sorted(groups.items(), key=lambda kv: (not kv[0][1], kv[0][0])):
        ids = sorted({s for rid in rids for s in manifest.samples_of(rid)})
        if params.preset is None:
            preset = None
        elif params.preset != "auto":
            preset = params.preset
        else:
            preset = "corrupted" if corrupted else privacy_family(version, ids)
        phases.append(Phase(name, preset, rids, ids))
    # one method for every request: merge its groups into one pass over the whole forget set
    if forced and len(phases) > 1:
        ids = sorted({s for p in phases for s in p.forget_ids})
        preset = phases[0].preset if params.preset != "auto" else (
            "corrupted" if all(p.preset == "corrupted" for p in phases) else privacy_family(version, ids))
        phases = [Phase(forced, preset, sorted(r for p in phases for r in p.request_ids), ids)]
    return phases


def privacy_family(version: DatasetVersion, forget_ids: list[str]) -> str:
    """``full-class``, ``random`` or ``subject``, from the shape of a privacy forget set."""
    train = version.rows("train")
    forget = train[train["sample_id"].isin(forget_ids)]
    if len(forget):
        top = forget["label"].value_counts()
        label, count = int(top.index[0]), int(top.iloc[0])
        class_size = int((train["label"] == label).sum())
        if count >= 0.95 * class_size and count >= 0.95 * len(forget):
            return "full-class"
    if len(forget) >= 0.02 * len(train):
        return "random"
    return REASON_PRESET["privacy"]


# ---- unlearning ---------------------------------------------------------------------------------
@dataclass
class UnlearnOutcome:
    model: nn.Module
    seconds: float
    phases: list[dict[str, Any]]


def phase_config(project: Project, phase: Phase, overrides: dict[str, dict[str, Any]] | None = None):
    """A phase's method config: defaults ← its scenario preset ← params.yaml's section ← ``overrides``."""
    spec = METHODS.get(phase.method)
    section = dict(project.params.unlearn.methods.get(phase.method, {}))
    section.update((overrides or {}).get(phase.method, {}))
    return spec.resolve(phase.preset, section, setting=project.params.unlearn.preset_setting)


def unlearn(project: Project, model: nn.Module, splits: Splits, version: DatasetVersion, phases: Sequence[Phase],
            overrides: dict[str, dict[str, Any]] | None = None, run: RunContext | None = None) -> UnlearnOutcome:
    """Run each phase's method on the model in turn; every phase sees the batch's whole retain set.

    Each phase record says which preset file was applied (or ``none: method defaults``) and carries a
    warning when the method ran outside the scenarios it has presets for.
    """
    run = run or RunContext.create(project.params.seed, project.params.train.device, project.params.train.deterministic)
    reference = clone(model)
    done = []
    total = 0.0
    for i, phase in enumerate(phases):
        spec = METHODS.get(phase.method)
        cfg = phase_config(project, phase, overrides)
        applied = spec.applied_preset(phase.preset, project.params.unlearn.preset_setting)
        if applied["warning"]:
            log.warning("%s", applied["warning"])
        rows = version.table[version.table["sample_id"].isin(phase.forget_ids)].sort_values("sample_id")
        forget = version.sample_set(rows)
        data = data_for(spec, forget, splits.retain, splits.num_classes, recipe(project))
        # several phases report the same keys (unlearn/loss ...): name each phase's curves apart
        phase_run = run if len(phases) == 1 else replace(run, report_fn=_prefixed(run.report_fn, f"phase{i + 1}/"))
        start = time.perf_counter()
        model = spec.unlearn(model, data, cfg, phase_run)
        seconds = time.perf_counter() - start
        total += seconds
        if not same_architecture(model, reference):
            raise DataError(f"method {phase.method!r} returned a model of another architecture")
        done.append({"method": phase.method, "preset": phase.preset, "preset_applied": applied["applied"],
                     "warnings": [applied["warning"]] if applied["warning"] else [], "config": cfg.model_dump(),
                     "requests": phase.request_ids, "forget_samples": len(phase.forget_ids), "seconds": seconds})
    return UnlearnOutcome(model=model.eval(), seconds=total, phases=done)


def cost_estimate(project: Project, model: nn.Module, splits: Splits, phases: Sequence[Phase],
                  overrides: dict[str, dict[str, Any]] | None = None, seconds_per_pass: float | None = None
                  ) -> dict[str, Any]:
    """Predicted seconds of unlearning ``phases`` and of retraining instead, at the model's measured speed.

    Pure prediction (``forgetflow.methods.cost``): each phase's work follows from its method's budget and the
    set sizes; retraining is the recipe's epochs over the retain set; both are priced at the seconds per
    sample pass measured on ``model`` (a copy; unless ``seconds_per_pass`` is given). Nothing is trained.
    """
    speed = seconds_per_pass if seconds_per_pass is not None else measure_seconds_per_pass(
        model, splits.retain, resolve_device(project.params.train.device), project.params.train.batch_size)
    epochs = project.params.train.epochs
    predictions = []
    for phase in phases:
        sizes = Sizes(forget=len(phase.forget_ids), retain=len(splits.retain), recipe_epochs=epochs)
        predictions.append(predict(METHODS.get(phase.method), phase_config(project, phase, overrides), sizes, speed))
    retrain = retrain_passes(Sizes(forget=len(splits.forget), retain=len(splits.retain), recipe_epochs=epochs))
    unlearn_seconds = sum(p.seconds for p in predictions)
    return {"seconds_per_pass": speed, "unlearn_seconds": unlearn_seconds, "retrain_seconds": retrain * speed,
            "phases": [p.as_dict() for p in predictions]}
def _prefixed(report: Reporter, prefix: str) -> Reporter:
    return lambda key, value, step: report(prefix + key, value, step)


def splits_for(version: DatasetVersion, manifest: Manifest) -> Splits:
    """Forget (every honoured sample of the batch) / retain / val / test sets."""
    return build_splits(version, manifest.forget_ids())
