"""Every registered architecture has an adapter whose answers name real layers of a built model; a model of an
architecture without one is refused with an error that names it."""

from __future__ import annotations

import pytest
from torch import nn

from forgetflow.errors import ConfigError
from forgetflow.models import MODELS, build_model
from forgetflow.models.adapters import ADAPTERS, adapter_for

TINY = {"small-cnn": {"in_channels": 1, "num_classes": 10, "image_size": 8, "width": 4},
        "resnet18": {"in_channels": 3, "num_classes": 10, "image_size": 16}}


def test_every_architecture_has_an_adapter():
    assert ADAPTERS.names() == MODELS.names() and len(MODELS) >= 2  # guard: the list is never silently empty


@pytest.mark.parametrize("arch", MODELS.names())
def test_adapter_answers_name_layers_of_the_model(arch):
    model = build_model(arch, **TINY[arch])
    adapter = adapter_for(model)
    modules = dict(model.named_modules())
    assert isinstance(modules[adapter.head], nn.Linear)
    late = adapter.late_layers(model)
    assert late and all(isinstance(modules[n], (nn.Conv2d, nn.Linear)) for n in late) and adapter.head in late
    for w in adapter.widen(model):
        assert isinstance(modules[w.producer], (nn.Conv2d, nn.Linear))
        assert isinstance(modules[w.consumer], (nn.Conv2d, nn.Linear))
        assert w.norm is None or isinstance(modules[w.norm], nn.modules.batchnorm._BatchNorm)
    assert adapter.reset_init in ("uniform", "kaiming-normal")


def test_a_model_without_an_adapter_is_refused_by_name():
    model = build_model("small-cnn", **TINY["small-cnn"])
    model.forgetflow_arch = ("my-net", {})
    with pytest.raises(ConfigError, match="my-net"):
        adapter_for(model)
