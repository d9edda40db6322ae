"""Reference models: K models of the serving recipe, each on a seeded half of a dataset version's training split.

They calibrate the per-sample membership attacks (forgetflow/metrics/membership.py): for a sample x, the
references that trained on it are its IN references, the others its OUT references. They are trained once
per dataset version, and right after training every reference scores every sample of the version (all
splits), so that a batch never runs them again: verification needs only the target model's forward pass.

On disk, under ``artifacts/references/<key>/`` (the key hashes the version's fingerprint, the architecture,
the recipe, K and the seed)::

    ref-<j>.pt      the j-th reference model (a forgetflow checkpoint)
    ref-<j>.json    its meta: "role": "reference", "data": the version's fingerprint, "version", "index",
                    "seconds", "samples", "seed", "arch", "recipe", ...
    ref-<j>.npy     its logit confidence φ on every sample of the version (float32, version table order)
    references.npz  ids, split, label, member (K, N), half (K, N), phi (K, N), seconds (K,)
    references.json the set's description; written last, so its presence means the set is complete

Choices the papers leave open, and why:

* **Assignment.** Sample i is IN for exactly K/2 references (K even): its K per-model keys are a hash of
  (seed, sample id, model index), and the K/2 models with the smallest keys take it. The assignment of a
  sample depends on nothing else (not on the order or the other samples of the version), and each model
  trains on about half the training split.
* **Samples no reference trained on** (validation, test) are given a *virtual* half by the same rule: in a
  view only their K/2 virtual-OUT references are usable. So every sample is scored against exactly K/2 OUT
  references, whether it is a training sample, an erased one or a never-seen one, and a forgotten sample's
  score is exchangeable with a never-seen sample's when the model truly treats it as unseen — what the
  evidence's null hypothesis needs.
* **Erased samples** (``out_only`` in :meth:`ReferenceSet.view`): after erasure a sample is only ever used as
  OUT; its IN columns become unusable, which leaves it exactly like a never-seen sample. The next audit
  trains a new set on the new version (docs/erasure.md).
* **Seeds.** Reference j trains with seed ``seed + 1000·(j + 1)``, never the serving model's seed.
* **Fan-out.** :func:`train_references` takes a ``map`` function, so that tasks/ can run the K trainings
  through the configured Prefect task runner (threads or Dask); each job reads the version from its folder
  and writes only its own files, and a finished model is not trained again if the set is interrupted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from forgetflow.data.manifest import canonical_json
from forgetflow.data.version import DatasetVersion
from forgetflow.errors import ConfigError, DataError
from forgetflow.training import Recipe

if TYPE_CHECKING:
    from torch import nn

    from forgetflow.config import ReferenceParams
    from forgetflow.data.splits import Splits
    from forgetflow.metrics.membership import Population
    from forgetflow.project import Project

log = logging.getLogger(__name__)

ROLE = "reference"
SET_FILE = "references.json"
ARRAYS_FILE = "references.npz"
_BUILD_LOCK = threading.Lock()  # model initialisation draws from torch's global generator


# ---- membership assignment and the score every attack reads ---------------------------------------
def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit mixing function (SplitMix64's finaliser), elementwise on uint64 with wrap-around."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def halves(sample_ids: Sequence[str], k: int, seed: int) -> np.ndarray:
    """(k, n) bool: for each sample, the k/2 models whose key (seed, id, model) is smallest are True."""
    if k < 2 or k % 2:
        raise ConfigError(f"references.k must be an even number >= 2, not {k}")
    ids = [str(s) for s in sample_ids]
    base = np.array([int.from_bytes(hashlib.blake2b(f"{seed}\x00{s}".encode(), digest_size=8).digest(), "little")
                     for s in ids], dtype=np.uint64)
    keys = np.stack([_splitmix64(base ^ _splitmix64(np.full(1, j, dtype=np.uint64))) for j in range(k)])
    ranks = np.argsort(np.argsort(keys, axis=0, kind="stable"), axis=0, kind="stable")
    return ranks < k // 2


def assign_members(train_ids: Sequence[str], k: int, seed: int) -> np.ndarray:
    """(k, n) bool, True where reference j trains on training sample i; every sample is IN for exactly k/2."""
    return halves(train_ids, k, seed)


def logit_confidence(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """φ = z_y − logsumexp_{j≠y} z_j per sample (float64): log(p_y / (1 − p_y)) computed without cancellation."""
    z = torch.as_tensor(np.asarray(logits) if isinstance(logits, np.ndarray) else logits).double()
    y = torch.as_tensor(np.asarray(labels) if isinstance(labels, np.ndarray) else labels).long().reshape(-1, 1)
    if z.ndim != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(f"logits {tuple(z.shape)} and labels {tuple(y.shape)} do not match")
    if len(y) == 0:
        return np.empty(0)
    zy = z.gather(1, y).squeeze(1)
    others = z.scatter(1, y, float("-inf"))
    return (zy - torch.logsumexp(others, 1)).numpy()


def model_seed(seed: int, index: int) -> int:
    """The training seed of reference ``index`` (never the serving model's ``seed``)."""
    return seed + 1000 * (index + 1)


def reference_key(fingerprint: str, arch: str, arch_config: dict[str, Any], recipe: Recipe, k: int, seed: int) -> str:
    """The cache key of a reference set: the data, the architecture, the recipe, K and the seed."""
    payload = {"role": ROLE, "data": fingerprint, "arch": arch, "arch_config": arch_config, "recipe": asdict(recipe),
               "k": k, "seed": seed}
    return f"refs-{hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]}"


# ---- views ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceView:
    """The references' φ on some samples, which of them trained on each (member) and which may be used."""

    ids: np.ndarray
    phi: np.ndarray      # (k, n) float64
    member: np.ndarray   # (k, n) bool: the reference trained on the sample
    usable: np.ndarray   # (k, n) bool: the reference may be used for the sample

    @property
    def n_in(self) -> np.ndarray:
        """Usable IN references per sample."""
        return (self.member & self.usable).sum(0)

    @property
    def n_out(self) -> np.ndarray:
        """Usable OUT references per sample."""
        return (~self.member & self.usable).sum(0)

    def models(self, index: Sequence[int] | np.ndarray) -> "ReferenceView":
        """The same samples seen by a subset of the reference models (e.g. all but one held out as a target)."""
        idx = np.asarray(index)
        return ReferenceView(self.ids, self.phi[idx], self.member[idx], self.usable[idx])

    def subset(self, positions: np.ndarray | Sequence[int]) -> "ReferenceView":
        """Some of the samples, by position (or boolean mask)."""
        pos = np.asarray(positions)
        return ReferenceView(self.ids[pos], self.phi[:, pos], self.member[:, pos], self.usable[:, pos])

    @staticmethod
    def concat(*views: "ReferenceView") -> "ReferenceView":
        """Samples of several views side by side (same reference models)."""
        return ReferenceView(np.concatenate([v.ids for v in views]), np.concatenate([v.phi for v in views], 1),
                             np.concatenate([v.member for v in views], 1), np.concatenate([v.usable for v in views], 1))


# ---- the set --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceSet:
    """K reference models' membership and scores on every sample of the dataset version they trained on."""

    key: str
    k: int
    seed: int
    dataset: str
    version: int
    fingerprint: str
    arch: str
    arch_config: dict[str, Any]
    recipe: dict[str, Any]
    ids: np.ndarray        # (N,) every sample of the version, all splits, in the version table's order
    split: np.ndarray      # (N,)
    label: np.ndarray      # (N,)
    member: np.ndarray     # (k, N) bool: False outside the train split
    half: np.ndarray       # (k, N) bool: member for training samples, the virtual half for the others
    phi: np.ndarray        # (k, N) float32
    seconds: np.ndarray    # (k,) training time of each reference
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("member", "half", "phi"):
            if getattr(self, name).shape != (self.k, n):
                raise DataError(f"reference set {self.key}: {name} has shape {getattr(self, name).shape}, "
                                f"expected {(self.k, n)}")
        if len(self.split) != n or len(self.label) != n or len(self.seconds) != self.k:
            raise DataError(f"reference set {self.key}: ids, split, label and seconds do not match")

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.ids)

    @property
    def label_text(self) -> str:
        return f"{self.dataset}@v{self.version}"

    @property
    def train_ids(self) -> np.ndarray:
        return self.ids[self.split == "train"]

    def positions(self, sample_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Positions of ``sample_ids`` in the set; unknown ids are a ``DataError`` naming them."""
        ids = np.asarray(sample_ids, dtype=object)
        pos = self._index.get_indexer(ids)
        if (pos < 0).any():
            missing = [str(s) for s in ids[pos < 0]]
            raise DataError(f"{len(missing)} sample(s) not in reference set {self.key} ({self.label_text}): "
                            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        return pos

    def view(self, sample_ids: Sequence[str] | np.ndarray, out_only: Iterable[str] = ()) -> ReferenceView:
        """The references' view of ``sample_ids`` (in that order).

        Args:
            sample_ids: samples of the version the set was trained on (any split).
            out_only: samples erased since the set was trained: only their OUT references stay usable.

        Returns:
            A view whose ``usable`` mask keeps, per sample, its K/2 OUT references (the virtual OUT half for
            samples no reference trained on) and its K/2 IN references unless the sample is ``out_only``.
        """
        ids = np.asarray(sample_ids, dtype=object)
        pos = self.positions(ids)
        member = self.member[:, pos]
        half = self.half[:, pos]
        erased = np.isin(ids, np.asarray(list(out_only), dtype=object)) if out_only else np.zeros(len(ids), bool)
        usable = ~half | (member & ~erased[None, :])
        return ReferenceView(ids, self.phi[:, pos].astype(np.float64), member, usable)

    def summary(self) -> dict[str, Any]:
        """The set's description (what references.json holds)."""
        return {"role": "reference-set", "key": self.key, "k": self.k, "seed": self.seed, "dataset": self.dataset,
                "version": self.version, "data": self.fingerprint, "arch": self.arch, "arch_config": self.arch_config,
                "recipe": self.recipe, "samples": int(len(self.ids)),
                "train_samples": int((self.split == "train").sum()), "seconds": [float(s) for s in self.seconds],
                "device": self.device, **self.extra}

    def write(self, folder: Path) -> Path:
        """Write references.npz, then references.json (the completeness marker), atomically each."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{ARRAYS_FILE}.tmp.npz"
        np.savez_compressed(tmp, ids=self.ids.astype(str), split=self.split.astype(str), label=self.label,
                            member=self.member, half=self.half, phi=self.phi.astype(np.float32), seconds=self.seconds)
        os.replace(tmp, folder / ARRAYS_FILE)
        _write_json(folder / SET_FILE, self.summary())
        return folder

    @classmethod
    def load(cls, folder: Path) -> "ReferenceSet":
        """Read a complete set (``DataError`` when it is absent, incomplete or malformed)."""
        folder = Path(folder)
        meta_path, arrays_path = folder / SET_FILE, folder / ARRAYS_FILE
        if not meta_path.exists() or not arrays_path.exists():
            raise DataError(f"{folder}: not a complete reference set ({SET_FILE} or {ARRAYS_FILE} missing)")
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(arrays_path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in ("ids", "split", "label", "member", "half", "phi", "seconds")}
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{folder}: unreadable reference set ({exc})") from exc
        known = {"role", "key", "k", "seed", "dataset", "version", "data", "arch", "arch_config", "recipe", "samples",
                 "train_samples", "seconds", "device"}
        return cls(key=meta["key"], k=int(meta["k"]), seed=int(meta["seed"]), dataset=meta["dataset"],
                   version=int(meta["version"]), fingerprint=meta["data"], arch=meta["arch"],
                   arch_config=meta["arch_config"], recipe=meta["recipe"], ids=arrays["ids"].astype(object),
                   split=arrays["split"].astype(object), label=arrays["label"], member=arrays["member"].astype(bool),
                   half=arrays["half"].astype(bool), phi=arrays["phi"], seconds=arrays["seconds"].astype(float),
                   device=meta.get("device", "cpu"), extra={k: v for k, v in meta.items() if k not in known})


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


# ---- training -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceJob:
    """One reference training, described by paths and plain values so that any task runner can ship it."""

    index: int
    k: int
    seed: int
    key: str
    folder: str
    version_root: str
    fingerprint: str
    arch: str
    arch_config: dict[str, Any]
    recipe: dict[str, Any]
    device: str = "auto"
    deterministic: bool = True
    progress: bool = False
    batch_size: int = 1024


def plan(version: DatasetVersion, root: Path, arch: str, arch_config: dict[str, Any], recipe: Recipe, k: int,
         seed: int, device: str = "auto", deterministic: bool = True, progress: bool = False,
         batch_size: int = 1024) -> list[ReferenceJob]:
    """The K jobs of the reference set of ``version`` (which must be written to a folder)."""
    if version.root is None:
        raise DataError(f"{version.label}: reference models train from a written dataset version (it has no folder)")
    halves(["x"], k, seed)  # validates k
    key = reference_key(version.fingerprint, arch, arch_config, recipe, k, seed)
    folder = Path(root) / key
    return [ReferenceJob(j, k, seed, key, str(folder), str(version.root), version.fingerprint, arch, dict(arch_config),
                         asdict(recipe), device, deterministic, progress, batch_size) for j in range(k)]


def train_one(job: ReferenceJob) -> dict[str, Any]:
    """Train reference ``job.index`` on its half of the training split and score every sample with it.

    Writes ``ref-<j>.pt``, ``ref-<j>.npy`` and ``ref-<j>.json`` (last) in the set's folder and returns the meta.
    A model whose files are already there (an interrupted set) is not trained again.
    """
    from forgetflow.models import build_model, save_checkpoint
    from forgetflow.runtime import RunContext
    from forgetflow.training import outputs, train_model

    folder = Path(job.folder)
    meta_path = folder / f"ref-{job.index}.json"
    phi_path = folder / f"ref-{job.index}.npy"
    if meta_path.exists() and phi_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == job.key:
            return meta
    version = DatasetVersion.load(Path(job.version_root))
    if version.fingerprint != job.fingerprint:
        raise DataError(f"{job.version_root}: the dataset version changed while reference models were training "
                        f"(expected {job.fingerprint[:12]}, found {version.fingerprint[:12]}); train them again")
    train_rows = version.rows("train")
    member = assign_members(train_rows["sample_id"].to_numpy(), job.k, job.seed)[job.index]
    samples = version.sample_set(train_rows[member])
    seed = model_seed(job.seed, job.index)
    recipe = Recipe(**job.recipe)
    with _BUILD_LOCK:
        run = RunContext.create(seed, job.device, deterministic=job.deterministic, progress=job.progress)
        model = build_model(job.arch, **job.arch_config)
    load_before = os.getloadavg()  # wall times are only comparable on a quiet machine: keep the load beside them
    start, cpu_start = time.perf_counter(), time.process_time()
    train_model(model, samples, recipe, run, desc=f"reference {job.index + 1}/{job.k}")
    seconds = time.perf_counter() - start
    # the process's CPU time: this training's alone when one reference trains at a time in the process
    cpu_seconds = time.process_time() - cpu_start
    load_after = os.getloadavg()
    out = outputs(model, version.sample_set(version.table), job.batch_size, run.device)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, folder / f"ref-{job.index}.pt")
    tmp = folder / f".ref-{job.index}.tmp.npy"
    np.save(tmp, logit_confidence(out.logits, out.labels).astype(np.float32), allow_pickle=False)
    os.replace(tmp, phi_path)
    meta = {"role": ROLE, "key": job.key, "index": job.index, "k": job.k, "set_seed": job.seed, "seed": seed,
            "data": job.fingerprint, "dataset": version.meta["dataset"], "version": version.version,
            "seconds": seconds, "cpu_seconds": cpu_seconds, "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after], "samples": len(samples), "scored": len(version.table),
            "arch": job.arch,
            "arch_config": job.arch_config, "recipe": job.recipe, "device": str(run.device),
            "checkpoint": f"ref-{job.index}.pt", "phi": phi_path.name}
    _write_json(meta_path, meta)
    return meta


def assemble(version: DatasetVersion, jobs: Sequence[ReferenceJob], metas: Sequence[dict[str, Any]]) -> ReferenceSet:
    """The set from its trained jobs (their φ rows), written to the set's folder."""
    job = jobs[0]
    folder = Path(job.folder)
    ids = version.table["sample_id"].to_numpy(dtype=object)
    split = version.table["split"].to_numpy(dtype=object)
    is_train = split == "train"
    member = np.zeros((job.k, len(ids)), bool)
    member[:, is_train] = assign_members(ids[is_train], job.k, job.seed)
    half = member.copy()
    half[:, ~is_train] = halves(ids[~is_train], job.k, job.seed)
    by_index = {int(m["index"]): m for m in metas}
    phi = np.stack([np.load(folder / f"ref-{j}.npy", allow_pickle=False) for j in range(job.k)])
    refs = ReferenceSet(key=job.key, k=job.k, seed=job.seed, dataset=str(version.meta["dataset"]),
                        version=version.version, fingerprint=version.fingerprint, arch=job.arch,
                        arch_config=job.arch_config, recipe=job.recipe, ids=ids, split=split,
                        label=version.table["label"].to_numpy(dtype=np.int64), member=member, half=half, phi=phi,
                        seconds=np.array([float(by_index[j]["seconds"]) for j in range(job.k)]),
                        device=str(by_index[0].get("device", "cpu")))
    refs.write(folder)
    return refs


Mapper = Callable[[Callable[[ReferenceJob], dict[str, Any]], list[ReferenceJob]], Iterable[dict[str, Any]]]


@dataclass(frozen=True)
class Trained:
    """A reference set and whether it came from the cache."""

    refs: ReferenceSet
    folder: Path
    cached: bool


def train_references(version: DatasetVersion, root: Path, arch: str, arch_config: dict[str, Any], recipe: Recipe,
                     k: int, seed: int, device: str = "auto", deterministic: bool = True, progress: bool = False,
                     map_fn: Mapper = map, reason: str = "", batch_size: int = 1024) -> Trained:
    """Load the reference set of ``version`` from ``root``, or train its K models and score every sample.

    Args:
        version: a written dataset version (its folder is what the jobs read).
        root: the folder holding reference sets (``artifacts/references``).
        arch, arch_config, recipe: the serving model's architecture and training recipe.
        k, seed: how many references, and the seed of the assignment and of their trainings.
        map_fn: ``map(train_one, jobs)``-like; tasks/ passes one that submits Prefect tasks.
        reason: why the set is being trained, for the log line.
        progress: a progress bar over the K models (and each model's own training bar).

    Returns:
        The set, its folder, and whether it was already there.
    """
    jobs = plan(version, root, arch, arch_config, recipe, k, seed, device, deterministic, progress, batch_size)
    folder = Path(jobs[0].folder)
    if (folder / SET_FILE).exists():
        return Trained(ReferenceSet.load(folder), folder, True)
    done = sum((folder / f"ref-{j}.json").exists() for j in range(k))
    log.warning("training %d reference model%s of %s %s on %s (%s); %d already done", k, "s" if k > 1 else "",
                arch, jobs[0].key, version.label, reason or "none cached for this version", done)
    bar = _progress(k, f"references {version.label}") if progress else None
    metas = []
    for meta in map_fn(train_one, jobs):
        metas.append(meta)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(last=f"{float(meta['seconds']):.0f}s")
    if bar is not None:
        bar.close()
    return Trained(assemble(version, jobs, metas), folder, False)


def _progress(total: int, desc: str):
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="model", file=sys.stderr, leave=True)


# ---- finding a usable set -------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """A usable reference set for a dataset version, and the samples erased since it was trained."""

    refs: ReferenceSet
    folder: Path
    out_only: tuple[str, ...]

    @property
    def current(self) -> bool:
        """True when the set was trained on exactly this version (nothing erased since)."""
        return not self.out_only

    def describe(self) -> dict[str, Any]:
        r = self.refs
        return {"key": r.key, "k": r.k, "seed": r.seed, "dataset": r.dataset, "version": r.version,
                "fingerprint": r.fingerprint, "folder": str(self.folder), "erased_since": len(self.out_only),
                "train_seconds": float(np.sum(r.seconds))}


def find_usable(root: Path, version: DatasetVersion, arch: str, arch_config: dict[str, Any], recipe: Recipe, k: int,
                seed: int) -> Selection | None:
    """The newest reference set under ``root`` that can serve ``version``, or None.

    A set serves a version when it has the same architecture, recipe, K and seed, was trained on this or an
    earlier version of the same dataset, and holds every sample of this version with the same split and label
    (versions only ever lose samples). Training samples it holds that this version no longer has were erased
    since: they are returned as ``out_only``.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    candidates = []
    for meta_path in root.glob(f"*/{SET_FILE}"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if (meta.get("role") == "reference-set" and meta.get("dataset") == version.meta["dataset"]
                and meta.get("arch") == arch and meta.get("arch_config") == dict(arch_config)
                and meta.get("recipe") == asdict(recipe) and meta.get("k") == k and meta.get("seed") == seed
                and int(meta.get("version", 10**9)) <= version.version):
            candidates.append((int(meta["version"]), meta.get("data") == version.fingerprint, meta_path.parent))
    table = version.table
    for _, _, folder in sorted(candidates, key=lambda c: (c[0], c[1]), reverse=True):
        try:
            refs = ReferenceSet.load(folder)
        except DataError as exc:
            log.warning("skipping reference set %s: %s", folder.name, exc)
            continue
        pos = refs._index.get_indexer(table["sample_id"].to_numpy(dtype=object))
        if (pos < 0).any():
            continue
        if not (np.array_equal(refs.split[pos].astype(str), table["split"].to_numpy(dtype=str))
                and np.array_equal(refs.label[pos], table["label"].to_numpy(dtype=np.int64))):
            continue
        current_train = set(table.loc[table["split"] == "train", "sample_id"])
        erased = tuple(sorted(s for s in refs.train_ids if s not in current_train))
        return Selection(refs, folder, erased)
    return None


# ---- a project's reference sets ---------------------------------------------------------------------
def root_of(project: "Project") -> Path:
    """Where a project keeps its reference sets."""
    return project.artifacts_dir / "references"


def project_plan(project: "Project", version: DatasetVersion, k: int | None = None, progress: bool | None = None
                 ) -> list[ReferenceJob]:
    """The jobs of the project's reference set for ``version`` (K from ``references.k`` unless given)."""
    from forgetflow import pipeline

    name, config = pipeline.arch(project, version)
    p = project.params
    return plan(version, root_of(project), name, config, pipeline.recipe(project), k or p.references.k,
                p.references.seed, p.train.device, p.train.deterministic,
                p.train.progress if progress is None else progress, p.evaluate.batch_size)


def project_usable(project: "Project", version: DatasetVersion, k: int | None = None) -> Selection | None:
    """The newest usable reference set of the project for ``version`` (see :func:`find_usable`)."""
    from forgetflow import pipeline

    name, config = pipeline.arch(project, version)
    return find_usable(root_of(project), version, name, config, pipeline.recipe(project),
                       k or project.params.references.k, project.params.references.seed)


def project_train(project: "Project", version: DatasetVersion, k: int | None = None, map_fn: Mapper = map,
                  reason: str = "", progress: bool | None = None) -> Trained:
    """Train (or load) the project's reference set for ``version`` with the serving recipe."""
    from forgetflow import pipeline

    name, config = pipeline.arch(project, version)
    p = project.params
    return train_references(version, root_of(project), name, config, pipeline.recipe(project), k or p.references.k,
                            p.references.seed, p.train.device, p.train.deterministic,
                            p.train.progress if progress is None else progress, map_fn, reason, p.evaluate.batch_size)


# ---- what the MIA registry and the evidence read -----------------------------------------------------
@dataclass(frozen=True)
class ReferenceContext:
    """A usable reference set, the samples erased since it was trained, and the attack settings."""

    refs: ReferenceSet
    settings: "ReferenceParams"
    out_only: tuple[str, ...] = ()

    @classmethod
    def of(cls, selection: Selection, settings: "ReferenceParams", also_out_only: Iterable[str] = ()
           ) -> "ReferenceContext":
        """From a :class:`Selection`; ``also_out_only`` adds samples erased by the batch at hand."""
        return cls(selection.refs, settings, tuple(sorted(set(selection.out_only) | set(also_out_only))))

    def population_ids(self, candidates: Sequence[str] | np.ndarray) -> np.ndarray:
        """RMIA's population: a seeded subset of ``candidates`` (the validation split), at most rmia_population."""
        ids = np.sort(np.asarray(candidates, dtype=object))
        if len(ids) <= self.settings.rmia_population:
            return ids
        rng = np.random.default_rng(self.settings.seed)
        return np.sort(rng.choice(ids, self.settings.rmia_population, replace=False))

    def population(self, model: "nn.Module", val: Any, device: torch.device | str = "cpu",
                   batch_size: int = 1024) -> "Population | None":
        """The target's φ on the population (a subset of ``val``, a SampleSet) and the references' view of it."""
        from forgetflow.metrics.membership import Population
        from forgetflow.training import outputs

        if val is None or len(val) == 0:
            return None
        chosen = self.population_ids(val.ids)
        samples = val.subset(pd.Index(val.ids).get_indexer(chosen))
        out = outputs(model, samples, batch_size, device)
        return Population(logit_confidence(out.logits, out.labels), self.refs.view(chosen))

    def inputs(self, model: "nn.Module", splits: "Splits", device: torch.device | str = "cpu",
               batch_size: int = 1024) -> "ReferenceInputs":
        """What the registered ``lira``/``rmia`` conventions read for one target model on a batch's sets."""
        from forgetflow.metrics.membership import ReferenceInputs

        forget_out_only = set(self.out_only) | {str(s) for s in splits.forget.ids}
        return ReferenceInputs(forget=self.refs.view(splits.forget.ids, forget_out_only),
                               test=self.refs.view(splits.test.ids),
                               population=self.population(model, splits.val, device, batch_size),
                               settings=self.settings)
