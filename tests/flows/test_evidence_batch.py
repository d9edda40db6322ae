"""Membership evidence in a deletion batch, end to end on digits with real components (Prefect harness, MLflow,
DVC, the ledger) and real reference models.

The serving model memorised the forget samples (each seen 30 times; the samples are the ones its reference
models find hardest, where memorisation shows): the evidence detects every request, the batch escalates once
(more budget, same method), fails again, retrains, and the retrained model passes. The receipts carry each
request's verdict, and altering one fails `receipt verify`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flows.deletion_batch import deletion_batch
from forgetflow import pipeline, references
from forgetflow.data.samples import SampleSet
from forgetflow.ledger import parse_csv
from forgetflow.models import build_model
from forgetflow.policy import FULL_RETRAIN_METRIC
from forgetflow.project import Project
from forgetflow.runtime import RunContext
from forgetflow.training import accuracy, train_model
from tasks import receipt_audit, tracking
from tasks.claims import ledger


def _hardest_training_samples(project: Project, n: int) -> list[str]:
    """The ``n`` training samples whose OUT references are least confident of their label."""
    version = pipeline.current_version(project)
    refs = references.project_usable(project, version).refs
    ids = version.rows("train")["sample_id"].to_numpy(dtype=object)
    view = refs.view(ids)
    out = ~view.member
    mean_out = np.where(out, view.phi, 0.0).sum(0) / out.sum(0)
    return sorted(str(s) for s in ids[np.argsort(mean_out)[:n]])


def _serve_a_memorising_model(project: Project, forget_ids: list[str], copies: int = 30) -> str:
    """Train the recipe on the training split with ``forget_ids`` repeated ``copies`` times; make it champion."""
    version = pipeline.current_version(project)
    train = version.rows("train")
    forget = version.sample_set(train[train["sample_id"].isin(forget_ids)])
    seen = SampleSet.concat(version.sample_set(train), *([forget] * (copies - 1)))
    name, config = pipeline.arch(project, version)
    model = build_model(name, **config)
    train_model(model, seen, pipeline.recipe(project), RunContext.create(5, "cpu"))
    metrics = {"test_acc": accuracy(model, version.sample_set(split="test"))}
    tags = {"forgetflow.role": "original", "dataset": str(version.meta["dataset"]), "dataset_version": str(version.version),
            "dataset_fingerprint": version.fingerprint, "train_samples": str(len(train))}
    _, mv = tracking.log_model_run(project, model, "memorising-original", {"role": "original"}, metrics, tags)
    tracking.move_alias(project, ledger(project), tracking.CHAMPION, mv, "a model that memorised the forget set",
                        "test")
    return mv


@pytest.mark.slow
def test_memorised_samples_are_detected_escalated_then_retrained_and_receipts_carry_verdicts(digits_project,
                                                                                           prefect_harness):
    project = digits_project
    forget_ids = _hardest_training_samples(project, 6)
    champion = _serve_a_memorising_model(project, forget_ids)
    text = "request_id,subject_id,sample_id,reason,received_at\n" + "".join(
        f"m{i},,{sid},privacy,2026-11-02T10:00:00Z\n" for i, sid in enumerate(forget_ids))
    project.open_ledger().add(parse_csv(text), source="import")

    # a fine-tune of a few steps leaves the memorisation in place; the oracle runs too (evaluate.oracle: true)
    result = deletion_batch(params_path=str(project.params_path), method="finetune",
                            overrides={"unlearn.methods.finetune.forget_passes": 0.1, "unlearn.methods.finetune.min_steps": 1,
                                       "evaluate.oracle": True,
                                       "gates.cost.max_time_ratio": 1000.0})

    first, escalated = result["attempts"]
    assert first["rule"] == "within-limits" and escalated["rule"] == "escalation"
    for attempt in (first, escalated):
        assert "forgetting" in attempt["failed"] and attempt["evidence"]["detectable_requests"]
        assert attempt["gates"]["forgetting"]["reference"] == "evidence+oracle"
    assert len(first["evidence"]["detectable_requests"]) == 6 and first["evidence"]["batch"]["distinguishable"]
    decision = result["decision"]
    assert (decision["action"], decision["rule"]) == ("retrain", "gate-failure")
    assert "still detectable" in decision["reason"] and "escalation_budget" in decision["reason"]
    assert [a["model_version"] for a in decision["attempts"]] == [first["model_version"], escalated["model_version"]]
    assert result["promoted"] and result["champion_after"] == result["model_version"]

    # the retrained model (the oracle) passes; the serving model before the batch had memorised every request
    ev = result["evidence"]
    assert ev["detectable_requests"] == [] and ev["forgetting_passed"] and ev["privacy_passed"]
    assert result["gates"]["forgetting"]["passed"] and result["gates"]["privacy"]["passed"]
    assert all(r["memorised_before"] and r["statement"].startswith("Detectable before") for r in ev["requests"])
    assert ev["attack"] == "lira" and ev["k"] == project.params.references.k and ev["null_size"] > 100
    assert result["seconds"]["verify"] > 0 and ev["verify_seconds"] == pytest.approx(result["seconds"]["verify-retrain"],
                                                                                    abs=1e-3)
    assert "the last full retrain (train-v1" in result["attempts"][0]["gates"]["cost"]["detail"]
    # the cost gate's yardstick: forgetflow train and this retrain batch both recorded a full retrain
    recorded = [row["batch_id"] for row in ledger(project).quality(FULL_RETRAIN_METRIC)]
    assert recorded == ["train-v1", result["batch_id"]]
    assert tracking.version_info(project, champion)["version"] == champion

    # receipts: per request, the attack, K, the reference set's hash and seed, scores, p-value and verdict
    assert len(result["receipts"]) == 6
    docs = [json.loads((project.root / p).read_text()) for p in result["receipts"]]
    for doc in docs:
        e = doc["evidence"]
        assert e["attack"] == "lira" and e["k"] == project.params.references.k and len(e["reference_sha256"]) == 64
        assert e["reference_seed"] == project.params.references.seed and e["alpha"] == 0.05
        assert e["sample_ids"] == [doc["request"]["sample_id"]] and len(e["scores"]) == 1
        assert e["verdict"] == "not detectable" and e["before"]["verdict"] == "still detectable"
    assert receipt_audit.verify_receipts(project).ok

    # an altered verdict fails verification, by its own numbers and against the stored record
    path = project.root / result["receipts"][2]
    doc = json.loads(path.read_text())
    doc["evidence"]["verdict"] = "still detectable"
    path.write_text(json.dumps(doc))
    problems = receipt_audit.verify_receipts(project).problems
    assert any("evidence: verdict 'still detectable' contradicts its numbers" in p for p in problems)
    assert any("evidence: verdict" in p and "stored record" in p for p in problems)

    html = (project.root / result["report"]["path"]).read_text()
    assert "Membership evidence per request" in html and html.count("<code>m") >= 6
    assert "Membership scores" in html and "erased samples, oracle" not in html  # the retrain is the oracle itself
    assert f"Then version {escalated['model_version']}" in html and "rule <code>escalation</code>" in html

