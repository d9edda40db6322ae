"""A benchmark cell that wrecks the model or costs more than retraining is flagged in its row and marked in the
table, and a method run without a preset for its scenario carries the warning into the row."""

from __future__ import annotations

from forgetflow import bench, bench_report


def test_cell_flags_name_what_is_wrong():
    assert bench.cell_flags({"test_acc": 88.0, "time_ratio": 0.2}, 91.8) == []
    flags = bench.cell_flags({"test_acc": 20.0, "time_ratio": 1.7}, 91.8)
    assert flags == ["wrecked: test accuracy 20.0 against the original's 91.8", "slower than retraining (1.70 x)"]
    # forgetting a whole class costs the oracle a tenth of the test set: 72 against an oracle at 75 is not wrecked
    assert bench.cell_flags({"test_acc": 72.0, "time_ratio": 0.1}, 74.9, "oracle") == []
    assert bench.cell_flags({"test_acc": 60.0, "time_ratio": 0.1}, 74.9, "oracle") == [
        "wrecked: test accuracy 60.0 against the oracle's 74.9"]


def test_table_marks_flagged_methods_and_lists_why():
    rows = [{"scenario": "random", "method": "original", "seed": 0, "test_acc": 91.8},
            {"scenario": "random", "method": "rem", "seed": 0, "test_acc": 20.0,
             "flags": "wrecked: test accuracy 20.0 against the original's 91.8",
             "warning": "rem has no preset for scenario 'random' (has: corrupted); it ran with its method defaults"},
            {"scenario": "random", "method": "aru", "seed": 0, "test_acc": 90.5, "flags": "", "warning": ""}]
    table = bench_report.markdown(rows)
    assert "| rem ⚠ |" in table and "| aru |" in table
    assert "⚠ rem: wrecked: test accuracy 20.0 against the original's 91.8 (seed 0); rem has no preset" in table


def test_row_of_a_method_without_a_preset_for_the_scenario_says_so(digits_random):
    row = bench.run_method(digits_random, "rem", {"forget_passes": 0.01, "min_steps": 2, "rounds": 2})
    assert row["preset"] == "none: method defaults"
    assert "no preset for scenario 'random'" in row["warning"]
    assert "flags" in row
