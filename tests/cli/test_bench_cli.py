"""`forgetflow bench` end to end on digits: the Prefect benchmark flow, cached oracles, every output file
(CSV, Markdown with the do-nothing and retrain rows, plots, the REM heat-map) and the JSON rows."""

import csv
import json

import pytest
import yaml

from tests.cli.test_cli import ff
from tests.conftest import make_project_dir


def test_bench_corrupted_grid_writes_tables_plots_and_heatmap(tmp_path):
    proj = make_project_dir(tmp_path / "p")
    out_dir = tmp_path / "out"
    out = ff("bench", "--dataset", "digits", "--scenario", "corrupted", "--methods", "rem,finetune", "--seeds", "1",
             "--option", "size=100", "--grid", "regularity=backdoor", "--grid", "discovery=0.5,1.0",
             "--out", str(out_dir), "--no-per-sample", "--json", cwd=proj)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    cells = {(r["opt_regularity"], r["opt_discovery"]) for r in rows}
    assert cells == {("backdoor", 0.5), ("backdoor", 1.0)}
    for cell in cells:
        methods = {r["method"] for r in rows if (r["opt_regularity"], r["opt_discovery"]) == cell}
        assert methods == {"original", "retrain", "rem", "finetune"}
    rem = [r for r in rows if r["method"] == "rem"]
    assert all(0 <= r["healed"] <= 100 and 0 <= r["utility_x_healed"] <= 100 and r["time_ratio"] > 0 for r in rem)
    with (out_dir / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    md = (out_dir / "results.md").read_text()
    assert "original (do nothing)" in md and "retrain (oracle)" in md and "U×H" in md
    assert (out_dir / "rem-heatmap.png").stat().st_size > 1000

    # a second run reuses the cached originals and oracles: the retrain rows report the same training time
    again = ff("bench", "--dataset", "digits", "--scenario", "corrupted", "--methods", "finetune", "--seeds", "1",
               "--option", "size=100", "--grid", "regularity=backdoor", "--grid", "discovery=0.5",
               "--out", str(tmp_path / "out2"), "--no-per-sample", "--json", cwd=proj)
    assert again.returncode == 0, again.stderr[-2000:]
    first = next(r for r in rows if r["method"] == "retrain" and r["opt_discovery"] == 0.5)
    second = next(r for r in json.loads(again.stdout) if r["method"] == "retrain")
    assert second["seconds"] == first["seconds"]


@pytest.mark.slow
def test_bench_with_a_setting_adds_per_sample_columns_the_oracle_target_and_score_plots(tmp_path):
    proj = make_project_dir(tmp_path / "p")
    (proj / "tiny.yaml").write_text("name: tiny\ndata: {pool: 300}\nmodel: {options: {head: 64}}\n"
                                    "train: {epochs: 8, batch_size: 32, weight_decay: 0.0}\nreferences: {k: 4}\n")
    out_dir = tmp_path / "out"
    out = ff("bench", "--dataset", "digits", "--setting", "tiny.yaml", "--scenario", "random", "--methods", "finetune",
             "--seeds", "1", "--out", str(out_dir), "--json", cwd=proj)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    assert {r["method"] for r in rows} == {"original", "retrain", "finetune"}
    assert all(r["setting"] == "tiny" and r["forget_size"] == 30 for r in rows)  # 10 % of the 300-sample pool
    md = (out_dir / "results.md").read_text()
    assert "Setting: tiny" in md and "Load average" in md
    assert "LiRA det. @1 % FPR %" in md and "LiRA AUC vs oracle" in md
    oracle_line = next(line for line in md.splitlines() if line.startswith("| retrain (oracle)"))
    assert " [" in oracle_line  # the oracle's detected share with its 95 % interval: the target
    assert (out_dir / "forget-lira-random.png").stat().st_size > 1000

    bad = ff("bench", "--dataset", "digits", "--setting", "nope", "--methods", "finetune", cwd=proj)
    assert bad.returncode != 0 and "nope" in bad.stderr and "Traceback" not in bad.stderr


def test_tune_on_a_setting_writes_the_setting_s_preset_from_validation_trials(tmp_path):
    proj = make_project_dir(tmp_path / "p")
    (proj / "tiny.yaml").write_text("name: tiny\ndata: {pool: 300}\nmodel: {options: {head: 64}}\n"
                                    "train: {epochs: 4, batch_size: 32, weight_decay: 0.0}\n")
    out = ff("tune", "--dataset", "digits", "--setting", "tiny.yaml", "--scenario", "random", "--methods", "finetune",
             "--budget", "2", "--space", "forget_passes=1,2", "--write", "--out", str(tmp_path / "presets"), cwd=proj)
    assert out.returncode == 0, out.stderr[-2000:]
    written = tmp_path / "presets" / "finetune" / "tiny" / "random.yaml"
    assert "finetune [random]: best" in out.stdout and str(written) in out.stdout
    preset = yaml.safe_load(written.read_text())
    assert preset["setting"] == "tiny" and preset["scenario"] == "random"
    search = preset["search"]
    assert search["selected_on"].startswith("validation") and search["seed"] == 100 and len(search["trials"]) == 2
    assert search["train_recipe"]["epochs"] == 4 and search["model"]["head"] == 64  # the setting's recipe, not params.yaml's
    assert preset["config"]["lr"] == search["best"]["config"]["lr"]
    assert {t["config"]["forget_passes"] for t in search["trials"]} <= {1, 2}
    assert search["space"]["forget_passes"] == [1, 2] and search["basis"].endswith("; replaced by the caller: forget_passes=[1, 2]")

    typo = ff("tune", "--dataset", "digits", "--methods", "finetune", "--space", "lr_max=1,2", cwd=proj)
    assert typo.returncode != 0 and "--space lr_max: not a hyper-parameter of finetune" in typo.stderr
    wrong = ff("tune", "--dataset", "digits", "--methods", "finetune", "--scenario", "full-class",
               "--objective", "privacy-retain", cwd=proj)
    assert wrong.returncode != 0 and "objective 'privacy-retain' does not fit the 'full-class' family" in wrong.stderr
    bad = ff("tune", "--dataset", "digits", "--setting", "nope", "--methods", "finetune", cwd=proj)
    assert bad.returncode != 0 and "nope" in bad.stderr and "Traceback" not in bad.stderr


def test_tune_on_a_grid_scores_each_trial_by_the_mean_over_its_cells(tmp_path):
    proj = make_project_dir(tmp_path / "p")
    (proj / "tiny.yaml").write_text("name: tiny\ndata: {pool: 300}\nmodel: {options: {head: 64}}\n"
                                    "train: {epochs: 4, batch_size: 32, weight_decay: 0.0}\n")
    out = ff("tune", "--dataset", "digits", "--setting", "tiny.yaml", "--scenario", "corrupted", "--option",
             "regularity=backdoor", "--grid", "discovery=0.5,1.0", "--methods", "finetune", "--space",
             "forget_passes=1,4", "--budget", "2", "--write", "--out", str(tmp_path / "presets"), cwd=proj)
    assert out.returncode == 0, out.stderr[-2000:]
    search = yaml.safe_load((tmp_path / "presets" / "finetune" / "tiny" / "corrupted.yaml").read_text())["search"]
    assert search["cells"] == [{"regularity": "backdoor", "discovery": 0.5}, {"regularity": "backdoor", "discovery": 1.0}]
    assert len(search["trials"]) == 2 and len(search["baseline"]["cells"]) == 2
    for trial in search["trials"]:
        assert [c["cell"]["discovery"] for c in trial["cells"]] == [0.5, 1.0]
        assert trial["score"] == pytest.approx(sum(c["score"] for c in trial["cells"]) / 2, abs=1e-3)
    best = min(search["trials"], key=lambda t: (t["score"], t["seconds"]))
    assert search["best"]["config"] == best["config"]


def test_the_privacy_retain_objective_charges_what_the_retain_set_lost(tmp_path):
    """Same trial, two objectives: privacy-retain = privacy + max(0, RA0 - RA) on the retain sample."""
    from forgetflow import bench, tuning
    from forgetflow.bench_settings import load_setting
    from forgetflow.project import Project
    from tasks.benchmarking import resolved

    proj = Project.load(make_project_dir(tmp_path / "p") / "params.yaml")
    version, r = resolved(proj, "digits", load_setting("default"))
    recipe = r.recipe.__class__(**{**r.recipe.__dict__, "epochs": 3})
    s = bench.setup(version, "random", 100, r.arch, r.arch_config, recipe, proj.oracle_dir, "cpu", {},
                    with_oracle=False)
    plain = tuning.search(s, "random-labels", space={"lr": [0.3], "forget_passes": [3.0]})
    charged = tuning.search(s, "random-labels", space={"lr": [0.3], "forget_passes": [3.0]}, objective="privacy-retain")
    p, c = plain["trials"][0], charged["trials"][0]
    assert charged["objective"] == "privacy-retain" and "retain_acc" in charged["base"] and "retain_acc" not in plain["base"]
    lost = max(0.0, charged["base"]["retain_acc"] - c["retain_acc"])
    assert lost > 1.0  # random labels at a large step rub out part of the retain fit
    assert c["score"] == pytest.approx(p["score"] + lost, abs=1e-3)


def test_each_family_names_the_objectives_it_may_be_searched_with():
    from forgetflow import tuning
    from forgetflow.errors import ConfigError

    assert tuning.objective_for("random") == "privacy" and tuning.objective_for("random", "privacy-retain") == "privacy-retain"
    assert tuning.objective_for("full-class", "full-class-retain") == "full-class-retain"
    with pytest.raises(ConfigError, match=r"\(allowed: corrupted\)$"):
        tuning.objective_for("corrupted", "privacy-retain")
