"""l1-sparse: fine-tune on the retain set with an l1 penalty on the weights whose weight decays linearly to 0.

Paper: Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023 ("l1-sparse MU"). Needs: forget + retain; it reads only the retain set (the forget set is
declared because the pipeline's contract always hands it over).
What their code does and we keep: loss = CE(retain) + gamma_t * ||theta||_1 over *all* parameters, SGD with
momentum, gamma_t decaying linearly from ``gamma`` toward 0 (``gamma * (1 - t / T)``), the sparsity pushing
the model toward a region where the forget data's contribution is easier to erase.
Our choices: the decay runs per step rather than per epoch (our budgets are fractions of an epoch), over the
first ``l1_fraction`` of the steps (their ``no_l1_epochs`` tail is ``1 - l1_fraction``); the default gamma
is their scripts' 5e-4; a cosine learning-rate decay as in our other fine-tuning baselines.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.runtime import RunContext


class L1SparseConfig(MethodConfig):
    lr: float = Field(0.01, gt=0, description="SGD learning rate")
    epochs: float = Field(1.0, gt=0, description="passes over the retain set (fractions allowed)")
    gamma: float = Field(5e-4, ge=0, description="initial weight of the l1 penalty (decays linearly)")
    l1_fraction: float = Field(1.0, gt=0, le=1, description="fraction of the steps with the l1 term")
    batch_size: int = Field(128, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


@register_method("l1-sparse", needs=Needs.FORGET | Needs.RETAIN, config=L1SparseConfig,
                 paper="Jia et al., NeurIPS 2023 (baseline)",
                 search_space={"lr": [0.01, 0.03], "epochs": [0.25, 0.5, 1.0], "gamma": [1e-4, 5e-4, 2e-3]})
def unlearn(model: nn.Module, data: UnlearnData, cfg: L1SparseConfig, run: RunContext) -> nn.Module:
    """CE on retain batches + gamma_t * ||theta||_1, gamma_t decaying linearly to zero."""
    model.to(run.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = training.sgd(params, cfg.lr, cfg.momentum, cfg.weight_decay)
    total = max(1, math.ceil(cfg.epochs * len(data.retain) / cfg.batch_size))
    l1_steps = max(1, math.ceil(cfg.l1_fraction * total))
    scheduler = training.cosine_lr(optimizer, total)
    batches = training.cycled(data.retain, cfg.batch_size, run)
    for i in range(total):
        gamma = cfg.gamma * max(0.0, 1.0 - i / l1_steps)
        loss = training.ce_loss(model, next(batches))
        if gamma > 0:
            loss = loss + gamma * torch.cat([p.flatten() for p in params]).abs().sum()
        training.step(optimizer, loss)
        scheduler.step()
        if i % 50 == 0:
            run.report("unlearn/loss", loss.item(), i)
    return model.eval()
