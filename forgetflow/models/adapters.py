"""What unlearning methods need to know about an architecture, in one adapter per architecture.

A method never branches on an architecture's name: it asks the model's adapter. Each architecture module
(``small_cnn.py``, ``resnet.py``) registers its builder *and* its adapter, so a new architecture touches one
file. What an adapter answers:

* ``widen`` — REM's extra capacity: the activations to widen, each a producer layer (conv or linear, with the
  BatchNorm after it) whose new output units a consumer layer reads (``forgetflow/methods/rem_expansion.py``);
* ``late_layers`` — RFA's ``layers="late"``: the module names of the last stage plus the head;
* ``head`` — the classifier layer, whose input is the penultimate feature vector (RFA's feature shift);
* ``reset_init`` — ARU's ``init="auto"``: the initialisation the architecture itself uses for a conv filter
  (``uniform``: PyTorch's default, ``kaiming-normal``: torchvision's ResNet init).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from torch import nn

from forgetflow.errors import ConfigError, UnknownNameError
from forgetflow.registry import Registry


@dataclass(frozen=True)
class Widening:
    """One widened activation: ``producer`` (+ ``norm``) gains output units that ``consumer`` reads."""

    producer: str
    norm: str | None
    consumer: str


@dataclass(frozen=True)
class ArchAdapter:
    """The answers of one architecture (see the module docstring)."""

    widen: Callable[[nn.Module], list[Widening]]
    late_layers: Callable[[nn.Module], list[str]]
    head: str
    reset_init: Literal["uniform", "kaiming-normal"] = "uniform"


ADAPTERS: Registry[ArchAdapter] = Registry("architecture adapter")


def register_adapter(arch: str, adapter: ArchAdapter) -> ArchAdapter:
    """Register the adapter of architecture ``arch`` (the name its builder is registered under)."""
    ADAPTERS.add(arch, adapter)
    return adapter


def adapter_for(model: nn.Module) -> ArchAdapter:
    """The adapter of a model built by ``build_model``; a ``ConfigError`` naming the architecture otherwise."""
    from forgetflow.models import arch_of

    arch, _ = arch_of(model)
    try:
        return ADAPTERS.get(arch)
    except UnknownNameError as exc:
        raise ConfigError(f"architecture {arch!r} has no adapter (register one next to its builder): {exc}") from exc
