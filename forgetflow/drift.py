"""Oracle-audit measurements: the champion against a fresh retrain on the current dataset version.

The erased samples are gone (their pixels deleted, and purged from storage), so an audit cannot measure
forgetting on them; it measures what accumulated unlearning may have cost: accuracy on the remaining training
samples and on the test split, and how far the champion's outputs on test images are from the retrain's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forgetflow.data import DatasetVersion
from forgetflow.metrics import js_divergence
from forgetflow.training import outputs


def compare(champion: nn.Module, retrained: nn.Module, version: DatasetVersion, device: torch.device | str = "cpu",
            batch_size: int = 1024) -> dict[str, Any]:
    """Accuracies of both models on the version's training (= retain) and test splits, and their divergence."""
    sets = {"retain": version.sample_set(split="train"), "test": version.sample_set(split="test")}
    result: dict[str, Any] = {"champion": {}, "retrain": {}}
    test_logits = {}
    for role, model in (("champion", champion), ("retrain", retrained)):
        for name, samples in sets.items():
            out = outputs(model, samples, batch_size, device)
            result[role][f"{name}_acc"] = out.accuracy
            if name == "test":
                test_logits[role] = out.logits
    result["js_test"] = js_divergence(test_logits["champion"], test_logits["retrain"])
    agree = (test_logits["champion"].argmax(1) == test_logits["retrain"].argmax(1)).float().mean().item()
    result["agreement_test"] = 100.0 * agree
    result["retain_samples"] = len(sets["retain"])
    return result
