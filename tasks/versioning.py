"""DVC adapter: the only module that calls DVC.

The project folder is the DVC repository. ``data/`` (current dataset version + forget manifests) is tracked by
``data.dvc`` and pushed to the remote named in params.yaml after every new version; a failed batch restores
the previous ``data.dvc`` and checks its content back out from the cache. DVC's console hints go to stderr
so that ``--json`` output stays clean.
"""

from __future__ import annotations

import contextlib
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
        current = repo.config.get("remote", {}).get(remote_name, {}).get("url")
        if current != url or repo.config.get("core", {}).get("remote") != remote_name:
            with repo.config.edit("local") as conf:
                conf["core"]["remote"] = remote_name
                conf["remote"][remote_name] = {"url": url}
        if "://" not in url:
            Path(url).mkdir(parents=True, exist_ok=True)
        repo.close()


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
    """Put data.dvc back to ``saved`` and check its content out (``None``: there was no data.dvc)."""
    if not project.params.versioning.enabled:
        return
    path = dvc_file(project)
    with _quiet():
        if saved is None:
            path.unlink(missing_ok=True)
            return
        path.write_text(saved)
        repo = _repo(project)
        try:
            repo.checkout(targets=[str(path)], force=True)
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
        subprocess.run(["git", "add", str(rel), ".gitignore"], cwd=project.root, check=True, capture_output=True)
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
