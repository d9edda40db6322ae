"""Fine-tune (FT): keep training the original model on the retain set only.

Paper: the standard baseline of Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020, and
of every later benchmark (SalUn, SCRUB, SSD). Needs: forget + retain; it reads only the retain set (the
forget set is declared because the pipeline's contract always hands it over; FT ignores it).
Our choices where papers differ: plain SGD with momentum and a cosine decay over a budget given in
(fractional) passes over the retain set, so that its cost can be set as a fraction of retraining.
"""

from __future__ import annotations

import math

from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.runtime import RunContext


class FinetuneConfig(MethodConfig):
    lr: float = Field(0.01, gt=0, description="SGD learning rate")
    epochs: float = Field(1.0, gt=0, description="passes over the retain set (fractions allowed)")
    batch_size: int = Field(128, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


@register_method("finetune", needs=Needs.FORGET | Needs.RETAIN, config=FinetuneConfig,
                 paper="Golatkar et al., CVPR 2020 (baseline)",
                 search_space={"lr": [0.005, 0.01, 0.03], "epochs": [0.1, 0.25, 0.5]})
def unlearn(model: nn.Module, data: UnlearnData, cfg: FinetuneConfig, run: RunContext) -> nn.Module:
    """Fine-tune on the retain set with cross-entropy; forgetting comes from catastrophic forgetting."""
    model.to(run.device).train()
    optimizer = training.sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    total = max(1, math.ceil(cfg.epochs * len(data.retain) / cfg.batch_size))
    scheduler = training.cosine_lr(optimizer, total)
    batches = training.cycled(data.retain, cfg.batch_size, run)
    for i in range(total):
        loss = training.ce_loss(model, next(batches))
        training.step(optimizer, loss)
        scheduler.step()
        if i % 50 == 0:
            run.report("unlearn/retain_loss", loss.item(), i)
    return model.eval()
