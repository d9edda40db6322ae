"""Gradient Ascent (GA): take SGD steps that *increase* the cross-entropy on the forget set.

Paper: the "GA" / "NegGrad" baseline of Thudi et al., "Unrolling SGD", EuroS&P 2022, and Graves et al.,
"Amnesiac Machine Learning", AAAI 2021, as run by Jia et al. (NeurIPS 2023) and SalUn (ICLR 2024): SGD with
momentum on -CE over forget batches, model in train mode, a few passes with a learning rate far below the
training one. Needs: forget only (it never sees the retain set, so nothing repairs the damage it does).
Our choices: the budget is given in passes over the forget set (fractions allowed) with a cosine decay, so
the last steps are small; lr 1e-3 is the largest that did not collapse the model on Fashion-MNIST random
10 % (2e-3 took every accuracy to about 60 %, 5e-4 changed nothing; docs/methods/baselines.md); BatchNorm
layers stay in train mode as in the reference code (their running statistics drift toward the forget data).
Freezing BN instead made the ascent diverge to NaN weights on Fashion-MNIST random 10 % at lr 2e-3, so that
is not offered.
"""

from __future__ import annotations

import math

from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.runtime import RunContext


class GradientAscentConfig(MethodConfig):
    lr: float = Field(1e-3, gt=0, description="SGD learning rate of the ascent")
    epochs: float = Field(1.0, gt=0, description="passes over the forget set (fractions allowed)")
    batch_size: int = Field(64, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


@register_method("gradient-ascent", needs=Needs.FORGET, config=GradientAscentConfig,
                 paper="Thudi et al., EuroS&P 2022; Graves et al., AAAI 2021 (baseline)",
                 search_space={"lr": [1e-4, 3e-4, 1e-3], "epochs": [0.25, 0.5, 1.0]})
def unlearn(model: nn.Module, data: UnlearnData, cfg: GradientAscentConfig, run: RunContext) -> nn.Module:
    """Ascend the cross-entropy on forget batches (SGD on -CE), nothing else."""
    model.to(run.device).train()
    optimizer = training.sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    total = max(1, math.ceil(cfg.epochs * len(data.forget) / cfg.batch_size))
    scheduler = training.cosine_lr(optimizer, total)
    batches = training.cycled(data.forget, cfg.batch_size, run)
    for i in range(total):
        loss = -training.ce_loss(model, next(batches))
        training.step(optimizer, loss)
        scheduler.step()
        if i % 10 == 0:
            run.report("unlearn/forget_loss", -loss.item(), i)
    return model.eval()
