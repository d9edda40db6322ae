"""Every registered method, checked the same way (the registry is the test list).

For each method: it runs on the tiny digits setup within its declared data needs, even when the sets it
did not declare are present but poisoned; returns a module of the original architecture with finite
weights; gives identical weights for the same seed; and its config rejects an unknown key.
"""

from __future__ import annotations

import pytest
import torch

from forgetflow.errors import ConfigError, MethodContractError
from forgetflow.methods import METHODS, Needs, UnlearnData
from forgetflow.models import clone, same_architecture
from forgetflow.runtime import RunContext

# guard: the parametrised list is exactly the registry, never silently shorter (a new method adds its name here)
EXPECTED = {"aru", "bad-teacher", "finetune", "gradient-ascent", "l1-sparse", "mu-mis", "neggrad-plus", "random-labels",
            "rem", "retrain", "rfa", "salun", "scrub", "ssd"}


class PoisonedSet:
    """A set that raises on any use: handed over where a method's contract grants nothing."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, item: str):
        raise AssertionError(f"method used the {self._name} set (.{item}) although its contract does not declare it")

    def __len__(self) -> int:
        raise AssertionError(f"method used len() of the {self._name} set although its contract does not declare it")


def test_registry_holds_exactly_the_expected_methods():
    assert set(METHODS.names()) == EXPECTED and len(METHODS) == len(EXPECTED)


def _fast(name: str) -> dict:
    """A small budget for each method, to keep the contract suite quick."""
    fields = METHODS.get(name).config.model_fields
    out = {}
    if "forget_passes" in fields:
        out.update(forget_passes=0.2, min_steps=2)
    if "epochs" in fields:  # SCRUB's epochs, retrain's override of the recipe
        out["epochs"] = 1
    return out


def _run(name: str, setup, seed: int = 7, poison: bool = False):
    spec = METHODS.get(name)
    s = setup.splits
    needs = spec.needs
    retain = s.retain if Needs.RETAIN in needs else (PoisonedSet("retain") if poison else None)
    train = s.train if Needs.TRAIN in needs else (PoisonedSet("train") if poison else None)
    widened = needs | (Needs.RETAIN | Needs.TRAIN if poison else Needs(0))
    data = UnlearnData(widened, s.forget, s.num_classes, setup.recipe, retain=retain, train=train, method=name)
    cfg = spec.resolve(None, _fast(name))
    return spec.unlearn(clone(setup.original.model), data, cfg, RunContext.create(seed, "cpu"))


@pytest.mark.parametrize("name", METHODS.names())
def test_runs_within_contract_and_keeps_architecture(name, digits_random):
    model = _run(name, digits_random, poison=True)
    assert same_architecture(model, digits_random.original.model)
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


@pytest.mark.parametrize("name", METHODS.names())
def test_same_seed_same_weights(name, digits_random):
    a = _run(name, digits_random, seed=3).state_dict()
    b = _run(name, digits_random, seed=3).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{name}: parameter {k} differs between two runs with one seed"


@pytest.mark.parametrize("name", METHODS.names())
def test_declares_its_cost_and_what_its_search_space_is_based_on(name):
    from forgetflow.methods.cost import Sizes

    spec = METHODS.get(name)
    assert spec.cost(spec.resolve(), Sizes(forget=11, retain=1000, recipe_epochs=10)) > 0
    assert spec.search_basis, f"{name}: declare what its search space is based on (search_basis=...)"


@pytest.mark.parametrize("name", METHODS.names())
def test_config_rejects_unknown_key(name):
    with pytest.raises(ConfigError, match="not_a_real_knob"):
        METHODS.get(name).resolve(None, {"not_a_real_knob": 1})


@pytest.mark.parametrize("name", METHODS.names())
def test_undeclared_access_is_refused(name, digits_random):
    spec = METHODS.get(name)
    s = digits_random.splits
    data = UnlearnData(spec.needs, s.forget, s.num_classes, digits_random.recipe,
                       retain=s.retain if Needs.RETAIN in spec.needs else None,
                       train=s.train if Needs.TRAIN in spec.needs else None, method=name)
    if Needs.RETAIN not in spec.needs:
        with pytest.raises(MethodContractError, match="retain"):
            _ = data.retain
    if Needs.TRAIN not in spec.needs:
        with pytest.raises(MethodContractError, match="train"):
            _ = data.train
