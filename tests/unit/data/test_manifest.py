import pytest

from forgetflow.data import Manifest, RequestRef, resolve
from forgetflow.errors import DataError


def test_subject_request_resolves_to_all_its_training_samples(digits_version):
    subject = digits_version.subjects()[0]
    m = resolve(digits_version, "b1", [RequestRef("r1", "privacy", subject_id=subject)])
    expected = sorted(digits_version.rows("train").query("subject_id == @subject")["sample_id"])
    assert m.forget_ids() == expected and m.samples_of("r1") == expected


def test_unknown_subject_becomes_an_empty_row(digits_version):
    m = resolve(digits_version, "b1", [RequestRef("r1", "privacy", subject_id="subj-x")])
    assert m.rows["sample_id"].isna().all() and m.forget_ids() == []


def test_hash_is_stable_and_excludes_change_it(digits_version, tmp_path):
    reqs = [RequestRef("r2", "privacy", sample_id=digits_version.rows("train")["sample_id"].iloc[3]),
            RequestRef("r1", "privacy", subject_id=digits_version.subjects()[1])]
    a = resolve(digits_version, "b1", reqs)
    b = resolve(digits_version, "b1", list(reversed(reqs)))
    assert a.sha256 == b.sha256 and a.forget_ids() == b.forget_ids()
    c = a.with_exclusions({"r2": "bad"})
    assert c.sha256 != a.sha256 and c.valid_request_ids == ["r1"]
    digest = c.write(tmp_path / "m.json")
    again = Manifest.read(tmp_path / "m.json")
    assert again.sha256 == digest and again.forget_ids() == c.forget_ids()


def test_edited_manifest_is_rejected(digits_version, tmp_path):
    m = resolve(digits_version, "b1", [RequestRef("r1", "privacy", subject_id=digits_version.subjects()[0])])
    m.write(tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text().replace('"r1"', '"r9"')
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(DataError, match="hash mismatch"):
        Manifest.read(tmp_path / "m.json")
