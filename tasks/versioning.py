"""DVC adapter: the only module that calls DVC.

The project folder is the DVC repository. ``data/`` (current dataset version + forget manifests) is tracked by
``data.dvc`` and pushed to the remote named in params.yaml after every new version; a failed batch restores
the previous ``data.dvc`` and checks its content back out from the cache. DVC's console hints go to stderr
so that ``--json`` output stays clean.

The stages of ``dvc.yaml`` (prepare, train_original, train_oracle) run through :func:`reproduce`, so that
``dvc.lock`` records them; after a batch, :func:`record_pipeline` records what the batch itself changed
(it stripped erased samples from the prepared version and made a new current version whose oracle it
trained), so that ``dvc status`` stays clean and ``dvc repro`` redoes nothing until code, params or the
raw data change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from forgetflow.errors import ForgetflowError
from forgetflow.project import Project

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _repo(project: Project):
    from dvc.repo import Repo

    return Repo(str(project.root))


def ensure_repo(project: Project) -> None:
    """Initialise DVC in the project (with git if it is a git checkout), analytics off, remote configured."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    root = project.root
    with _quiet():
        if not (root / ".dvc").exists():
            Repo.init(str(root), no_scm=not (root / ".git").exists())
        repo = Repo(str(root))
        with repo.config.edit() as conf:
            conf["core"]["analytics"] = False
            conf["core"]["check_update"] = False
        remote_name = project.params.versioning.remote
        url = project.dvc_remote_url
        wanted = {"url": url, **project.params.versioning.remote_options}
        current = {k: str(v) for k, v in repo.config.get("remote", {}).get(remote_name, {}).items() if k in wanted}
        if current != wanted or repo.config.get("core", {}).get("remote") != remote_name:
            with repo.config.edit("local") as conf:
                conf["core"]["remote"] = remote_name
                conf["remote"][remote_name] = dict(wanted)
        if "://" not in url:
            Path(url).mkdir(parents=True, exist_ok=True)
        repo.close()


@contextlib.contextmanager
def _stage_path() -> Iterator[None]:
    """Stage commands call ``forgetflow``: the one installed beside this interpreter, whatever PATH says."""
    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved])
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def has_pipeline(project: Project) -> bool:
    return project.params.versioning.enabled and (project.root / "dvc.yaml").exists()


def reproduce(project: Project) -> list[str]:
    """``dvc repro``: run the stages of dvc.yaml whose code, params or data changed; returns those that ran."""
    ensure_repo(project)
    # DVC resolves targets and names stages relative to the working directory: run it from the project
    with _quiet(), _stage_path(), contextlib.chdir(project.root):
        repo = _repo(project)
        try:
            ran = repo.reproduce()
        finally:
            repo.close()
    return [stage.addressing for stage in ran]


def pipeline_status(project: Project) -> dict[str, Any]:
    """``dvc status`` of the project (stages and data.dvc): empty when everything is up to date."""
    with _quiet(), contextlib.chdir(project.root):
        repo = _repo(project)
        try:
            return repo.status()
        finally:
            repo.close()


def record_pipeline(project: Project) -> list[str]:
    """After a batch, record in dvc.lock what the batch changed itself; returns the stages recorded.

    * ``prepare``: the purge stripped the erased samples from its output, which is what the stage now makes
      (``forgetflow data prepare`` leaves out erased samples too);
    * ``train_original``: its input lost those samples; that is no reason to train a new original and make it
      champion (the batch unlearned them; the oracle audit retrains), so the original stays recorded;
    * ``train_oracle``: the batch's oracle was trained on exactly the new version's training samples, so it
      is written as the stage's output, when it is cached (else the stage stays to be reproduced).

    A stage whose output the purge deleted (``purge.models``: the original's weights held erased samples) is
    not recorded: there is nothing to record, and ``dvc status`` rightly shows it due (reproducing it trains an
    original on the current version, which holds no erased sample). ``train_references`` is never recorded
    here: the batch used the references of an earlier version (erased samples OUT only) and the next audit or
    ``dvc repro`` trains the current version's. Nothing happens in a project whose pipeline never ran (no
    dvc.lock).
    """
    from forgetflow import pipeline

    if not has_pipeline(project) or not (project.root / "dvc.lock").exists():
        return []
    stages = ["prepare"]
    if (project.models_dir / "original.pt").exists():
        stages.append("train_original")
    if pipeline.write_oracle(project, train=False) is not None:
        stages.append("train_oracle")
    with _quiet(), contextlib.chdir(project.root):
        repo = _repo(project)
        try:
            for stage in stages:
                repo.commit(stage, force=True)
        finally:
            repo.close()
    return stages


def dvc_file(project: Project) -> Path:
    return project.root / f"{project.data_dir.name}.dvc"


def data_md5(project: Project) -> str | None:
    """The md5 of the tracked data folder as recorded in data.dvc (DVC's content id of this version)."""
    path = dvc_file(project)
    if not path.exists():
        return None
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def snapshot(project: Project) -> str | None:
    """The current data.dvc text (to restore on rollback)."""
    path = dvc_file(project)
    return path.read_text() if path.exists() else None


def track_and_push(project: Project) -> str:
    """``dvc add data`` then push it to the remote; returns the new md5."""
    if not project.params.versioning.enabled:
        return ""
    ensure_repo(project)
    with _quiet():
        repo = _repo(project)
        try:
            repo.add(str(project.data_dir))
            repo.push(targets=[str(dvc_file(project))])
        finally:
            repo.close()
    md5 = data_md5(project)
    if project.params.versioning.git_commit and (project.root / ".git").exists():
        _git_commit(project, f"forgetflow: dataset version {md5}")
    return md5 or ""


def restore(project: Project, saved: str | None) -> None:
    """Put data.dvc back to ``saved`` and check its content out (``None``: there was no data.dvc).

    Objects missing from the cache are fetched from the remote first. A version whose objects are gone from
    both (a purge removed them: the batch had passed its commit point) is refused before anything is touched,
    so the workspace keeps the version it has instead of a half checked-out one.
    """
    if not project.params.versioning.enabled:
        return
    path = dvc_file(project)
    with _quiet():
        if saved is None:
            path.unlink(missing_ok=True)
            return
        md5 = _md5_of(saved)
        repo = _repo(project)
        try:
            missing: list[str] = []
            if md5:
                missing, gone = _unavailable_objects(
                    repo.cache.local,
                    lambda: repo.cloud.get_remote_odb(project.params.versioning.remote, "restore", hash_name="md5"),
                    md5)
                if gone:
                    what = "it is" if gone == [md5] else f"{len(gone)} of its objects are"
                    raise ForgetflowError(
                        f"dataset version {md5} cannot be restored: {what} in neither the DVC cache nor the remote "
                        f"(purged: the erasure stands; data.dvc left at {data_md5(project)})")
            path.write_text(saved)
            if missing:
                repo.fetch(targets=[str(path)], remote=project.params.versioning.remote)
            repo.checkout(targets=[str(path)], force=True)
        finally:
            repo.close()


def _md5_of(dvc_text: str) -> str | None:
    outs = (yaml.safe_load(dvc_text) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def _unavailable_objects(cache, remote_odb, md5: str) -> tuple[list[str], list[str]]:
    """Objects of a tracked directory (its .dir and every file) missing from the cache, and those of them
    that the remote lacks too (the remote is only asked when the cache lacks something)."""
    remote = None

    def _read_dir(odb) -> list[dict[str, Any]]:
        with odb.fs.open(odb.oid_to_path(md5), "rb") as handle:
            return json.loads(handle.read())

    if cache.exists(md5):
        entries = _read_dir(cache)
        missing = [e["md5"] for e in entries if not cache.exists(e["md5"])]
    else:
        remote = remote_odb()
        if not remote.exists(md5):
            return [md5], [md5]
        missing = [md5] + [e["md5"] for e in _read_dir(remote) if not cache.exists(e["md5"])]
    if not missing:
        return [], []
    remote = remote or remote_odb()
    return missing, [oid for oid in missing if not remote.exists(oid)]


# ---- purge: keep-based garbage collection of the DVC cache and remote ---------------------------
def stored_objects(project: Project, store: str) -> list[str]:
    """Every file of a store, relative to its root: ``cache`` (the local DVC cache) or ``remote``."""
    if not project.params.versioning.enabled or not (project.root / ".dvc").exists():
        return []
    with _quiet():
        repo = _repo(project)
        try:
            fs, root = _store(repo, project, store)
            if not fs.exists(root):
                return []
            return sorted(fs.relpath(p, root) for p in fs.find(root))
        finally:
            repo.close()


def read_objects(project: Project, store: str, names: list[str] | None = None) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every object of a store (or of ``names``), opened through DVC's filesystem for it."""
    if not project.params.versioning.enabled or not (project.root / ".dvc").exists():
        return
    repo = _repo(project)
    try:
        fs, root = _store(repo, project, store)
        if names is None:
            names = sorted(fs.relpath(p, root) for p in fs.find(root)) if fs.exists(root) else []
        for name in names:
            with fs.open(fs.join(root, name), "rb") as handle:
                yield name, handle.read()
    finally:
        repo.close()


def _store(repo, project: Project, store: str):
    if store == "cache":
        from dvc_objects.fs.local import LocalFileSystem

        return LocalFileSystem(), repo.cache.legacy.path  # the whole cache folder, every layout in it
    if store == "remote":
        remote = repo.cloud.get_remote(project.params.versioning.remote, "purge")
        return remote.fs, remote.path
    raise ValueError(f"unknown store {store!r}")


def kept_objects(project: Project) -> list[str]:
    """Object ids the workspace references (every ``.dvc`` file and ``dvc.lock`` out): the purge's keep set."""
    with _quiet():
        repo = _repo(project)
        try:
            used = repo.used_objs()
        finally:
            repo.close()
    return sorted({h.value for ids in used.values() for h in ids if h.value})


def push(project: Project) -> None:
    """Make sure the remote holds every object the workspace references (idempotent)."""
    with _quiet():
        repo = _repo(project)
        try:
            repo.push(remote=project.params.versioning.remote)
        finally:
            repo.close()


def collect_garbage(project: Project, remote: bool, other_repos: list[str]) -> None:
    """``dvc gc --workspace [--cloud]``: keep only what the workspace (and ``other_repos``) reference.

    Never ``--all-commits``: data.dvc files in git history point at versions that held erased samples.
    """
    with _quiet():
        repo = _repo(project)
        try:
            repo.gc(workspace=True, cloud=remote, remote=project.params.versioning.remote if remote else None,
                    repos=[str(project.path(r)) for r in other_repos] or None)
        finally:
            repo.close()


def status(project: Project) -> dict[str, Any]:
    """DVC's view of the data folder: md5, and whether the workspace matches data.dvc."""
    if not project.params.versioning.enabled or not (project.root / ".dvc").exists():
        return {"enabled": project.params.versioning.enabled, "md5": None, "clean": None}
    with _quiet():
        repo = _repo(project)
        try:
            changes = repo.status(targets=[str(dvc_file(project))]) if dvc_file(project).exists() else {}
        finally:
            repo.close()
    return {"enabled": True, "md5": data_md5(project), "clean": not changes}


def _git_commit(project: Project, message: str) -> None:
    rel = dvc_file(project).relative_to(project.root)
    try:
        # --force: the forgetflow checkout ignores data.dvc (per-deployment state); this deployment commits it
        subprocess.run(["git", "add", "--force", str(rel), ".gitignore"], cwd=project.root, check=True,
                       capture_output=True)
        subprocess.run(["git", "commit", "-m", message, "--", str(rel), ".gitignore"], cwd=project.root,
                       check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        raise ForgetflowError(f"git commit of {rel} failed: {exc.stderr.decode().strip()[:200]}") from exc


def git_commit_id(root: Path) -> str | None:
    """The project's current git commit (for MLflow and receipts), or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True)
        return out.stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
