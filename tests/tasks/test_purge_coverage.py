"""Every place the project writes sample content is purged or named (issue 9 §2): an erased image's bytes are
planted in each, and the purge must remove them or its evidence (what every receipt carries) must name them.
Models trained on erased samples lose their weights under ``purge.models``; a version whose weights are gone
can never be promoted or rolled back to.

Real DVC (local remote), MLflow (SQLite + folder artifact store) and the ledger; no Prefect."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from forgetflow import pipeline
from forgetflow.data import DatasetVersion
from forgetflow.errors import PromotionRefused
from forgetflow.models import build_model
from forgetflow.project import Project
from tasks import benchmarking, promotion, purge, tracking, versioning
from tests.tasks.test_purge import bare_hashes, independent_scan


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _erase(project: Project, n: int, batch_id: str) -> tuple[DatasetVersion, DatasetVersion]:
    before = pipeline.current_version(project)
    new = before.without(before.rows("train")["sample_id"].iloc[:n].tolist(), batch_id, pipeline.tombstone_key(project))
    new.write(project.version_dir)
    versioning.track_and_push(project)
    return before, DatasetVersion.load(project.version_dir)


def _named(evidence: dict, obj: str) -> list[dict]:
    return [r for r in evidence["remaining"] if obj in r["object"]]


@pytest.mark.slow
def test_planted_erased_pixels_are_removed_or_named_everywhere(digits_project):
    project = digits_project
    root = project.root
    bench = benchmarking.bench_version(project, "digits")  # `forgetflow bench` keeps a full copy of version 1
    v1, v2 = _erase(project, 4, "b1")
    stone = v2.erased["sample_id"].iloc[0]
    pixels = v1.images[v1.table.index[v1.table["sample_id"] == stone][0]]  # [1, 8, 8]
    block = np.stack([pixels, v1.images[-1]])
    bare = bare_hashes(project, v2)
    assert len(bare) == 4 and bench.fingerprint == v1.fingerprint

    # an erased image planted wherever the project writes
    planted = {
        "artifacts": root / "artifacts" / "scratch" / "planted.npy",
        "state": root / "state" / "reports" / "b-old" / "outputs-planted.npz",
        "dvc-tmp": root / ".dvc" / "tmp" / "planted.npy",
    }
    for path in planted.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    planted["artifacts"].write_bytes(_npy(block))
    np.savez_compressed(planted["state"], forget_loss=np.zeros(2, dtype=np.float32), pixels=block)
    planted["dvc-tmp"].write_bytes(_npy(pixels))
    leftover = project.data_dir / ".current.k3x9q2ab"  # what an interrupted DatasetVersion.write leaves
    (leftover / "shards").mkdir(parents=True)
    np.save(leftover / "shards" / "shard-00000.npy", block)
    candidate = project.state_dir / "candidates" / "b-crashed.pt"
    candidate.parent.mkdir(parents=True)
    torch_model = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8, width=8)
    from forgetflow.models import save_checkpoint

    save_checkpoint(torch_model, candidate)
    champion = tracking.require_champion(project)
    run_id = tracking.version_info(project, champion)["run_id"]
    mlflow_file = project.state_dir / "to-log" / "pixels.npy"
    mlflow_file.parent.mkdir(parents=True)
    mlflow_file.write_bytes(_npy(block))
    tracking.log_run_file(project, run_id, mlflow_file, "reports")
    shutil.rmtree(mlflow_file.parent)
    old_report = project.state_dir / "reports" / "b-old" / "validation.json"
    old_report.write_text(json.dumps({"duplicate_of": sorted(bare)[0]}))  # a bare hash, as reports had them
    cached = sorted((project.oracle_dir).glob("original-*.pt"))
    assert cached, "bootstrap caches the original under artifacts/oracles"

    evidence = purge.run_purge(project, "b1")

    # what the purge cleans itself
    assert evidence["copies"]["artifacts/bench/digits"]["action"] == "stripped"
    assert evidence["copies"]["artifacts/bench/digits"]["removed_samples"] == 4
    assert evidence["copies"]["artifacts/prepared"]["removed_samples"] == 4
    assert independent_scan(root / "artifacts" / "bench", bare)[1] == []
    assert sorted(evidence["temporary"]["deleted"]) == ["data/.current.k3x9q2ab", "state/candidates/b-crashed.pt"]
    assert not leftover.exists() and not candidate.exists()
    # what it cannot clean, it names: every planted copy, with its store, in the evidence every receipt carries
    assert not evidence["scan"]["ok"]
    for store, path in planted.items():
        rel = str(path.relative_to(root))
        hits = _named(evidence, rel)
        assert hits and hits[0]["store"] == store and "erased content" in hits[0]["what"], (store, evidence["remaining"])
        assert path.exists()  # not the purge's file: named, not deleted
    logged = [r for r in evidence["remaining"] if r["store"] == "mlflow" and r["object"].endswith("reports/pixels.npy")]
    assert logged and logged[0]["object"].startswith(f"mlflow:run/{run_id}/")
    assert _named(evidence, "state/reports/b-old/validation.json")[0]["what"].startswith("names 1 erased image(s) by bare")
    assert "ERASED CONTENT REMAINS" in purge.describe(evidence)

    # models: the cached original (trained on version 1) loses its weights, its meta stays and says why
    models = evidence["models"]
    assert models["retention_days"] == 0
    deleted = {d["model"] for d in models["deleted"]}
    for path in cached:
        assert str(path.relative_to(root)) in deleted and not path.exists()
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["weights_purged_at"] and "b1" in meta["weights_purged_by"]
    assert "artifacts/models/original.pt" in deleted
    # the registered original still serves (champion): its weights stay until it stops, and the receipts say so
    retained = [r for r in models["retained"] if r["model"] == f"registry version {champion}"]
    assert retained and "champion" in retained[0]["why"]
    assert _named(evidence, f"registry version {champion}")

    # a clean scan once the named files are gone
    for path in planted.values():
        path.unlink()
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(tracking.client(project).get_run(run_id).info.artifact_uri).delete_artifacts("reports/pixels.npy")
    old_report.unlink()
    again = purge.scan_only(project)
    assert again["scan"]["ok"] and not again["scan"]["leaks"] and not again["scan"]["bare_mentions"]


@pytest.mark.slow
def test_superseded_weights_are_deleted_and_that_version_never_serves_again(digits_project):
    project = digits_project
    original = tracking.require_champion(project)
    # a successor becomes champion (as after a batch), so the original no longer serves
    model = tracking.load_version_model(project, original)
    _, successor = tracking.log_model_run(project, model, "retrain", {"role": "retrain"}, {"test_acc": 90.0},
                                          {"forgetflow.role": "retrain", "batch_id": "b1", "dataset_version": "2"})
    book = project.open_ledger()
    tracking.move_alias(project, book, tracking.CHAMPION, successor, "test", "test")
    v1, v2 = _erase(project, 3, "b1")
    book.record_version(pipeline.version_row(v2, versioning.data_md5(project), "b1"))  # what the batch records
    from tasks import lineage as lineage_tasks

    lineage_tasks.supersede(project, "b1")
    store = Path(project.artifact_root[len("file://"):])
    weights_before = {p.relative_to(store) for p in store.rglob("*") if p.name in ("checkpoint.pt", "model.pth")}
    assert len(weights_before) == 4  # two versions, each a checkpoint and a logged model

    # a retention window first: nothing is deleted yet, the evidence says until when
    windowed = project.with_params(project.params.model_copy(update={"purge": project.params.purge.model_copy(update={"models": 30})}))
    evidence = purge.run_purge(windowed, "b1")
    kept = [r for r in evidence["models"]["retained"] if r["model"] == f"registry version {original}"]
    superseded_at = dt.datetime.fromisoformat(tracking.version_info(project, original)["tags"]["forgetflow.superseded_at"])
    assert kept and dt.datetime.fromisoformat(kept[0]["until"]) == superseded_at + dt.timedelta(days=30)
    assert {p.relative_to(store) for p in store.rglob("*") if p.name in ("checkpoint.pt", "model.pth")} == weights_before

    # purge.models: 0 (the default): the superseded original's weights go; its version, tags and run stay
    evidence = purge.run_purge(project, "b1")
    gone = [d for d in evidence["models"]["deleted"] if d["model"] == f"registry version {original}"]
    assert gone and len(gone[0]["artifacts"]) == 2 and gone[0]["holds_data_erased_by"] == ["b1"]
    left = {p.relative_to(store) for p in store.rglob("*") if p.name in ("checkpoint.pt", "model.pth")}
    assert len(left) == 2 and left < weights_before
    info = tracking.version_info(project, original)
    assert info["tags"][tracking.WEIGHTS_PURGED_TAG].startswith("20") and tracking.run_exists(project, info["run_id"])
    assert info["tags"]["forgetflow.role"] == "original"
    assert tracking.load_version_model(project, successor) is not None  # the champion keeps its weights
    again = purge.run_purge(project, "b1")
    assert again["models"]["already_deleted"] == 1 and not again["models"]["deleted"]

    # never again: neither promotion nor rollback, with the reason
    with pytest.raises(PromotionRefused, match=f"version {original} still holds data erased by batch b1: promotion "
                                               r"refused .*; its weights were purged 20.*, so it can never serve again"):
        promotion.promote_version(project, original, "try", "test", override=True)
    with pytest.raises(PromotionRefused, match=r"rollback refused .*; its weights were purged"):
        promotion.rollback(project, None, "try", "test")
