"""The loader behind every registered model: MLflow's ``python_function`` flavour without pickled code.

Each registered version's ``model/`` artifact is an MLflow model with one flavour, ``python_function``,
whose ``loader_module`` is this module and whose ``data`` is ``checkpoint.pt`` (architecture name, its
config and the weights). ``mlflow.pyfunc.load_model("models:/<name>@champion")`` imports this module from
the *installed* forgetflow and calls :func:`_load_pyfunc`, which reads the checkpoint with
``torch.load(weights_only=True)`` and rebuilds the architecture from the registry. Nothing in the artifact
is executed: earlier versions logged a pickle-format PyTorch model, and whoever loaded that ran whatever code
the artifact store held (docs/operations.md, "The artifact store is a trust boundary").

This module imports no MLflow: ``_load_pyfunc(data_path)`` returning an object with ``predict`` is the whole
contract of a loader module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from forgetflow.data.samples import to_float
from forgetflow.models import load_checkpoint

LOADER_MODULE = __name__
CHECKPOINT_NAME = "checkpoint.pt"


class ClassifierModel:
    """A loaded forgetflow classifier as a ``python_function`` model: images in, class scores out."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """Class scores (logits, float32 ``[N, classes]``) of a batch of images.

        Args:
            model_input: images ``[N, C, H, W]`` as a numpy array, a tensor or nested lists: uint8 pixels as a
                dataset version stores them, or floats already scaled to [0, 1].
            params: unused (MLflow passes inference parameters here).
        """
        images = torch.as_tensor(np.asarray(model_input))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return self.model(to_float(images).to(device)).cpu().numpy()


def _load_pyfunc(data_path: str) -> ClassifierModel:
    """MLflow's entry point: ``data_path`` is the model's ``checkpoint.pt`` (or the folder holding it)."""
    path = Path(data_path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    return ClassifierModel(load_checkpoint(path, "cpu"))
