"""Process environment for every forgetflow entry point: telemetry off, tools pointed at the project.

Set before Prefect, MLflow or DVC are imported (the CLI calls :func:`apply` first thing). Values already in
the environment win, so a deployment can point ``PREFECT_API_URL`` or ``PREFECT_HOME`` elsewhere.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from forgetflow.masking import install_log_masking

if TYPE_CHECKING:  # pragma: no cover
    from forgetflow.project import Project

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # Prefect server heartbeat (DO_NOT_TRACK does not stop it)
    "DO_NOT_TRACK": "true",  # Prefect SDK telemetry
    "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow only honours the literal "true"
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",  # peft/transformers never reach a hub
    "GX_ANALYTICS_ENABLED": "false",  # a no-op in GX 1.24 (no analytics code left), kept for older pins
}
QUIET = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",  # a fresh ephemeral server needs 12-15 s here
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply(project: "Project | None" = None) -> None:
    """Turn telemetry off, mask secrets in log records and, for a project, keep Prefect's home and DVC's site
    cache inside it."""
    install_log_masking()
    for key, value in {**TELEMETRY_OFF, **QUIET}.items():
        os.environ.setdefault(key, value)
    if project is not None:
        if "PREFECT_HOME" not in os.environ:
            project.prefect_home.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("PREFECT_HOME", str(project.prefect_home))
        os.environ.setdefault("DVC_SITE_CACHE_DIR", str(project.state_dir / "dvc-site"))
