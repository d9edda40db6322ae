"""torchvision ResNet-18 (random init, no download), adapted to small inputs and any channel count."""

from __future__ import annotations

from torch import nn

from forgetflow.models import register_model


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
