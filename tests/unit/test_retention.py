"""Which cached models hold erased samples, and when their weights go (forgetflow/retention.py)."""

import datetime as dt

from forgetflow.retention import VersionRecord, cached_holding, decide

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
HISTORY = [
    VersionRecord(1, "fp1"),
    VersionRecord(2, "fp2", "b1", T0, "sha-b1"),
    VersionRecord(3, "fp3", "b2", T0 + dt.timedelta(days=2), "sha-b2"),
]


def test_a_model_holds_every_later_erasure_except_the_one_it_excluded():
    assert cached_holding({"data": "fp3", "excluded": ""}, HISTORY).status == "clean"  # the current data
    original = cached_holding({"data": "fp1", "excluded": ""}, HISTORY)
    assert original.status == "holds" and original.batches == ["b1", "b2"] and original.since == T0
    assert original.trained_on == 1
    # batch b1's oracle: trained on version 1 without b1's samples; b2's erasure came later
    oracle_b1 = cached_holding({"data": "fp1", "excluded": "sha-b1"}, HISTORY)
    assert oracle_b1.batches == ["b2"] and oracle_b1.since == T0 + dt.timedelta(days=2)
    assert cached_holding({"data": "fp2", "excluded": "sha-b2"}, HISTORY).status == "clean"  # b2's own oracle
    # a retrain of a whole version ("erased:N") excludes nothing beyond that version
    assert cached_holding({"data": "fp2", "excluded": "erased:4"}, HISTORY).batches == ["b2"]
    # a manifest hash of another batch excludes nothing
    assert cached_holding({"data": "fp1", "excluded": "sha-b2"}, HISTORY).batches == ["b1", "b2"]
    assert cached_holding({"data": "other-dataset"}, HISTORY).status == "unknown"


def test_the_retention_window():
    now = T0 + dt.timedelta(days=10)
    assert decide(T0, 0, now).action == "delete"
    assert decide(T0, 10, now).action == "delete"  # the window has just ended
    kept = decide(T0, 30, now)
    assert kept.action == "retain" and kept.until == T0 + dt.timedelta(days=30) and "30 day(s)" in kept.why
    assert decide(None, 0, now).action == "delete"  # no superseded time: counted from now
    assert decide(None, 1, now).until == now + dt.timedelta(days=1)
    never = decide(T0, None, now)
    assert never.action == "retain" and never.until is None and "null" in never.why
    serving = decide(T0, 0, now, serving="champion")
    assert serving.action == "retain" and "champion" in serving.why
