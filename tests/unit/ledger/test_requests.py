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
    a = make_request("a", "privacy", subject_id="s", received_at="2026-11-20T10:00:00Z", now=NOW)
    b = make_request("b", "privacy", subject_id="s", received_at="2026-11-20T10:00:00Z", now=NOW)
    c = make_request("a", "other", subject_id="s", received_at="2026-11-20T10:00:00Z", now=NOW)
    assert a.content_sha256 == b.content_sha256 != c.content_sha256


def test_a_row_with_another_field_count_than_the_header_is_an_error_naming_its_line():
    """A truncated line (four fields under a five-column header) used to be read with received_at empty,
    i.e. stamped with the import time; a row with a field too many is refused the same way."""
    text = HEADER + "ok-1,s1,,privacy,2026-11-20T10:00:00Z\n\nbad-15,SUBJ,,privacy\nlong,s1,,privacy,2026-11-20T10:00:00Z,x\n"
    with pytest.raises(RequestError) as info:
        parse_csv(text, "r.csv", now=NOW)
    msg = str(info.value)
    assert msg.startswith("r.csv: 2 bad row(s), nothing imported")
    assert "line 4 (bad-15): 4 fields where the header has 5" in msg  # line 3 is blank
    assert "line 5 (long): 6 fields where the header has 5" in msg
    quoted = HEADER + 'q-1,s1,,privacy,"2026-11-20T10:00:00Z"\n"q-2",s2,,"priv\nacy"\n'
    with pytest.raises(RequestError, match="line 3 \\(q-2\\): 4 fields"):  # numbered by the line a row starts on
        parse_csv(quoted, "r.csv", now=NOW)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+00:45"])
def test_a_time_before_year_one_in_utc_is_a_request_error(when):
    with pytest.raises(RequestError, match="received_at .* out of range"):
        make_request("r", "privacy", subject_id="s", received_at=when, now=NOW, max_age_days=None)
    with pytest.raises(RequestError, match="received_at"):
        parse_csv(HEADER + f"r,s,,privacy,{when}\n", now=NOW)


def test_received_at_has_a_lower_bound_on_every_path():
    old = (NOW - dt.timedelta(days=366)).isoformat()
    recent = (NOW - dt.timedelta(days=364)).isoformat()
    assert make_request("r", "privacy", subject_id="s", received_at=recent, now=NOW).received_at < NOW
    for received_at in (old, NOW - dt.timedelta(days=366), "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z"):
        with pytest.raises(RequestError, match=r"more than 365 days ago \(intake.max_age_days\)"):
            make_request("r", "privacy", subject_id="s", received_at=received_at, now=NOW)
    with pytest.raises(RequestError, match="line 2 \\(r\\): received_at .* more than 30 days ago"):
        parse_csv(HEADER + f"r,s,,privacy,{recent}\n", now=NOW, max_age_days=30)
    assert make_request("r", "privacy", subject_id="s", received_at=old, now=NOW, max_age_days=400).received_at < NOW
    assert make_request("r", "privacy", subject_id="s", received_at="1970-01-01T00:00:00Z", now=NOW,
                        max_age_days=None).received_at.year == 1970
