import datetime as dt

import pytest

from forgetflow.errors import RequestError
from forgetflow.ledger import make_request, parse_csv

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
HEADER = "request_id,subject_id,sample_id,reason,received_at\n"


def test_valid_rows_and_time_forms():
    reqs = parse_csv(HEADER + "a,s1,,privacy,2026-11-20T10:00:00Z\n"
                              "b,,x-1,poisoned,2026-11-20T10:00:00+02:00\n"
                              "c,s2,,other,2026-11-20T10:00:00\n", now=NOW)
    assert [r.request_id for r in reqs] == ["a", "b", "c"]
    assert reqs[1].received_at == dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
    assert reqs[2].received_at.tzinfo is not None  # no zone = UTC


def test_every_bad_row_is_reported_with_its_line_and_nothing_accepted():
    text = HEADER + ("ok,s1,,privacy,2026-11-20T10:00:00Z\n"
                     "both,s1,x,privacy,2026-11-20T10:00:00Z\n"
                     "none,,,privacy,2026-11-20T10:00:00Z\n"
                     "why,s1,,because,2026-11-20T10:00:00Z\n"
                     "when,s1,,privacy,yesterday\n"
                     "future,s1,,privacy,2027-01-01T00:00:00Z\n"
                     ",s1,,privacy,2026-11-20T10:00:00Z\n")
    with pytest.raises(RequestError) as info:
        parse_csv(text, "reqs.csv", now=NOW)
    msg = str(info.value)
    assert msg.startswith("reqs.csv: 6 bad row(s), nothing imported")
    for fragment in ("line 3 (both): give exactly one", "line 4 (none): give exactly one",
                     "line 5 (why): reason 'because'", "line 6 (when): received_at 'yesterday'",
                     "line 7 (future):", "in the future", "line 8: request_id is empty"):
        assert fragment in msg


def test_header_must_match():
    with pytest.raises(RequestError, match="line 1: bad header .*missing reason.*unknown why"):
        parse_csv("request_id,subject_id,sample_id,why,received_at\n", "f.csv")


def test_repeated_id_same_content_once_other_content_error():
    row = "a,s1,,privacy,2026-11-20T10:00:00Z\n"
    assert len(parse_csv(HEADER + row + row, now=NOW)) == 1
    with pytest.raises(RequestError, match="line 3 .*repeats line 2 with different content"):
        parse_csv(HEADER + row + "a,s2,,privacy,2026-11-20T10:00:00Z\n", now=NOW)


def test_content_hash_ignores_the_id_but_not_the_content():
    a = make_request("a", "privacy", subject_id="s", received_at="2026-11-20T10:00:00Z")
    b = make_request("b", "privacy", subject_id="s", received_at="2026-11-20T10:00:00Z")
    c = make_request("a", "other", subject_id="s", received_at="2026-11-20T10:00:00Z")
    assert a.content_sha256 == b.content_sha256 != c.content_sha256
