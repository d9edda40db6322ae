"""Benchmark tables and plots with per-sample columns, from hand-made rows (no training)."""

import numpy as np

from forgetflow import bench_report


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1):
        for method, detected in (("original", 30), ("retrain", 2), ("finetune", 10)):
            scores = rng.normal(detected / 10, 1, 200)
            rows.append({"scenario": "random", "method": method, "seed": seed, "forget_size": 200,
                         "forget_acc": 90.0, "retain_acc": 95.0, "test_acc": 88.0, "mia_efficacy": 10.0,
                         "avg_gap": 0.0 if method == "retrain" else 2.0, "seconds": 1.0, "time_ratio": 0.1,
                         "lira_detected": detected / 2, "lira_detected_count": detected, "rmia_detected": 1.0,
                         "rmia_detected_count": 2, "lira_dist": 0.0 if method == "retrain" else 0.5,
                         "lira_auc_vs_oracle": 0.5 if method == "retrain" else 0.7,
                         "_lira_forget": scores.tolist(), "_lira_threshold": 2.3})
    return rows


def test_per_sample_columns_and_the_oracle_interval_pooled_over_seeds():
    md = bench_report.markdown(_rows())
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    for label in ("LiRA det. @1 % FPR %", "RMIA det. @1 % FPR %", "LiRA dist. to oracle", "LiRA AUC vs oracle"):
        assert label in header
    oracle = next(line for line in md.splitlines() if line.startswith("| retrain (oracle)"))
    # 2 + 2 detected of 200 + 200 forget samples: 1 % with the exact interval [0.27, 2.54]
    assert "1.00 [0.27, 2.54]" in oracle
    method = next(line for line in md.splitlines() if line.startswith("| finetune"))
    assert "[" not in method  # the interval is the oracle's target, not every row's


def test_tables_without_references_have_no_per_sample_columns():
    rows = [{k: v for k, v in r.items() if not k.startswith(("lira", "rmia", "_lira"))} for r in _rows()]
    assert "LiRA" not in bench_report.markdown(rows)


def test_score_plot_shows_every_model_against_the_oracle(tmp_path):
    files = bench_report.plots(_rows(), tmp_path)
    assert tmp_path / "forget-lira-random.png" in files
    assert (tmp_path / "forget-lira-random.png").stat().st_size > 1000
