"""The human renderings of the CLI: rich tables as plain text (no colour, no wrapping, aligned columns)."""

from forgetflow.cli.batch import METRIC_ROWS, render_batch
from forgetflow.cli.common import table
from forgetflow.cli.promotion import render_history


def test_table_is_plain_aligned_and_unwrapped():
    text = table([("name", "left"), ("value", "right")], [("a", "1.000"), ("[bold]long name[/bold]" + "x" * 150, "22.500")],
                 indent=2)
    lines = text.splitlines()
    assert len(lines) == 3 and all(line.startswith("  ") for line in lines)
    assert "\x1b" not in text and "[bold]long name[/bold]" in lines[2]  # no ANSI codes; brackets are not markup
    assert lines[0].split() == ["name", "value"]
    assert len({len(line) for line in lines}) == 1  # right-aligned column: every line ends at the same place


def test_batch_summary_lists_every_metric_in_a_table():
    result = {"status": "done", "batch_id": "b1", "forget_samples": 7, "requests": ["r1", "r2"], "method": "aru",
              "metrics": {"forget_acc": 12.5, "retain_acc": 99.0, "test_acc": 97.25, "mia_efficacy": 50.0,
                          "mia_entropy": 48.0, "mia_auc": 0.51},
              "oracle": {"forget_acc": 11.0, "test_acc": 97.5}, "champion_before": {"test_acc": 98.0},
              "avg_gap": 1.2, "avg_gap_mumis": 0.8, "seconds": {"unlearn": 1.0, "oracle": 9.0, "total": 12.0},
              "gates": {"utility": {"passed": True}, "mia": {"passed": False}}, "promoted": False,
              "model_version": "2", "data_version": {"version": 2, "dvc_md5": "abc"}, "receipts": ["state/receipts/r1.json"]}
    lines = render_batch(result).splitlines()
    assert lines[0] == "batch b1: forgot 7 sample(s) for 2 request(s) with aru"
    assert lines[1].split() == ["metric", "unlearned", "oracle", "before"]
    rows = lines[2:2 + len(METRIC_ROWS)]
    assert [r.strip().startswith(label) for (_, label), r in zip(METRIC_ROWS, rows)] == [True] * len(METRIC_ROWS)
    assert rows[0].split()[-3:] == ["12.500", "11.000", "-"] and rows[2].split()[-3:] == ["97.250", "97.500", "98.000"]
    assert "  time: unlearn 1.0 s, oracle 9.0 s, total 12.0 s" in lines
    assert "  model version 2 (not promoted; utility ok, mia FAIL)" in lines
    assert "  receipts: 1 under state/receipts" in lines

    # the production default: no oracle column, the per-request evidence and the verification time instead
    result.update(oracle=None, seconds={"unlearn": 1.0, "verify": 0.25, "total": 5.0}, evidence={"requests": [
        {"request_id": "r1", "verdict": "not detectable", "adjusted_p": 0.4, "samples": 3, "before_verdict": "detectable"}]})
    lines = render_batch(result).splitlines()
    assert lines[1].split() == ["metric", "unlearned", "before"]
    assert "  time: unlearn 1.0 s, verification 0.25 s, total 5.0 s" in lines
    assert "  evidence r1: not detectable (adjusted p 0.4, 3 sample(s); before: detectable)" in lines


def test_history_lists_events_then_a_table_of_versions():
    history = {"model_name": "m", "champion": "3", "challenger": None, "events": [
        {"at": "2026-01-01T10:00:00+00:00", "kind": "alias", "alias": "champion", "from_version": None,
         "to_version": "1", "actor": "me", "reason": "original"},
        {"at": "2026-01-02T10:00:00+00:00", "kind": "superseded", "version": "1", "erased_by_batch": "b1",
         "actor": "b1"}],
        "versions": [{"version": "1", "role": "original", "aliases": [], "holds_erased_data_of": ["b1"], "gates": None},
                     {"version": "3", "role": "retrain", "aliases": ["champion"], "holds_erased_data_of": [],
                      "gates": "utility ok"}]}
    lines = render_history(history).splitlines()
    assert lines[0] == "m: champion 3, challenger -"
    assert lines[1].startswith("2026-01-01 10:00:00  champion") and "by me: original" in lines[1]
    assert "superseded v1 (holds data erased by b1; found by b1)" in lines[2]
    assert lines[3] == "versions:" and lines[4].split() == ["version", "role", "aliases", "state", "gates"]
    assert lines[5].split()[:3] == ["v1", "original", "-"] and "holds data erased by b1" in lines[5]
    assert lines[6].split()[:3] == ["v3", "retrain", "champion"] and lines[6].endswith("utility ok")
