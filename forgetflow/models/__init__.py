"""Model architectures (found by name in ``MODELS``) and checkpoints that carry their architecture.

A checkpoint is ``{"arch", "arch_config", "state_dict"}``: loading rebuilds the architecture from its
name and config and loads the weights with ``weights_only=True``, so no pickled code is ever executed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from forgetflow.errors import DataError
from forgetflow.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator: register a model builder ``fn(in_channels, num_classes, image_size, **kw)``."""

    def deco(fn: ModelBuilder) -> ModelBuilder:
        MODELS.add(name, fn)
        return fn

    return deco


def build_model(arch: str, **arch_config: Any) -> nn.Module:
    """Build an architecture by name; the config is remembered on the module for checkpoints."""
    model = MODELS.get(arch)(**arch_config)
    model.forgetflow_arch = (arch, dict(arch_config))  # type: ignore[attr-defined]
    return model


def arch_of(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """The (name, config) a model was built with."""
    spec = getattr(model, "forgetflow_arch", None)
    if spec is None:
        raise DataError("model was not built by forgetflow.models.build_model; its architecture is unknown")
    return spec


def checkpoint(model: nn.Module) -> dict[str, Any]:
    """The checkpoint dict of a model (weights on the CPU)."""
    arch, config = arch_of(model)
    return {"arch": arch, "arch_config": config, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def save_checkpoint(model: nn.Module, path: Path) -> Path:
    """Write a model's checkpoint atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(checkpoint(model), tmp)
    tmp.replace(path)
    return path


def load_checkpoint(source: Path | bytes, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a model from a checkpoint file or bytes (``weights_only=True``)."""
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        data = torch.load(handle, map_location=device, weights_only=True)
    except FileNotFoundError as exc:
        raise DataError(f"{source}: checkpoint not found") from exc
    model = build_model(data["arch"], **data["arch_config"])
    model.load_state_dict(data["state_dict"])
    return model.to(device)


def clone(model: nn.Module) -> nn.Module:
    """An independent copy of a model (same architecture, same weights, same device)."""
    arch, config = arch_of(model)
    copy = build_model(arch, **config)
    copy.load_state_dict(model.state_dict())
    device = next(model.parameters()).device
    return copy.to(device)


def same_architecture(a: nn.Module, b: nn.Module) -> bool:
    """Same registered architecture and the same parameter names and shapes."""
    if arch_of(a) != arch_of(b):
        return False
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    return sa == sb and type(a) is type(b)


from forgetflow.models import resnet, small_cnn  # noqa: E402,F401  (registration)
