"""Which erased data a model version still holds, from its lineage."""

from forgetflow.lineage import Erasure, ModelRecord, erased_since, erasures_from_versions, held, root

ERASURES = [Erasure("b1", 2, 5), Erasure("b2", 3, 7), Erasure("b3", 4, 2)]


def rec(version, role, **kw):
    return ModelRecord(version=version, role=role, **kw)


RECORDS = {
    "1": rec("1", "original", dataset_version=1, train_samples=100),
    "2": rec("2", "unlearned", batch_id="b1", parent="1"),  # promoted after b1
    "3": rec("3", "unlearned", batch_id="b2", parent="2"),  # failed the gates: never champion
    "4": rec("4", "unlearned", batch_id="b3", parent="2"),  # unlearned b3 from 2: still holds b2
    "5": rec("5", "retrain", dataset_version=3, batch_id="b3", train_samples=86),
    "6": rec("6", "retrain", dataset_version=4),  # oracle audit on version 4
}


def test_held_follows_the_lineage():
    assert held("1", RECORDS, ERASURES) == ["b1", "b2", "b3"]
    assert held("2", RECORDS, ERASURES) == ["b2", "b3"]
    assert held("3", RECORDS, ERASURES) == ["b3"]
    assert held("4", RECORDS, ERASURES) == ["b2"]
    assert held("5", RECORDS, ERASURES) == [] and held("6", RECORDS, ERASURES) == []


def test_unknown_versions_hold_everything():
    assert held("99", RECORDS, ERASURES) == ["b1", "b2", "b3"]


def test_root_and_erased_since():
    assert root("4", RECORDS).version == "1" and root("5", RECORDS).version == "5"
    assert erased_since(RECORDS["1"], RECORDS, ERASURES) == 14
    assert erased_since(RECORDS["5"], RECORDS, ERASURES) == 0


def test_records_from_registry_tags():
    r = ModelRecord.from_registry({"version": "7", "created_ms": 5, "tags": {
        "forgetflow.role": "unlearned", "batch_id": "b9", "parent_model_version": "6", "dataset_version": "3",
        "forgetflow.superseded_by": "b10"}})
    assert (r.role, r.parent, r.batch_id, r.dataset_version, r.superseded_by) == ("unlearned", "6", "b9", 3, "b10")
    retrain = ModelRecord.from_registry({"version": "8", "tags": {"forgetflow.role": "retrain",
                                                                  "parent_model_version": "6", "train_samples": "80"}})
    assert retrain.parent is None and retrain.train_samples == 80  # a retrain descends from no weights


def test_erasures_from_ledger_rows():
    rows = [{"version": 1, "parent": None, "batch_id": None, "erased_total": 0},
            {"version": 2, "parent": 1, "batch_id": "b1", "erased_total": 5},
            {"version": 3, "parent": 2, "batch_id": "b2", "erased_total": 12}]
    assert erasures_from_versions(rows) == [Erasure("b1", 2, 5), Erasure("b2", 3, 7)]
