"""The step budget follows the forget set, every method predicts its cost from it, and the shipped presets that
were converted to the rule keep their step counts on the scenario they were searched on."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
import yaml

from forgetflow.errors import ConfigError
from forgetflow.methods import METHODS
from forgetflow.methods.common import ForgetBudget, budget_steps
from forgetflow.methods.cost import Sizes, measure_seconds_per_pass, predict, retrain_passes
from forgetflow.models import clone

# methods whose cost is stated not to follow the forget set: capped phases, one importance pass, retraining
FIXED_COST = {"scrub", "ssd", "retrain"}


def test_budget_is_proportional_to_the_forget_set_with_a_floor_and_a_cap():
    assert budget_steps(1.0, 5400, 128) == 43  # ceil(42.19)
    assert budget_steps(2.0, 5400, 128) == 85
    assert budget_steps(1.0, 11, 128, min_steps=20) == 20  # a few images get the floor
    assert budget_steps(9.0, 5400, 128, min_steps=20, max_steps=100) == 100
    assert budget_steps(2.25, 5400, 64) == 190  # 2.25 * 5400 / 64 is 189.84..., not pushed over by float noise
    assert budget_steps(0.0, 5400, 128, min_steps=20) == 0  # no steps at all, floor or not


@pytest.mark.parametrize("name", [n for n in METHODS.names() if n not in FIXED_COST])
def test_cost_follows_the_forget_set_not_the_retain_set(name):
    spec = METHODS.get(name)
    cfg = spec.resolve()
    small, large = Sizes(forget=11, retain=53_000, recipe_epochs=10), Sizes(forget=5_400, retain=53_000, recipe_epochs=10)
    assert spec.cost(cfg, small) < spec.cost(cfg, large)
    # a tiny batch costs the same whatever the size of the retain set (REM's selection sample is 2,048)
    assert spec.cost(cfg, small) == spec.cost(cfg, Sizes(forget=11, retain=8_000, recipe_epochs=10))
    assert spec.cost(cfg, small) < 0.1 * retrain_passes(small)  # a tenth of retraining, the demo target


def test_budgeted_methods_share_the_one_budget_mixin():
    budgeted = {n for n in METHODS.names() if issubclass(METHODS.get(n).config, ForgetBudget)}
    assert budgeted == set(METHODS.names()) - FIXED_COST


def test_prediction_is_passes_times_the_measured_speed(digits_random):
    model = digits_random.original.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    speed = measure_seconds_per_pass(model, digits_random.splits.retain, "cpu", batch_size=64, steps=2)
    assert speed > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # measured on a copy
    spec = METHODS.get("finetune")
    p = predict(spec, spec.resolve(None, {"min_steps": 10}), Sizes(forget=11, retain=1000), speed)
    assert p.passes == 10 * 128 and p.seconds == pytest.approx(p.passes * speed)


def test_rem_refuses_a_mask_that_switches_redirection_off_and_a_single_round():
    spec = METHODS.get("rem")
    with pytest.raises(ConfigError, match="p_mem"):
        spec.resolve(None, {"p_mem": 1.0})
    with pytest.raises(ConfigError, match="rounds"):
        spec.resolve(None, {"rounds": 1})


def test_rem_repair_follows_the_discovered_set_by_default_and_d_train_in_the_paper_schedule():
    spec = METHODS.get("rem")
    by_forget = spec.resolve(None, {"forget_passes": 30.0, "min_steps": 20, "batch_size": 128, "rounds": 5})
    assert by_forget.repair_steps(8, 1000) == 20 and by_forget.repair_steps(400, 1000) == 94  # ceil(30*400/128)
    paper = spec.resolve(None, {"repair": "train", "repair_passes": 1.0, "batch_size": 128, "rounds": 5})
    assert paper.repair_steps(8, 1000) == paper.repair_steps(400, 1000) == 5 * 8  # one pass over D_train per round
    assert spec.resolve(None, {"repair": "train", "rounds": 10, "max_steps": 30}).repair_steps(8, 1000) == 30
    # the cost prediction follows the same budget: in the paper's schedule a bigger D_train costs more repair
    small, big = Sizes(forget=8, retain=2992), Sizes(forget=8, retain=12992)
    assert spec.cost(paper, big) - spec.cost(paper, small) > 5 * 10000  # five passes over 10,000 more
    assert spec.cost(by_forget, big) - spec.cost(by_forget, small) == 0  # by default: selection reads a capped sample of D_r
    with pytest.raises(ConfigError, match="repair"):
        spec.resolve(None, {"repair": "epochs"})


def _preset_files():
    root = resources.files("forgetflow") / "presets"
    return [(m.name, p) for m in root.iterdir() if m.is_dir() for p in m.iterdir() if p.name.endswith(".yaml")]


@pytest.mark.parametrize("method, path", _preset_files(), ids=lambda v: getattr(v, "name", v))
def test_converted_presets_keep_their_step_count_where_they_were_searched(method, path):
    data = yaml.safe_load(path.read_text())
    cfg = METHODS.get(method).resolve(None, data["config"])  # every shipped preset validates
    converted = data["search"].get("converted")
    if converted is None:
        return
    n = converted["sizes"]
    if method == "bad-teacher":
        count = n["forget"] + max(1, min(n["retain"], round(cfg.retain_per_forget * n["forget"])))
    else:
        count = n["forget"]
    unit = cfg.forget_batch_size if hasattr(cfg, "forget_batch_size") else cfg.batch_size
    assert cfg.step_budget(count, unit) == converted["steps"]


def test_a_method_run_without_a_preset_for_its_scenario_says_so():
    rem, aru = METHODS.get("rem"), METHODS.get("aru")
    assert aru.applied_preset("subject") == {"scenario": "subject", "file": "forgetflow/presets/aru/subject.yaml",
                                             "applied": "forgetflow/presets/aru/subject.yaml", "warning": None}
    missing = rem.applied_preset("subject")
    assert missing["applied"] == "none: method defaults" and "no preset for scenario 'subject'" in missing["warning"]
    assert rem.applied_preset(None) == {"scenario": None, "file": None, "applied": "none: method defaults",
                                        "warning": None}


def test_a_setting_s_own_preset_is_read_where_shipped_else_the_default_setting_s_with_a_warning():
    aru, neggrad = METHODS.get("aru"), METHODS.get("neggrad-plus")
    assert "memorising/random" in aru.scenarios() and "random" in aru.scenarios()
    own = aru.applied_preset("random", "memorising")
    assert own == {"scenario": "random", "file": "forgetflow/presets/aru/memorising/random.yaml",
                   "applied": "forgetflow/presets/aru/memorising/random.yaml", "warning": None}
    tuned = aru.preset("memorising/random")["config"]
    assert aru.resolve("random", setting="memorising").model_dump() == aru.resolve(None, tuned).model_dump()
    assert aru.resolve("random").model_dump() == aru.resolve(None, aru.preset("random")["config"]).model_dump()
    # no preset tuned on a setting (here one with no presets at all) for the scenario: the default setting's runs,
    # and says so
    fallback = neggrad.applied_preset("corrupted", "wide-resnet")
    assert fallback["applied"] == "forgetflow/presets/neggrad-plus/corrupted.yaml"
    assert "no preset tuned on setting 'wide-resnet'" in fallback["warning"]
    assert neggrad.resolve("corrupted", setting="wide-resnet").model_dump() == neggrad.resolve("corrupted").model_dump()


def test_a_batch_phase_reads_the_presets_of_unlearn_preset_setting(tmp_path):
    from forgetflow.pipeline import Phase, phase_config
    from forgetflow.project import Project

    (tmp_path / "params.yaml").write_text("unlearn: {preset_setting: memorising}\n")
    memorising = Project.load(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    default = Project.load(tmp_path / "params.yaml")
    phase = Phase("aru", "random", ["r1"], ["s1"])
    aru = METHODS.get("aru")
    assert phase_config(memorising, phase).model_dump() == aru.resolve(None, aru.preset("memorising/random")["config"]).model_dump()
    assert phase_config(default, phase).model_dump() == aru.resolve(None, aru.preset("random")["config"]).model_dump()
