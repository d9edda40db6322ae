"""The batch report page renders from the package-data template, escaped, with the metrics in words."""

from forgetflow import report


def test_report_renders_from_the_packaged_template():
    doc = {"batch_id": "b-<1>", "method": "aru", "requests": ["r1"], "forget_samples": 3,
           "metrics": {"forget_acc": 10.0, "retain_acc": 99.0, "test_acc": 97.0},
           "oracle": {"forget_acc": 9.5, "retain_acc": 99.1, "test_acc": 97.2},
           "champion_before": {"test_acc": 98.0}, "gates": {}, "requests_detail": [
               {"request_id": "r1", "reason": "privacy", "subject_id": "subj-1", "sample_id": None, "samples": 3}]}
    page = report.render_html(doc)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "Deletion batch b-&lt;1&gt;" in page and "b-<1>" not in page  # autoescaped
    assert "Accuracy on the erased samples" in page and "subj-1" in page
