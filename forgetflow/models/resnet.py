"""torchvision ResNet-18 (random init, no download), adapted to small inputs and any channel count."""

from __future__ import annotations

from torch import nn

from forgetflow.models import register_model
from forgetflow.models.adapters import ArchAdapter, Widening, register_adapter


@register_model("resnet18")
def resnet18(in_channels: int = 3, num_classes: int = 10, image_size: int = 32, width: int = 64) -> nn.Module:
    """ResNet-18; for inputs under 64 px the stem becomes a 3x3 stride-1 conv without max-pool (CIFAR style)."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if image_size < 64:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    return model


def _widen(model: nn.Module) -> list[Widening]:
    """The inner activation of every BasicBlock (conv1/bn1 widened, conv2 reads it): the residual stream and the
    head are untouched, so no skip connection needs padding."""
    blocks = [name for name, m in model.named_modules() if hasattr(m, "conv2") and hasattr(m, "bn1")]
    return [Widening(f"{b}.conv1", f"{b}.bn1", f"{b}.conv2") for b in blocks]


def _late(model: nn.Module) -> list[str]:
    """layer4's convolutions (shortcuts included) and the classifier."""
    return [n for n, m in model.named_modules() if n.startswith("layer4.") and isinstance(m, nn.Conv2d)] + ["fc"]


# torchvision initialises ResNet convolutions with Kaiming-normal (fan_out, ReLU)
register_adapter("resnet18", ArchAdapter(widen=_widen, late_layers=_late, head="fc", reset_init="kaiming-normal"))
