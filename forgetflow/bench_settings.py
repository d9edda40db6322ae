"""Benchmark settings: named recipes (data pool, architecture, training, reference models) under version control.

A setting says *where* a benchmark runs: which training samples the original sees, which network, which
training recipe, how many reference models calibrate the per-sample attacks. ``default`` is the serving
recipe of params.yaml on the whole training split (every field null); ``memorising`` is a recipe whose
original measurably memorises its training samples (docs/results.md). They are YAML files in
``forgetflow/settings/`` (package data), found by name; ``forgetflow bench --setting PATH.yaml`` reads any
other file of the same shape. Every field left null falls back to params.yaml.

Choices the issue leaves open, and why:

* **The pool is drawn by whole data subjects**, in a seeded order, a subject taken whenever it still fits,
  until exactly ``data.pool`` training samples are in. Drawing single samples would split most synthetic
  subjects (2-6 samples each) and leave the subject-level scenario with singletons.
* **Only the training split shrinks.** Validation (tuning, RMIA's population) and test (the never-seen null
  of every per-sample attack) keep all their samples: a smaller pool must not make the measurements coarser.
* **The pool's dataset version is written once** under ``artifacts/bench/<dataset>-pool<N>-s<seed>``: reference
  models read their data from a version folder, and every model trained on the pool is cached under the
  pool's own fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError

from forgetflow.config import Strict
from forgetflow.data.version import DatasetVersion, _counts, table_fingerprint
from forgetflow.errors import ConfigError, DataError
from forgetflow.paths import SETTINGS_DIR, shipped_settings
from forgetflow.training import Recipe

if TYPE_CHECKING:
    from forgetflow.project import Project



class SettingData(Strict):
    """Which training samples the setting keeps."""

    pool: int | None = Field(None, ge=2, description="training samples of the setting (whole data subjects drawn "
                                                     "with pool_seed); null = the whole training split")
    pool_seed: int = Field(0, ge=0, description="seed of the subject draw that makes the pool")


class SettingModel(Strict):
    """The architecture: a registered model name and its options beyond channels, classes and image size."""

    arch: str | None = Field(None, description="registered model; null = params.yaml model.arch (with its width)")
    options: dict[str, Any] = Field(default_factory=dict, description="builder options, e.g. {width: 32, head: 512}")


class SettingTrain(Strict):
    """The training recipe of the original, the oracles and the reference models; null = params.yaml train."""

    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    momentum: float | None = Field(None, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0)
    schedule: Literal["cosine", "constant"] | None = None


class SettingReferences(Strict):
    """The reference models of the setting's per-sample attacks; null = params.yaml references."""

    k: int | None = Field(None, ge=2, description="reference models (even), each on a seeded half of the pool")
    seed: int | None = Field(None, ge=0, description="seed of the IN/OUT assignment and of the reference trainings")


class Setting(Strict):
    """A named benchmark setting."""

    name: str
    description: str = ""
    data: SettingData = Field(default_factory=SettingData)
    model: SettingModel = Field(default_factory=SettingModel)
    train: SettingTrain = Field(default_factory=SettingTrain)
    references: SettingReferences = Field(default_factory=SettingReferences)


def available() -> list[str]:
    """Names of the settings shipped with forgetflow."""
    return shipped_settings()


def load_setting(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Setting:
    """A shipped setting by name, or a setting file by path; ``overrides`` are dotted keys (``train.epochs``).

    Raises:
        ConfigError: no such setting, or the file (with its overrides) does not fit the schema.
    """
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) else SETTINGS_DIR / f"{text}.yaml"
    if not path.exists():
        raise ConfigError(f"benchmark setting {text!r} not found (shipped: {', '.join(available())}; "
                          "or give a path to a .yaml file)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a setting is a mapping")
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"setting override {key}: {part} is not a section")
        node[leaf] = value
    try:
        return Setting(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc


# ---- what a setting resolves to in a project -------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """A setting made concrete for one project and dataset version: what every model of it is trained with."""

    setting: Setting
    arch: str
    arch_config: dict[str, Any]
    recipe: Recipe
    k: int
    ref_seed: int


def resolve(setting: Setting, project: "Project", version: DatasetVersion) -> Resolved:
    """The architecture, recipe and reference settings of ``setting``, params.yaml filling every null."""
    from forgetflow import pipeline

    name, config = pipeline.arch(project, version)
    if setting.model.arch is not None and setting.model.arch != name:
        c, h, _ = version.shape
        name, config = setting.model.arch, {"in_channels": c, "num_classes": version.num_classes, "image_size": h}
    config = {**config, **setting.model.options}
    base = pipeline.recipe(project)
    t = setting.train
    recipe = Recipe(epochs=t.epochs or base.epochs, batch_size=t.batch_size or base.batch_size,
                    lr=t.lr if t.lr is not None else base.lr,
                    momentum=t.momentum if t.momentum is not None else base.momentum,
                    weight_decay=t.weight_decay if t.weight_decay is not None else base.weight_decay,
                    schedule=t.schedule or base.schedule)
    refs = project.params.references
    k = setting.references.k or refs.k
    if k % 2:
        raise ConfigError(f"setting {setting.name}: references.k must be even, not {k}")
    seed = setting.references.seed if setting.references.seed is not None else refs.seed
    return Resolved(setting, name, config, recipe, k, seed)


def pool_ids(version: DatasetVersion, pool: int, seed: int) -> list[str]:
    """Exactly ``pool`` training sample ids: whole subjects in a seeded order, each taken while it still fits.

    Samples without a subject count as subjects of one. Raises ``ConfigError`` when the training split is smaller.
    """
    train = version.rows("train")
    if pool > len(train):
        raise ConfigError(f"setting pool {pool} exceeds the {len(train)} training samples of {version.label}")
    groups = train["subject_id"].where(train["subject_id"] != "", train["sample_id"])
    members = train.groupby(groups, sort=True)["sample_id"].apply(list)
    order = np.random.default_rng([seed, 0xB001]).permutation(len(members))
    chosen: list[str] = []
    for i in order:
        ids = members.iloc[int(i)]
        if len(chosen) + len(ids) <= pool:
            chosen.extend(ids)
        if len(chosen) == pool:
            break
    return sorted(chosen)


def pool_version(version: DatasetVersion, pool: int, seed: int) -> DatasetVersion:
    """Version 1 of a dataset whose training split is the pool (in memory; validation and test unchanged)."""
    keep_train = set(pool_ids(version, pool, seed))
    table = version.table.reset_index(drop=True)
    keep = (table["split"] != "train") | table["sample_id"].isin(keep_train)
    images = version.images[np.flatnonzero(keep.to_numpy())]
    table = table[keep].reset_index(drop=True)
    table["offset"] = table.groupby("shard").cumcount().astype(np.int32)
    meta = dict(version.meta)
    meta.update(counts=_counts(table), fingerprint=table_fingerprint(table),
                subjects=int(table.loc[table["split"] == "train", "subject_id"].replace("", np.nan).nunique()),
                pool={"size": pool, "seed": seed, "source_fingerprint": version.fingerprint})
    return DatasetVersion(meta=meta, table=table, erased=version.erased.copy(), root=None, _images=images)


def version_folder_name(dataset: str, setting: Setting) -> str:
    """The folder (under artifacts/bench) of a setting's dataset version: shared by settings with the same pool."""
    if setting.data.pool is None:
        return dataset
    return f"{dataset}-pool{setting.data.pool}-s{setting.data.pool_seed}"


def setting_version(base: DatasetVersion, setting: Setting, folder: Path) -> DatasetVersion:
    """The setting's dataset version, written to ``folder`` once (then loaded from there)."""
    from forgetflow.data import load_version

    if setting.data.pool is None:
        return base
    if (folder / "version.json").exists():
        version = load_version(folder)
        pool = version.meta.get("pool") or {}
        if pool.get("source_fingerprint") != base.fingerprint:
            raise DataError(f"{folder}: built from another version of {base.meta['dataset']} "
                            f"({str(pool.get('source_fingerprint'))[:12]}); remove the folder to rebuild it")
        return version
    pool_version(base, setting.data.pool, setting.data.pool_seed).write(folder)
    return load_version(folder)


def dataset_version(project: "Project", dataset: str, setting: Setting) -> DatasetVersion:
    """The benchmark's version 1 of ``dataset`` (artifacts/bench/<dataset>) cut down to the setting's pool."""
    from forgetflow.data import load_version, prepare_version

    folder = project.artifacts_dir / "bench" / dataset
    if (folder / "version.json").exists():
        base = load_version(folder)
    else:
        data = project.params.data.model_copy(update={"dataset": dataset})
        prepare_version(data, project.root, project.params.seed).write(folder)
        base = load_version(folder)
    return setting_version(base, setting, project.artifacts_dir / "bench" / version_folder_name(dataset, setting))
