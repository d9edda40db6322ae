"""A project = the folder holding params.yaml, its validated params, and every path derived from them.

Loading a project validates its params twice over before any work starts: the schema
(:func:`forgetflow.config.load_params`: types, ranges, unknown keys) and :func:`check_params`, what the schema
cannot know on its own because it sits below the registries: every request reason has a method, every named
method is registered, every method section fits its method.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from forgetflow.config import Params, load_params, resolve_path, resolve_sqlalchemy_url
from forgetflow.errors import ConfigError, UnknownNameError
from forgetflow.ledger.reasons import REASONS
from forgetflow.paths import shipped_settings

PARAMS_FILE = "params.yaml"


def find_params(start: Path | None = None) -> Path:
    """``$FORGETFLOW_PARAMS``, else the nearest params.yaml from ``start`` (default: cwd) upwards."""
    env = os.environ.get("FORGETFLOW_PARAMS")
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).exists():
            return folder / PARAMS_FILE
    raise ConfigError(f"no {PARAMS_FILE} in {here} or its parents (run from the project folder or pass --params)")


def check_params(params: Params, where: str = "params") -> None:
    """Check ``unlearn`` against the request reasons and the method registry; raise ConfigError naming the key."""
    from pydantic import ValidationError

    from forgetflow.methods import METHODS  # here, not at the top: importing Project stays free of torch

    unlearn = params.unlearn

    def method(key: str, name: str):
        try:
            return METHODS.get(name)
        except UnknownNameError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None

    if unlearn.method != "auto":
        method("unlearn.method", unlearn.method)
    unknown = [r for r in unlearn.by_reason if r not in REASONS]
    if unknown:
        raise ConfigError(f"{where}: unlearn.by_reason: unknown reason {unknown[0]!r} (known: {', '.join(REASONS)})")
    missing = [r for r in REASONS if r not in unlearn.by_reason]
    if missing:  # a request with that reason would find no method halfway through a batch
        raise ConfigError(f"{where}: unlearn.by_reason: no method for {', '.join(missing)} "
                          f"(every request reason needs one: {', '.join(REASONS)})")
    for reason, name in unlearn.by_reason.items():
        method(f"unlearn.by_reason.{reason}", name)
    shipped = shipped_settings()
    if unlearn.preset_setting not in shipped:  # the benchmark settings (forgetflow/bench_settings.py) presets are tuned on
        raise ConfigError(f"{where}: unlearn.preset_setting: unknown setting {unlearn.preset_setting!r} "
                          f"(shipped: {', '.join(shipped)})")
    for name, section in unlearn.methods.items():
        spec = method("unlearn.methods", name)
        try:
            spec.config.model_validate(section)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{where}: unlearn.methods.{name}.{loc}: {first['msg']}") from None


@dataclass(frozen=True)
class Project:
    """Validated params plus resolved paths; the only way code finds files."""

    root: Path
    params: Params
    params_path: Path

    @classmethod
    def load(cls, params_path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> "Project":
        """Load params.yaml (found upwards from the cwd when not given) with overrides, and check it."""
        path = Path(params_path) if params_path else find_params()
        path = path.resolve()
        params = load_params(path, overrides)
        check_params(params, str(path))
        return cls(root=path.parent, params=params, params_path=path)

    def with_params(self, params: Params) -> "Project":
        """The same project with other (already validated) params."""
        return Project(self.root, params, self.params_path)

    def path(self, value: str) -> Path:
        return resolve_path(self.root, value)

    @property
    def data_dir(self) -> Path:
        return self.path(self.params.paths.data)

    @property
    def version_dir(self) -> Path:
        """The current dataset version (inside the DVC-tracked data folder)."""
        return self.data_dir / "current"

    @property
    def manifests_dir(self) -> Path:
        return self.data_dir / "manifests"

    @property
    def artifacts_dir(self) -> Path:
        return self.path(self.params.paths.artifacts)

    @property
    def prepared_dir(self) -> Path:
        """Output of the ``prepare`` stage: version 1 as built from the raw files."""
        return self.artifacts_dir / "prepared"

    @property
    def models_dir(self) -> Path:
        return self.artifacts_dir / "models"

    @property
    def oracle_dir(self) -> Path:
        return self.artifacts_dir / "oracles"

    @property
    def state_dir(self) -> Path:
        return self.path(self.params.paths.state)

    @property
    def receipts_dir(self) -> Path:
        return self.state_dir / "receipts"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    def open_ledger(self):
        """The project's request ledger (the folder of a relative SQLite file is created).

        Cheap: every ledger on one URL shares the process's engine, and the schema is brought up to date
        once per process (``forgetflow/ledger/schema.py``).
        """
        from forgetflow.ledger import Ledger

        url = self.ledger_url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return Ledger(url)

    @property
    def ledger_url(self) -> str:
        return resolve_sqlalchemy_url(self.root, self.params.ledger.url)

    @property
    def tracking_uri(self) -> str:
        return resolve_sqlalchemy_url(self.root, self.params.tracking.uri)

    @property
    def artifact_root(self) -> str:
        value = self.params.tracking.artifact_root
        # any URI passes through: s3://…, gs://…, and mlflow-artifacts:/… (a tracking server's proxied store);
        # a one-letter "scheme" is a Windows drive, i.e. a path
        if "://" in value or re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", value):
            return value
        return self.path(value).resolve().as_uri()

    @property
    def dvc_remote_url(self) -> str:
        value = self.params.versioning.remote_url
        return value if "://" in value else str(self.path(value).resolve())
