"""MLflow adapter: the only module that imports mlflow.

Sets the tracking URI from params (never at import time), logs runs, registers model versions, moves the
``champion``/``challenger`` aliases and writes every move to the ledger (MLflow keeps no alias history).
Models are logged twice, both without pickled code: as ``checkpoint/checkpoint.pt`` (architecture + weights,
loaded with ``weights_only=True``), which is what forgetflow itself loads, and as the registered MLflow model
``model/``, a ``python_function`` model whose loader is the installed ``forgetflow.models.pyfunc_loader``
reading the same checkpoint (``mlflow.pyfunc.load_model("models:/<name>@champion")``). No artifact is ever
unpickled: the artifact store is a trust boundary (docs/operations.md).

Everything logged (params, tags, documents) goes through ``forgetflow.masking.mask_secrets`` first, so a
password in ``ledger.url`` or a DVC credential in ``versioning.remote_options`` never reaches MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from forgetflow.errors import ForgetflowError
from forgetflow.ledger import Ledger
from forgetflow.masking import mask_secrets
from forgetflow.models import load_checkpoint, save_checkpoint
from forgetflow.project import Project

log = logging.getLogger(__name__)
CHAMPION = "champion"
CHALLENGER = "challenger"
_CONFIGURED: dict[str, str] = {}


def configure(project: Project) -> str:
    """Point MLflow at the project's store and make sure the experiment exists; returns its id."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = project.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    key = f"{uri}|{project.params.tracking.experiment}"
    if key in _CONFIGURED:
        return _CONFIGURED[key]
    name = project.params.tracking.experiment
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        artifact = project.artifact_root.rstrip("/") + f"/{name}"
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact)
    else:
        experiment_id = exp.experiment_id
    _CONFIGURED[key] = experiment_id
    return experiment_id


def client(project: Project):
    from mlflow import MlflowClient

    configure(project)
    return MlflowClient(tracking_uri=project.tracking_uri)


def _pip_requirements() -> list[str]:
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}"]


def log_model_run(
    project: Project,
    model: nn.Module,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    documents: dict[str, Any] | None = None,
    files: dict[str, Path] | None = None,
) -> tuple[str, str]:
    """One MLflow run that logs a model and registers it as a new version; returns (run_id, version)."""
    import mlflow

    experiment_id = configure(project)
    name = project.params.tracking.model_name
    tags = mask_secrets(tags)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({k: _short(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and v == v})
        mlflow.set_tags(tags)
        for path, doc in (documents or {}).items():
            mlflow.log_dict(mask_secrets(doc), path)
        for artifact_dir, file in (files or {}).items():
            mlflow.log_artifact(str(file), artifact_path=artifact_dir)
        version = _log_registered_model(model, name)
    c = client(project)
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)
    return run.info.run_id, version


def _log_registered_model(model: nn.Module, name: str) -> str:
    """Log the model into the active run (``checkpoint/`` and ``model/``) and register it; returns the version.

    ``model/`` is a ``python_function`` model with ``loader_module=forgetflow.models.pyfunc_loader`` and the
    weights-only checkpoint as its data, so loading it never unpickles code from the artifact store.
    """
    import mlflow
    import mlflow.pyfunc

    from forgetflow.models.pyfunc_loader import CHECKPOINT_NAME, LOADER_MODULE

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(model, Path(tmp) / CHECKPOINT_NAME)
        mlflow.log_artifact(str(ckpt), artifact_path="checkpoint")
        info = mlflow.pyfunc.log_model(name="model", loader_module=LOADER_MODULE, data_path=str(ckpt),
                                       pip_requirements=_pip_requirements(), registered_model_name=name)
    return str(info.registered_model_version)


def _short(value: Any) -> str:
    value = mask_secrets(value)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def alias_version(project: Project, alias: str) -> str | None:
    """The version behind an alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client(project).get_model_version_by_alias(project.params.tracking.model_name, alias).version)
    except MlflowException:
        return None


def version_info(project: Project, version: str) -> dict[str, Any]:
    """Run id, tags and source of a model version."""
    mv = client(project).get_model_version(project.params.tracking.model_name, version)
    return {"version": str(mv.version), "run_id": mv.run_id, "tags": dict(mv.tags), "source": mv.source,
            "aliases": list(mv.aliases)}


def load_version_model(project: Project, version: str, device: str = "cpu") -> nn.Module:
    """Rebuild a registered version's model from its checkpoint artifact (weights only)."""
    import mlflow

    info = version_info(project, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=info["run_id"], artifact_path="checkpoint/checkpoint.pt",
                                                   dst_path=tmp)
        return load_checkpoint(Path(path), device)


def run_metrics(project: Project, run_id: str) -> dict[str, float]:
    return dict(client(project).get_run(run_id).data.metrics)


def move_alias(project: Project, ledger: Ledger, alias: str, version: str | None, reason: str, actor: str,
               batch_id: str | None = None) -> str | None:
    """Point ``alias`` at ``version`` (None removes it); record the move; return the previous version."""
    name = project.params.tracking.model_name
    previous = alias_version(project, alias)
    if previous == version:
        return previous
    c = client(project)
    if version is None:
        c.delete_registered_model_alias(name, alias)
    else:
        c.set_registered_model_alias(name, alias, version)
    ledger.record_alias_move(name, alias, previous, version, reason, actor, batch_id)
    return previous


def restore_alias(project: Project, alias: str, version: str | None) -> None:
    """Put an alias back where it was (rollback of a failed batch; the ledger rows are removed separately)."""
    name = project.params.tracking.model_name
    c = client(project)
    if version is None:
        if alias_version(project, alias) is not None:
            c.delete_registered_model_alias(name, alias)
    else:
        c.set_registered_model_alias(name, alias, version)


def delete_version(project: Project, version: str) -> None:
    """Remove a model version (rollback of a failed batch) and mark its run as rolled back."""
    c = client(project)
    info = version_info(project, version)
    c.delete_model_version(project.params.tracking.model_name, version)
    c.set_tag(info["run_id"], "forgetflow.rolled_back", "true")
    c.set_terminated(info["run_id"], status="FAILED")


def versions(project: Project) -> list[dict[str, Any]]:
    """Every registered version with its aliases and tags, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        found = client(project).search_model_versions(f"name='{project.params.tracking.model_name}'")
    except MlflowException:
        return []
    return sorted(({"version": str(v.version), "run_id": v.run_id, "aliases": list(v.aliases), "tags": dict(v.tags),
                    "created_ms": int(v.creation_timestamp or 0)}
                   for v in found), key=lambda v: int(v["version"]))


def set_version_tags(project: Project, version: str, tags: dict[str, str]) -> None:
    """Tag a model version (e.g. ``forgetflow.superseded_by``, ``gates``)."""
    c = client(project)
    for key, value in tags.items():
        c.set_model_version_tag(project.params.tracking.model_name, version, key, str(value))


def delete_version_tags(project: Project, version: str, keys: list[str]) -> None:
    """Remove tags from a model version (undo of a rolled-back batch); missing tags are ignored."""
    from mlflow.exceptions import MlflowException

    c = client(project)
    for key in keys:
        try:
            c.delete_model_version_tag(project.params.tracking.model_name, version, key)
        except MlflowException:
            pass


def log_run_file(project: Project, run_id: str, path: Path, artifact_path: str | None = None) -> None:
    """Attach a file to an existing (possibly finished) run, e.g. a batch report."""
    client(project).log_artifact(run_id, str(path), artifact_path=artifact_path)


def log_run(project: Project, run_name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str],
            files: dict[str, Path] | None = None) -> str:
    """A run without a model (an oracle audit that replaced nothing); returns its id."""
    import mlflow

    experiment_id = configure(project)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({k: _short(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and v == v})
        mlflow.set_tags(mask_secrets(tags))
        for artifact_dir, file in (files or {}).items():
            mlflow.log_artifact(str(file), artifact_path=artifact_dir)
    return run.info.run_id


def require_champion(project: Project) -> str:
    version = alias_version(project, CHAMPION)
    if version is None:
        raise ForgetflowError(
            f"no model holds alias {CHAMPION!r} in registry {project.params.tracking.model_name!r}; "
            "run `forgetflow train` first"
        )
    return version


def run_exists(project: Project, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client(project).get_run(run_id)
        return True
    except MlflowException:
        return False


def log_bench(project: Project, name: str, rows: list[dict[str, Any]], files: list[Path], params: dict[str, Any]) -> str:
    """A parent run per benchmark with one nested run per row (method × seed × cell); returns the parent id."""
    import mlflow

    experiment_id = configure_experiment(project, project.params.tracking.experiment + "-bench")
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as parent:
        mlflow.log_params({k: _short(v) for k, v in params.items()})
        for file in files:
            mlflow.log_artifact(str(file), artifact_path="results")
        for row in rows:
            clean = {k: v for k, v in row.items() if not k.startswith("_")}
            with mlflow.start_run(experiment_id=experiment_id, nested=True,
                                  run_name=f"{clean['scenario']}/{clean['method']}/seed{clean['seed']}"):
                mlflow.log_params({k: _short(v) for k, v in clean.items() if not isinstance(v, float) or k == "seed"})
                mlflow.log_metrics({k: float(v) for k, v in clean.items()
                                    if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
                                    and k not in ("seed",)})
    return parent.info.run_id


def configure_experiment(project: Project, name: str) -> str:
    """The id of experiment ``name`` (created with the project's artifact root when missing)."""
    import mlflow

    configure(project)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(name, artifact_location=project.artifact_root.rstrip("/") + f"/{name}")


# ---- erasure side: weights of models trained on erased data, run artifacts, receipt anchors ------------
# (tasks/purge.py deletes weights and scans artifacts; tasks/receipts.py and tasks/receipt_audit.py anchor
# and read the receipt chain's heads.)
WEIGHTS_PURGED_TAG = "forgetflow.weights_purged_at"
WEIGHTS_PURGED_BY_TAG = "forgetflow.weights_purged_by"
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".ckpt", ".pkl")
RUN_WEIGHT_DIRS = ("checkpoint", "model")  # run artifacts that hold weights (MLflow 2-style run models too)
ANCHOR_TAGS = {"head_sha256": "forgetflow.receipts.head_sha256", "head_seq": "forgetflow.receipts.head_seq",
               "first_seq": "forgetflow.receipts.first_seq", "count": "forgetflow.receipts.count"}


def _repository(uri: str):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(uri)


def _walk(repo, path: str | None = None) -> list[tuple[str, int]]:
    """(path, size) of every file under ``path`` of an artifact repository."""
    out = []
    for info in repo.list_artifacts(path):
        if info.is_dir:
            out.extend(_walk(repo, info.path))
        else:
            out.append((info.path, int(info.file_size or 0)))
    return out


def _logged_model_location(project: Project, mv) -> str | None:
    """Where MLflow 3 keeps the files of the logged model behind a registry version (None for run models)."""
    model_id = getattr(mv, "model_id", None)
    source = str(getattr(mv, "source", "") or "")
    if not model_id and source.startswith("models:/m-"):
        model_id = source[len("models:/"):].split("/")[0]
    if not model_id:
        return None
    return client(project).get_logged_model(model_id).artifact_location


def version_weights_purged(project: Project, version: str) -> str | None:
    """When the weights of ``version`` were purged (its tag), or None."""
    return version_info(project, version)["tags"].get(WEIGHTS_PURGED_TAG)


def purge_version_weights(project: Project, version: str, by: str, why: str) -> dict[str, Any]:
    """Delete the weights of a registered version from the artifact store; keep the version, its tags and run.

    Deletes the run's ``checkpoint/`` (and ``model/``) artifacts and any other run file ending in a weight
    suffix, and the weight files of the logged model behind the version (``data/`` and files ending in a weight
    suffix), then lists again to prove it.
    Tags the version and the run with ``forgetflow.weights_purged_at`` / ``_by``. Returns
    ``{"deleted": [...], "not_deleted": [...]}`` (artifact URIs; a store without delete support lands in the second).
    """
    import datetime as dt

    c = client(project)
    name = project.params.tracking.model_name
    mv = c.get_model_version(name, version)
    run = c.get_run(mv.run_id)
    deleted, kept = [], []
    targets: list[tuple[str, list[str]]] = []
    run_repo_uri = run.info.artifact_uri
    run_files = _walk(_repository(run_repo_uri))
    targets.append((run_repo_uri, sorted({p.split("/")[0] if p.split("/")[0] in RUN_WEIGHT_DIRS else p
                                          for p, _ in run_files
                                          if p.split("/")[0] in RUN_WEIGHT_DIRS or p.endswith(WEIGHT_SUFFIXES)})))
    location = _logged_model_location(project, mv)
    if location:
        files = _walk(_repository(location))
        targets.append((location, sorted({("data" if p.startswith("data/") else p) for p, _ in files
                                          if p.startswith("data/") or p.endswith(WEIGHT_SUFFIXES)})))
    for uri, paths in targets:
        repo = _repository(uri)
        for path in paths:
            repo.delete_artifacts(path)
        remaining = {p for p, _ in _walk(repo)}
        for path in paths:
            left = [p for p in remaining if p == path or p.startswith(path + "/")]
            (kept if left else deleted).append(f"{uri.rstrip('/')}/{path}")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    tags = {WEIGHTS_PURGED_TAG: now, WEIGHTS_PURGED_BY_TAG: f"{by}: {why}"[:4900]}
    if kept:
        tags[WEIGHTS_PURGED_TAG] = f"incomplete {now}"
    for key, value in tags.items():
        c.set_model_version_tag(name, version, key, value)
        c.set_tag(mv.run_id, key, value)
    return {"deleted": deleted, "not_deleted": kept}


def experiment_names(project: Project) -> list[str]:
    """The project's MLflow experiments (batches and audits; benchmarks)."""
    base = project.params.tracking.experiment
    return [base, base + "-bench"]


def _reader(project: Project):
    """A client that reads the project's tracking store without creating anything; None when there is no store."""
    from mlflow import MlflowClient

    uri = project.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return None
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def store_exists(project: Project) -> bool:
    """Whether the project has a tracking store to read (a local SQLite store may not exist yet)."""
    return _reader(project) is not None


def artifact_objects(project: Project):
    """Every artifact file the project logged to MLflow, as (``mlflow:run/<run id>/<path>``, bytes).

    Weight files (run ``checkpoint/`` and ``model/``, logged models' weights) are not read: they are models,
    not samples, and ``purge.models`` deals with them; the rest (reports, manifests, results) is scanned.
    """
    from mlflow.entities import ViewType

    c = _reader(project)
    if c is None:
        return
    for name in experiment_names(project):
        exp = c.get_experiment_by_name(name)
        if exp is None:
            continue
        page_token = None
        while True:
            runs = c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=500, page_token=page_token)
            for run in runs:
                repo = _repository(run.info.artifact_uri)
                for path, _ in _walk(repo):
                    if path.split("/")[0] in RUN_WEIGHT_DIRS or path.endswith(WEIGHT_SUFFIXES):
                        continue
                    yield f"mlflow:run/{run.info.run_id}/{path}", _read_artifact(repo, path)
            page_token = runs.token
            if not page_token:
                break


def _read_artifact(repo, path: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return Path(repo.download_artifacts(path, dst_path=tmp)).read_bytes()


def anchor_receipts(project: Project, run_id: str, anchor: dict[str, Any]) -> None:
    """Record a batch's receipt-chain anchor (head hash, head and first seq, count) as tags on its MLflow run."""
    c = client(project)
    for field, tag in ANCHOR_TAGS.items():
        c.set_tag(run_id, tag, str(anchor.get(field)))


def remove_receipt_anchor(project: Project, run_id: str) -> None:
    """Remove an anchor (the batch that set it is rolled back)."""
    from mlflow.exceptions import MlflowException

    c = client(project)
    for tag in ANCHOR_TAGS.values():
        try:
            c.delete_tag(run_id, tag)
        except MlflowException:
            pass


def receipt_anchors(project: Project) -> list[dict[str, Any]]:
    """Every anchor on an MLflow run of the project's experiment (deleted runs too), with its run as ``source``."""
    from mlflow.entities import ViewType

    c = _reader(project)
    exp = c.get_experiment_by_name(project.params.tracking.experiment) if c is not None else None
    if exp is None:
        return []
    out, page_token = [], None
    while True:
        runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{ANCHOR_TAGS['head_sha256']}` LIKE '%'",
                             run_view_type=ViewType.ALL, max_results=500, page_token=page_token)
        for run in runs:
            tags = run.data.tags
            count = tags.get(ANCHOR_TAGS["count"])
            out.append({"batch_id": tags.get("batch_id"), "count": int(count) if count and count.isdigit() else 0,
                        "head_seq": _int_or_none(tags.get(ANCHOR_TAGS["head_seq"])),
                        "first_seq": _int_or_none(tags.get(ANCHOR_TAGS["first_seq"])),
                        "head_sha256": tags.get(ANCHOR_TAGS["head_sha256"]),
                        "source": f"MLflow run {run.info.run_id}"})
        page_token = runs.token
        if not page_token:
            break
    return out


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value not in (None, "", "None") and str(value).lstrip("-").isdigit() else None
