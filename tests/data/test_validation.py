"""The GX suites accept a good dataset and manifest and reject each bad fixture with a readable reason."""

import numpy as np
import pytest

from forgetflow.data import DatasetVersion, RequestRef, resolve
from tasks import validation


@pytest.fixture(scope="module")
def v2(digits_version, tmp_path_factory) -> DatasetVersion:
    """A version 2 with one subject erased (so 'already erased' can be tested)."""
    subject = digits_version.subjects()[5]
    ids = digits_version.rows("train").query("subject_id == @subject")["sample_id"].tolist()
    v = digits_version.without(ids, "b0")
    v.write(tmp_path_factory.mktemp("v2") / "current")
    return DatasetVersion.load(v.root)


def test_good_batch_passes(v2):
    m = resolve(v2, "b1", [RequestRef("ok", "privacy", subject_id=v2.subjects()[0])])
    outcome = validation.validate(v2, m)
    assert outcome.success and not outcome.quarantine and not outcome.blocking
    assert outcome.results["manifest"]["success"] is True


def test_each_bad_request_is_quarantined_with_its_reason(v2, digits_version):
    erased_subject = digits_version.subjects()[5]
    train = v2.rows("train")
    reqs = [
        RequestRef("ok", "privacy", subject_id=v2.subjects()[0]),
        RequestRef("ghost", "privacy", subject_id="subj-nobody"),
        RequestRef("unknown", "privacy", sample_id="digits-9999"),
        RequestRef("test-split", "privacy", sample_id=v2.rows("test")["sample_id"].iloc[0]),
        RequestRef("again", "privacy", subject_id=erased_subject),
    ]
    outcome = validation.validate(v2, resolve(v2, "b1", reqs))
    q = outcome.quarantine
    assert set(q) == {"ghost", "unknown", "test-split", "again"}
    assert "subj-nobody is unknown" in q["ghost"]
    assert "digits-9999 is not in dataset version digits@v2" in q["unknown"]
    assert "only training samples can be forgotten" in q["test-split"]
    assert "already erased (in version 2)" in q["again"]


def test_exact_duplicate_in_retain_is_caught(v2, tmp_path):
    table = v2.table.copy()
    train = table[table["split"] == "train"]
    a, b = train.index[0], train.index[1]
    images = v2.images.copy()
    images[b] = images[a]  # sample b becomes an exact copy of sample a
    table.loc[b, "content_hash"] = table.loc[a, "content_hash"]
    dup = DatasetVersion(meta=dict(v2.meta), table=table, erased=v2.erased, _images=images)
    m = resolve(dup, "b1", [RequestRef("leak", "privacy", sample_id=table.loc[a, "sample_id"])])
    outcome = validation.validate(dup, m)
    assert "exact duplicate " + table.loc[b, "sample_id"] in outcome.quarantine["leak"]


def test_broken_dataset_blocks(v2):
    table = v2.table.copy()
    table.loc[table.index[3], "label"] = 42
    table.loc[table.index[4], "sample_id"] = table.loc[table.index[5], "sample_id"]
    bad = DatasetVersion(meta=dict(v2.meta), table=table, erased=v2.erased, _images=v2.images)
    outcome = validation.validate(bad, resolve(bad, "b1", [RequestRef("x", "privacy", subject_id=bad.subjects()[0])]))
    assert any("labels_in_domain" in b and "label 42" in b for b in outcome.blocking)
    assert any("sample_ids_unique" in b for b in outcome.blocking)
    assert not outcome.success


def test_bad_pixels_block(v2):
    images = v2.images.astype(np.int16)
    images[0, 0, 0, 0] = 300
    bad = DatasetVersion(meta=dict(v2.meta), table=v2.table, erased=v2.erased, _images=images)
    outcome = validation.validate(bad, resolve(bad, "b1", [RequestRef("x", "privacy", subject_id=bad.subjects()[0])]))
    assert any("pixels_uint8" in b for b in outcome.blocking)
    assert any("pixels_range" in b for b in outcome.blocking)


def test_class_balance_shift_is_a_warning_only(v2):
    train = v2.rows("train")
    whole_class = train[train["label"] == 3]["sample_id"].tolist()
    reqs = [RequestRef(f"r{i}", "privacy", sample_id=s) for i, s in enumerate(whole_class)]
    outcome = validation.validate(v2, resolve(v2, "b1", reqs))
    assert outcome.success and any("class 3 share" in w for w in outcome.warnings)
