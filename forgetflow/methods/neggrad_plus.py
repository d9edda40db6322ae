"""NegGrad+: descend the loss on the retain set while ascending it on the forget set.

Paper: Kurmanji et al., "Towards Unbounded Machine Unlearning" (SCRUB), NeurIPS 2023, baseline section;
also MUFAC's "Advanced NegGrad". Needs: forget + retain.
Our choices where the paper is silent: one joint step per retain batch with a forget batch cycled
alongside (so small forget sets are revisited); the budget is given in passes over the retain set; a
cosine decay of the learning rate.
"""

from __future__ import annotations

import math

from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.runtime import RunContext


class NegGradPlusConfig(MethodConfig):
    lr: float = Field(0.01, gt=0, description="SGD learning rate")
    epochs: float = Field(0.5, gt=0, description="passes over the retain set (fractions allowed)")
    batch_size: int = Field(128, ge=1)
    forget_batch_size: int = Field(64, ge=1)
    retain_weight: float = Field(0.99, ge=0.0, le=1.0,
                                 description="alpha: weight of the retain loss (1 - alpha on the forget loss)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


@register_method("neggrad-plus", needs=Needs.FORGET | Needs.RETAIN, config=NegGradPlusConfig,
                 paper="Kurmanji et al., NeurIPS 2023 (baseline)",
                 search_space={"lr": [0.005, 0.01, 0.03], "epochs": [0.1, 0.25, 0.5], "retain_weight": [0.9, 0.99]})
def unlearn(model: nn.Module, data: UnlearnData, cfg: NegGradPlusConfig, run: RunContext) -> nn.Module:
    """alpha * CE(retain) - (1 - alpha) * CE(forget), one joint SGD step per retain batch."""
    model.to(run.device).train()
    optimizer = training.sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    total = max(1, math.ceil(cfg.epochs * len(data.retain) / cfg.batch_size))
    scheduler = training.cosine_lr(optimizer, total)
    retain = training.cycled(data.retain, cfg.batch_size, run)
    forget = training.cycled(data.forget, cfg.forget_batch_size, run)
    for i in range(total):
        loss = (cfg.retain_weight * training.ce_loss(model, next(retain))
                - (1 - cfg.retain_weight) * training.ce_loss(model, next(forget)))
        training.step(optimizer, loss)
        scheduler.step()
        if i % 50 == 0:
            run.report("unlearn/loss", loss.item(), i)
    return model.eval()
