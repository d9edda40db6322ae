"""Retrain: the oracle as a method. Train a fresh model of the same architecture on the retain set only.

Reference: exact unlearning by retraining from scratch, the gold standard every unlearning paper compares
against (e.g. Bourtoule et al., "Machine Unlearning", IEEE S&P 2021, where it is the naive baseline SISA
improves on). Needs: forget + retain; it reads only the retain set (the forget set is declared because
the pipeline's contract always hands it over).

The model is rebuilt with ``build_model(*arch_of(model))``, its weights initialised from ``run.seed``
(inside a forked RNG, so the global generator is untouched), and trained with ``data.recipe``, the
original model's own recipe, through ``training.train_model`` with ``run``'s generator for batch order.
With the seed the cached oracle was trained with, the result is that oracle, weight for weight. The
original model's weights are not used. ``epochs`` overrides the recipe's epoch count (a cheaper, weaker
reference); by default the recipe is used unchanged.
"""

from __future__ import annotations

import dataclasses

from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.runtime import RunContext


class RetrainConfig(MethodConfig):
    epochs: int | None = Field(None, ge=1, description="override of the recipe's epochs; None = the original recipe")


def _cost(cfg: RetrainConfig, sizes) -> float:
    return (cfg.epochs or sizes.recipe_epochs) * sizes.retain


@register_method("retrain", needs=Needs.FORGET | Needs.RETAIN, config=RetrainConfig,
                 paper="retraining from scratch (exact unlearning reference)", kind="reference",
                 search_space={}, cost=_cost, search_basis="nothing to tune: the original recipe")
def unlearn(model: nn.Module, data: UnlearnData, cfg: RetrainConfig, run: RunContext) -> nn.Module:
    """Train a freshly initialised model of the same architecture on the retain set with the original recipe."""
    recipe = data.recipe if cfg.epochs is None else dataclasses.replace(data.recipe, epochs=cfg.epochs)
    fresh = training.fresh_model(model, run.seed).to(run.device)
    return training.train_model(fresh, data.retain, recipe, run, desc="retrain")
