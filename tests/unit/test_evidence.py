"""The evidence statistics against answers computed by hand or in closed form, and the assessment's behaviour
on synthetic scores: a null model passes about 1 - α of the time, a memorising model fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forgetflow import evidence as E
from forgetflow.errors import DataError


def test_empirical_pvalues_count_the_null_at_or_above():
    p = E.empirical_pvalues([0.5, 10.0, -10.0, 2.0], [0.0, 1.0, 2.0, 3.0])
    # (1 + #{null >= s}) / (1 + 4): 0.5 -> 3 above; 10 -> none; -10 -> all 4; 2 -> 2 (ties count)
    assert p.tolist() == [4 / 5, 1 / 5, 5 / 5, 3 / 5]


def test_empirical_pvalues_reject_bad_input():
    with pytest.raises(DataError, match="null.*empty"):
        E.empirical_pvalues([1.0], [])
    with pytest.raises(DataError, match="not finite"):
        E.empirical_pvalues([float("nan")], [1.0])


def test_fisher_known_answers():
    assert E.fisher_combine([0.05]) == pytest.approx(0.05)  # one p-value is its own combination
    # two p-values: P(chi2_4 >= -2 ln(p1 p2)) = p1 p2 (1 - ln(p1 p2))
    p1, p2 = 0.1, 0.2
    assert E.fisher_combine([p1, p2]) == pytest.approx(p1 * p2 * (1 - math.log(p1 * p2)))
    # three: x = p1 p2 p3, P = x (1 - ln x + ln(x)^2 / 2)
    x = 0.3 * 0.5 * 0.02
    assert E.fisher_combine([0.3, 0.5, 0.02]) == pytest.approx(x * (1 - math.log(x) + math.log(x) ** 2 / 2))
    assert E.fisher_combine([1.0, 1.0]) == pytest.approx(1.0)
    with pytest.raises(DataError):
        E.fisher_combine([0.0])


def test_holm_known_answer():
    adjusted, rejected = E.holm([0.01, 0.04, 0.03, 0.005], 0.05)
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rejected.tolist() == [True, False, False, True]
    adjusted, rejected = E.holm([0.5, 0.9], 0.05)
    assert adjusted.tolist() == pytest.approx([1.0, 1.0]) and not rejected.any()


def test_clopper_pearson_known_answers():
    assert E.clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))  # closed form at k = 0
    assert E.clopper_pearson(10, 10) == pytest.approx((0.025 ** (1 / 10), 1.0))
    lo, hi = E.clopper_pearson(5, 10)
    assert (lo, hi) == pytest.approx((0.187086, 0.812914), abs=1e-6)  # the textbook 95 % interval for 5/10


def test_binomial_power_known_answer():
    # n = 100, p0 = 1 %: P(X >= 3) = 0.0794 > 0.05 >= P(X >= 4) = 0.0184, so the test rejects from 4 detections;
    # at p1 = 10 % the power is P(X >= 4 | 0.1) = 1 - sum_{k<4} C(100,k) 0.1^k 0.9^(100-k)
    expected = 1 - sum(math.comb(100, k) * 0.1 ** k * 0.9 ** (100 - k) for k in range(4))
    assert E.binomial_power(100, 0.01, 0.1, 0.05) == pytest.approx(expected)
    assert E.binomial_power(1, 0.5, 1.0, 0.05) == 0.0  # one sample can never reach 5 % against a 50 % floor


def test_share_test_matches_the_binomial_test_when_the_floor_sample_is_large():
    # conditioning on a huge floor sample is the binomial test against a known floor
    assert E.share_test_power(100, 200_000, 0.01, 0.1, 0.05) == pytest.approx(E.binomial_power(100, 0.01, 0.1, 0.05),
                                                                              abs=0.01)


def test_share_test_known_answer_and_direction():
    # 2 x 2 table [[2, 0], [0, 2]]: P(both detections in the forget pair) = 1 / C(4, 2)
    assert E.share_test(2, 2, 0, 2) == pytest.approx(1 / 6)
    assert E.share_test(0, 10, 5, 100) == 1.0
    assert E.share_test(5, 10, 1, 100) < E.share_test(2, 10, 1, 100)


def test_min_detectable_share_falls_with_batch_size_and_is_none_when_hopeless():
    small = E.min_detectable_share(10, 1000, 0.01, 0.0125)
    large = E.min_detectable_share(1000, 1000, 0.01, 0.0125)
    assert small is not None and large is not None and large < small
    assert E.share_test_power(1000, 1000, 0.01, large, 0.0125) == pytest.approx(0.8, abs=1e-3)
    # one sample against a floor sample of 20: even a detected sample is not significant at 0.1 %
    assert E.min_detectable_share(1, 20, 0.01, 0.001) is None


def test_max_detectable_sample_p():
    assert E.max_detectable_sample_p(1, 1000, 0.0125) == pytest.approx(0.0125)  # one sample: its own p
    q = E.max_detectable_sample_p(6, 1000, 0.0125)
    assert E.fisher_combine([q] * 6) == pytest.approx(0.0125, rel=1e-6)
    assert E.max_detectable_sample_p(1, 50, 0.0125) is None  # 1/51 > 0.0125: never detectable alone


def test_conformal_threshold():
    assert E.conformal_threshold(np.arange(199.0), 0.01) == 197.0  # ceil(0.99 * 200) = 198th smallest
    assert E.conformal_threshold(np.arange(50.0), 0.01) == float("inf")  # too few for a 1 % threshold


def _batch(rng, shift_per_request=None, requests=10, per_request=3, null=2000, seed=0):
    ids = [f"s{i:03d}" for i in range(requests * per_request)]
    req = {f"r{j}": ids[j * per_request:(j + 1) * per_request] for j in range(requests)}
    scores = rng.normal(size=len(ids))
    for j, shift in (shift_per_request or {}).items():
        scores[j * per_request:(j + 1) * per_request] += shift
    return E.assess(scores, ids, req, rng.normal(size=null), E.split_null(null, seed), 0.05, 0.01)


def test_a_model_that_never_saw_the_samples_passes_about_one_minus_alpha():
    rng = np.random.default_rng(0)
    runs = [_batch(rng, seed=i) for i in range(200)]
    fail = np.mean([not (r.forgetting_passed and r.privacy_passed) for r in runs])
    assert fail <= 0.05 + 0.035  # α plus three binomial standard errors of 200 runs


def test_a_memorised_request_is_detected_and_named():
    ev = _batch(np.random.default_rng(1), {3: 6.0})
    assert ev.detectable_requests == ["r3"] and not ev.forgetting_passed
    row = next(r for r in ev.requests if r["request_id"] == "r3")
    assert row["verdict"] == E.DETECTABLE and row["adjusted_p"] <= 0.05 and row["can_fail"]
    assert all(r["verdict"] == E.NOT_DETECTABLE for r in ev.requests if r["request_id"] != "r3")


def test_a_memorised_batch_is_distinguishable_as_a_whole():
    ev = _batch(np.random.default_rng(2), {j: 3.0 for j in range(10)})
    assert not ev.privacy_passed and ev.batch["share"] > ev.batch["floor"]["share"]
    lo, hi = ev.batch["ci"]
    assert lo <= ev.batch["share"] <= hi


def test_a_tiny_null_says_the_tests_cannot_fail():
    rng = np.random.default_rng(3)
    ev = E.assess(rng.normal(size=2) + 50, ["a", "b"], {"r": ["a", "b"]}, rng.normal(size=40), E.split_null(40, 0),
                  0.05, 0.01)
    # 20 calibration scores cannot set a 1 % threshold: the batch test passes only because it cannot fail, and
    # says so; the request test still works (two samples at p = 1/41 combine to 0.005 <= 0.05 / 2)
    assert ev.privacy_passed and not ev.batch["can_fail"] and any("cannot fail" in n for n in ev.notes)
    assert not ev.forgetting_passed and ev.requests[0]["can_fail"]


def test_assess_rejects_unknown_request_samples():
    with pytest.raises(DataError, match="not in the forget set: zz"):
        E.assess([1.0], ["a"], {"r": ["zz"]}, np.zeros(10), E.split_null(10, 0), 0.05, 0.01)


def test_combine_states_when_the_original_had_nothing_to_remove():
    rng = np.random.default_rng(4)
    after = _batch(rng)
    before_unseen = _batch(np.random.default_rng(5))
    before_memorised = _batch(np.random.default_rng(6), {j: 6.0 for j in range(10)})
    rows = E.combine(after, before_unseen)
    assert all(not r["memorised_before"] and "already treated these samples like unseen" in r["statement"] for r in rows)
    rows = E.combine(after, before_memorised)
    assert all(r["memorised_before"] and r["statement"].startswith("Detectable before") for r in rows)


# ---- the stored record, receipts and the report --------------------------------------------------------
def _record(shift_after: float = 0.0, shift_before: float = 5.0, oracle: bool = True) -> E.EvidenceRecord:
    rng = np.random.default_rng(7)
    ids = [f"s{i:02d}" for i in range(12)]
    requests = {"r1": ids[:3], "r2": ids[3:9], "r3": ids[9:]}
    m = 1000
    roles = {"after": shift_after, "before": shift_before, **({"oracle": 0.0} if oracle else {})}
    scores = {role: {"forget": rng.normal(size=12) + shift, "null": rng.normal(size=m)} for role, shift in roles.items()}
    return E.EvidenceRecord("lira", "offline", 8, {"key": "refs-abc", "sha256": "f" * 64, "seed": 3, "k": 8},
                            requests, ids, [f"t{i}" for i in range(m)], E.split_null(m, 1), scores,
                            {role: 0.01 for role in roles})


def test_record_round_trip_and_recheck_decide_alike(tmp_path):
    from forgetflow.config import EvidenceParams

    record = _record(shift_after=6.0)
    path = E.write_record(tmp_path / "evidence.json", record, {"batch_id": "b1"})
    again = E.read_record(path)
    settings = EvidenceParams()
    first, second = record.assess(settings)["after"].as_dict(), again.assess(settings)["after"].as_dict()
    assert first == second and first["detectable_requests"] == ["r1", "r2", "r3"]
    assert E.read_record(tmp_path / "missing.json") is None


def test_receipt_entries_verify_and_an_altered_verdict_does_not(tmp_path):
    from forgetflow.config import EvidenceParams

    record = _record(shift_after=0.0)
    assessed = record.assess(EvidenceParams())
    entries = E.receipt_entries(record, assessed)
    entry = entries["r2"]
    assert (entry["attack"], entry["k"], entry["reference_seed"], entry["reference_sha256"]) == ("lira", 8, 3, "f" * 64)
    assert entry["verdict"] == E.NOT_DETECTABLE and len(entry["scores"]) == 6 and entry["alpha"] == 0.05
    assert entry["before"]["verdict"] == E.DETECTABLE and "Detectable before unlearning" in entry["statement"]
    doc = {"request": {"request_id": "r2"}, "evidence": {**entry, "record": "evidence.json"}}
    E.write_record(tmp_path / "evidence.json", record)
    assert E.check_receipt(doc) == [] and E.check_receipt_record(doc, tmp_path) == []

    altered = {**doc, "evidence": {**doc["evidence"], "verdict": E.DETECTABLE}}
    assert any("contradicts its numbers" in p for p in E.check_receipt(altered))
    assert any("verdict" in p and "stored record" in p for p in E.check_receipt_record(altered, tmp_path))
    # altering the verdict together with the numbers it follows from still disagrees with the stored record
    forged = {**doc, "evidence": {**doc["evidence"], "verdict": E.DETECTABLE, "adjusted_p": 0.001, "p_value": 0.0002,
                                  "p_values": [0.0002]}}
    assert E.check_receipt(forged) and E.check_receipt_record(forged, tmp_path)
    assert E.check_receipt_record({**doc, "evidence": {**entry, "record": "gone.json"}}, tmp_path)[0].endswith("missing")


def test_report_shows_the_per_request_table_and_the_score_plot():
    from forgetflow.config import EvidenceParams
    from forgetflow.report import evidence_lines, render_html, render_markdown

    record = _record(shift_after=0.0, shift_before=0.0)
    assessed = record.assess(EvidenceParams())
    ev = E.summarise(record, assessed)
    doc = {"batch_id": "b1", "metrics": {"test_acc": 90.0}, "evidence": ev, "requests_detail": [], "gates": {}}
    html = render_html(doc, None, record.to_json()["scores"])
    assert html.count("<code>r1</code>") == 1 and "not detectable" in html
    assert "already treated these samples like unseen data" in html  # nothing was memorised before either
    assert html.count("data:image/png;base64,") == 1 and "Membership scores" in html
    assert "| r3 | 3 |" in render_markdown(doc, "report.html")
    assert evidence_lines(ev)[0].startswith("  evidence (lira, K=8, α=0.05): 0 of 3 request(s) still detectable")
    assert "No membership evidence was computed" in render_html({**doc, "evidence": None})
