"""Shared fixtures: digits dataset versions, a tiny CNN trained on them, and hermetic tool settings.

Environment first: every tool writes under a session temporary folder and sends nothing anywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Tests that import helpers from this module would run this block a second time (pytest imports the file as
# "conftest", a test as "tests.conftest"): the marker keeps one temporary folder and one environment.
if "FORGETFLOW_TEST_TMP" not in os.environ:
    os.environ["FORGETFLOW_TEST_TMP"] = tempfile.mkdtemp(prefix="forgetflow-tests-")
    _tmp = Path(os.environ["FORGETFLOW_TEST_TMP"])
    os.environ.update(
        {
            "PREFECT_HOME": str(_tmp / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_TRACKING_URI": f"sqlite:///{_tmp / 'stray-mlflow.db'}",
            "DVC_NO_ANALYTICS": "1",
            # keyed tombstones (forgetflow/data/tombstones.py): one fixed test key instead of a generated file
            "FORGETFLOW_TOMBSTONE_KEY": "forgetflow-tests-tombstone-key-0123456789abcdef",
            "DVC_SITE_CACHE_DIR": str(_tmp / "dvc-site"),
            "HF_HUB_OFFLINE": "1",
            "GIT_AUTHOR_NAME": "forgetflow-tests",
            "GIT_AUTHOR_EMAIL": "tests@forgetflow.invalid",
            "GIT_COMMITTER_NAME": "forgetflow-tests",
            "GIT_COMMITTER_EMAIL": "tests@forgetflow.invalid",
        }
    )
_SESSION_TMP = Path(os.environ["FORGETFLOW_TEST_TMP"])

import pytest  # noqa: E402
import torch  # noqa: E402

from forgetflow import bench  # noqa: E402
from forgetflow.config import DataParams  # noqa: E402
from forgetflow.data import DatasetVersion, prepare_version  # noqa: E402
from forgetflow.training import Recipe  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

# The tiny setup every method test shares: small-cnn of width 8 on 8x8 digits, trained in ~1-2 s.
TINY_ARCH = ("small-cnn", {"in_channels": 1, "num_classes": 10, "image_size": 8, "width": 8})
TINY_RECIPE = Recipe(epochs=15, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4)


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(scope="session")
def digits_version(session_tmp: Path) -> DatasetVersion:
    """Version 1 of scikit-learn digits (written to disk, loaded back)."""
    version = prepare_version(DataParams(dataset="digits", shard_size=256), session_tmp, seed=0)
    version.write(session_tmp / "digits" / "current")
    return DatasetVersion.load(session_tmp / "digits" / "current")


def make_setup(version: DatasetVersion, scenario: str, cache: Path, seed: int = 0, **options) -> bench.Setup:
    """A benchmark setup on the tiny architecture (original + oracle cached under ``cache``)."""
    return bench.setup(version, scenario, seed, TINY_ARCH[0], TINY_ARCH[1], TINY_RECIPE, cache, device="cpu",
                       scenario_options=options, max_shadow=500)


@pytest.fixture(scope="session")
def digits_random(digits_version: DatasetVersion, session_tmp: Path) -> bench.Setup:
    """Random 10 % of digits' training samples, with original and oracle."""
    return make_setup(digits_version, "random", session_tmp / "models", fraction=0.1)


@pytest.fixture(scope="session")
def digits_full_class(digits_version: DatasetVersion, session_tmp: Path) -> bench.Setup:
    """All training samples of digit 3, with original and oracle."""
    return make_setup(digits_version, "full-class", session_tmp / "models", label=3)


# ---- projects on real components, in temporary folders ------------------------------------------
# The tests' own params: cheap settings (a width-8 CNN, a short NegGrad+ for every reason) stated here, so that
# the shipped defaults (forgetflow/config.py = params.yaml) stay the ones a user should get.
DIGITS_PARAMS = """\
seed: 0
data: {dataset: digits, shard_size: 256}
model: {arch: small-cnn, width: 8}
train: {epochs: 15, batch_size: 64, lr: 0.05, progress: false, device: cpu}
evaluate: {mia_max_shadow: 300}
unlearn:
  method: auto
  by_reason: {privacy: neggrad-plus, other: neggrad-plus, mislabelled: neggrad-plus, poisoned: neggrad-plus}
  preset: null
  methods: {neggrad-plus: {epochs: 0.3}, finetune: {epochs: 0.3}}
gates: {max_time_ratio: 1.0, max_test_acc_drop: 5.0, max_forget_acc_gap: 10.0, max_mia_gap: 50.0}
"""


def make_project_dir(folder: Path, extra: str = "") -> Path:
    """A forgetflow project on digits in ``folder``: a git repository with params.yaml (nothing else yet)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    (folder / "params.yaml").write_text(DIGITS_PARAMS + extra)
    return folder


@pytest.fixture
def digits_project(tmp_path: Path):
    """A bootstrapped digits project: dataset version 1 tracked by DVC, the original registered as champion."""
    from forgetflow.project import Project
    from tasks import bootstrap

    root = make_project_dir(tmp_path / "project")
    project = Project.load(root / "params.yaml")
    bootstrap.train_and_register(project)
    return project


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (temporary database, ephemeral API) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
