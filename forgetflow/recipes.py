"""The serving recipe of a project: which architecture its models have and how they are trained.

The original, the retrained oracle and the reference models all use it. It lives apart from
``forgetflow/pipeline.py`` so that low-level modules (the reference models) can read it without importing the
project's job steps.
"""

from __future__ import annotations

from typing import Any

from forgetflow.config import Params
from forgetflow.data.version import DatasetVersion
from forgetflow.training import Recipe


def training_recipe(params: Params) -> Recipe:
    """The training recipe of params.yaml's ``train`` section."""
    t = params.train
    return Recipe(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, momentum=t.momentum,
                  weight_decay=t.weight_decay, schedule=t.schedule)


def architecture(params: Params, version: DatasetVersion) -> tuple[str, dict[str, Any]]:
    """The architecture name and config for models of params.yaml's ``model`` section on this dataset version."""
    c, h, _ = version.shape
    config = {"in_channels": c, "num_classes": version.num_classes, "image_size": h}
    if params.model.arch == "small-cnn":
        config["width"] = params.model.width
    return params.model.arch, config
