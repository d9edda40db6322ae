"""Reference models on digits with real training: trained once and cached, erased samples OUT-only, and a model
that saw some samples many times is caught by both per-sample attacks (a model that never saw them is not)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from forgetflow.config import ReferenceParams
from forgetflow.data import DatasetVersion, SampleSet, build_splits
from forgetflow.metrics import evaluate_model
from forgetflow.models import build_model, load_checkpoint
from forgetflow.references import ReferenceContext, assign_members, find_usable, train_references
from forgetflow.runtime import RunContext
from forgetflow.training import train_model
from tests.conftest import TINY_ARCH, TINY_RECIPE

K = 4
RECIPE = replace(TINY_RECIPE, epochs=8)  # the references' recipe is every target's recipe here


@pytest.fixture(scope="module")
def trained(digits_version: DatasetVersion, tmp_path_factory):
    root = tmp_path_factory.mktemp("references")
    calls = []

    def counting_map(fn, jobs):
        for job in jobs:
            calls.append(job.index)
            yield fn(job)

    first = train_references(digits_version, root, *TINY_ARCH, RECIPE, K, seed=0, device="cpu", map_fn=counting_map)
    return root, first, list(calls)


def test_references_train_once_then_load(trained, digits_version):
    root, first, calls = trained
    assert not first.cached and calls == [0, 1, 2, 3]
    refs = first.refs
    assert refs.phi.shape == (K, len(digits_version.table)) and np.isfinite(refs.phi).all()
    train = digits_version.rows("train")
    assert np.array_equal(refs.member[:, refs.split == "train"], assign_members(train["sample_id"].to_numpy(), K, 0))
    assert not refs.member[:, refs.split != "train"].any()
    for j in range(K):
        meta = json.loads((first.folder / f"ref-{j}.json").read_text())
        assert meta["role"] == "reference" and meta["data"] == digits_version.fingerprint
        assert meta["samples"] == int(refs.member[j].sum()) and meta["index"] == j and meta["seconds"] > 0
        # the stored φ row is the stored model's: scoring happened once, after training
        model = load_checkpoint(first.folder / f"ref-{j}.pt")
        from forgetflow.references import logit_confidence
        from forgetflow.training import outputs

        out = outputs(model, digits_version.sample_set(digits_version.table.head(20)))
        assert logit_confidence(out.logits, out.labels) == pytest.approx(refs.phi[j, :20], abs=1e-4)

    again_calls = []
    second = train_references(digits_version, root, *TINY_ARCH, RECIPE, K, seed=0, device="cpu",
                              map_fn=lambda fn, jobs: [again_calls.append(j.index) or fn(j) for j in jobs])
    assert second.cached and again_calls == []
    assert np.array_equal(second.refs.phi, refs.phi) and second.refs.key == refs.key


def test_an_interrupted_set_trains_only_what_is_missing(trained, digits_version, tmp_path):
    root, first, _ = trained
    import shutil

    copy = tmp_path / "refs"
    shutil.copytree(root, copy)
    folder = copy / first.refs.key
    (folder / "references.json").unlink()
    (folder / "ref-2.json").unlink()
    calls = []

    def spy(fn, jobs):
        for job in jobs:
            meta = fn(job)
            calls.append((job.index, meta["seconds"]))
            yield meta
    resumed = train_references(digits_version, copy, *TINY_ARCH, RECIPE, K, seed=0, device="cpu", map_fn=spy)
    assert not resumed.cached
    retrained = [j for j, seconds in calls if seconds != first.refs.seconds[j]]
    assert retrained == [2]
    assert np.allclose(resumed.refs.phi, first.refs.phi, atol=1e-4)   # deterministic training, same model


def test_erased_samples_are_out_only_until_the_next_set(trained, digits_version, tmp_path):
    root, first, _ = trained
    erased = digits_version.rows("train")["sample_id"].tolist()[10:16]
    v2 = digits_version.without(erased, "batch-x")
    v2.write(tmp_path / "v2")
    found = find_usable(root, v2, *TINY_ARCH, RECIPE, K, 0)
    assert found.refs.key == first.refs.key and found.out_only == tuple(sorted(erased))
    view = found.refs.view(erased, found.out_only)
    assert (view.n_in == 0).all() and (view.n_out == K // 2).all()
    kept = found.refs.view(digits_version.rows("train")["sample_id"].tolist()[:5], found.out_only)
    assert (kept.n_in == K // 2).all() and (kept.n_out == K // 2).all()


@pytest.mark.slow
def test_both_attacks_catch_samples_the_model_saw_many_times(trained, digits_version):
    _, first, _ = trained
    # Digits are easy: a typical sample is fitted as well after one look as after twenty, so duplication shows on
    # atypical samples (the long tail where memorisation lives). The 30 samples the references find hardest
    # (lowest mean φ over all four) are duplicated; the choice reads the references only, never a target.
    train_ids = first.refs.train_ids
    hardness = first.refs.view(train_ids).phi.mean(0)
    dup_ids = sorted(train_ids[np.argsort(hardness)[:30]])
    splits = build_splits(digits_version, list(dup_ids))
    heavy = SampleSet.concat(splits.train, *([splits.forget] * 20))   # the 30 samples 21 times each

    def fit(samples: SampleSet):
        run = RunContext.create(7, "cpu")
        model = build_model(TINY_ARCH[0], **TINY_ARCH[1])
        return train_model(model, samples, RECIPE, run)

    context = ReferenceContext(first.refs, ReferenceParams(k=K, rmia_population=140))
    mias = ["lira", "rmia"]
    memorised = evaluate_model(fit(heavy), splits, "cpu", mias=mias, references=context).metrics
    oracle = evaluate_model(fit(splits.retain), splits, "cpu", mias=mias, references=context).metrics
    # detected at 1 % FPR: the threshold is the 99th percentile of the test samples under the same model.
    # Measured (deterministic training): LiRA 26.7 % vs 0 %, RMIA 66.7 % vs 20 %. The references train on half as
    # much data as the targets, which are more confident everywhere, most on hard samples: RMIA's comparison with
    # population samples under the same target absorbs more of that than LiRA's Gaussian on the references, and
    # flags more of these (hard, never-seen) samples under the oracle too (docs/verification.md).
    assert memorised["lira_detected"] >= 20.0 and oracle["lira_detected"] <= 5.0, (memorised, oracle)
    assert memorised["rmia_detected"] >= 50.0 and oracle["rmia_detected"] <= 25.0, (memorised, oracle)
    assert memorised["rmia_detected"] >= oracle["rmia_detected"] + 30.0
