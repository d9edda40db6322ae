"""The default model: a small CNN that trains on a CPU in a few seconds per epoch on Fashion-MNIST."""

from __future__ import annotations

from torch import nn

from forgetflow.models import register_model
from forgetflow.models.adapters import ArchAdapter, Widening, register_adapter


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (the first two max-pooled), global pooling to 2x2, an MLP head.

    Attribute names (``conv1``...``fc2``) are stable: the adapter below (LoRA targets for RFA, REM's
    widening) addresses layers by these names. ReLUs are not in-place, so double backward (MU-Mis) works.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, head: int = 128) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * w)
        self.conv3 = nn.Conv2d(2 * w, 4 * w, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * w)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.act = nn.ReLU()
        self.fc1 = nn.Linear(4 * w * 4, head)
        self.fc2 = nn.Linear(head, num_classes)

    def features(self, x):
        """Penultimate features (the input of ``fc2``)."""
        x = self.pool(self.act(self.bn1(self.conv1(x))))
        x = self.pool(self.act(self.bn2(self.conv2(x))))
        x = self.act(self.bn3(self.conv3(x)))
        x = self.gap(x).flatten(1)
        return self.act(self.fc1(x))

    def forward(self, x):
        return self.fc2(self.features(x))


@register_model("small-cnn")
def small_cnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 16,
              head: int = 128) -> nn.Module:
    """The default architecture; ``image_size`` is accepted for a uniform builder signature.

    ``head`` is the width of the hidden layer of the MLP head (fc1's outputs); benchmark settings that
    want a model with more capacity to memorise widen it (forgetflow/settings/).
    """
    return SmallCNN(in_channels=in_channels, num_classes=num_classes, width=width, head=head)


def _widen(model: nn.Module) -> list[Widening]:
    """conv1..conv3 and fc1; conv3's new channels reach fc1 through the 2x2 pooling and flatten (4 columns each)."""
    return [Widening("conv1", "bn1", "conv2"), Widening("conv2", "bn2", "conv3"),
            Widening("conv3", "bn3", "fc1"), Widening("fc1", None, "fc2")]


register_adapter("small-cnn", ArchAdapter(widen=_widen, late_layers=lambda model: ["conv3", "fc1", "fc2"],
                                          head="fc2", reset_init="uniform"))
