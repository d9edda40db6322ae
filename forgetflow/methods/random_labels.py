"""Random Labels (RL): train on the forget samples under wrong labels, mixed with correctly labelled retain data.

Paper: Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (the random-labelling baseline), in
the form SalUn (Fan et al., ICLR 2024) runs it: every forget sample gets a random label and the relabelled
forget set is trained on together with the retain set, cross-entropy on both. Needs: forget + retain.
Our choices: the wrong label is drawn once per sample, uniformly among the *other* classes, from
``run.generator`` (SalUn's code may redraw the true label; we never do, so every forget step pushes away from
it). SalUn shuffles the union of both sets; we build every batch from ``forget_batch_size`` relabelled forget
samples plus ``batch_size`` retain samples, each cycled, so a small forget set is visited many times within
a budget of a fraction of a retain pass (with a shuffled union, a 1 % forget set would appear in about one
batch in a hundred). Budget in passes over the retain set, cosine learning-rate decay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.runtime import RunContext


class RandomLabelsConfig(MethodConfig):
    lr: float = Field(0.01, gt=0, description="SGD learning rate")
    epochs: float = Field(0.25, gt=0, description="passes over the retain set (fractions allowed)")
    batch_size: int = Field(128, ge=1, description="retain samples per batch")
    forget_batch_size: int = Field(32, ge=1, description="relabelled forget samples per batch")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


@register_method("random-labels", needs=Needs.FORGET | Needs.RETAIN, config=RandomLabelsConfig,
                 paper="Golatkar et al., CVPR 2020; SalUn's RL, Fan et al., ICLR 2024 (baseline)",
                 search_space={"lr": [0.003, 0.01, 0.03], "epochs": [0.1, 0.25, 0.5], "forget_batch_size": [16, 32]})
def unlearn(model: nn.Module, data: UnlearnData, cfg: RandomLabelsConfig, run: RunContext) -> nn.Module:
    """Cross-entropy on (forget, random wrong label) and (retain, true label) samples in the same batches."""
    model.to(run.device).train()
    relabelled = data.forget.with_labels(training.random_wrong_labels(data.forget.labels, data.num_classes, run))
    optimizer = training.sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    total = max(1, math.ceil(cfg.epochs * len(data.retain) / cfg.batch_size))
    scheduler = training.cosine_lr(optimizer, total)
    forget = training.cycled(relabelled, cfg.forget_batch_size, run)
    retain = training.cycled(data.retain, cfg.batch_size, run)
    for i in range(total):
        f, r = next(forget), next(retain)
        loss = F.cross_entropy(model(torch.cat([f.x, r.x])), torch.cat([f.y, r.y]))
        training.step(optimizer, loss)
        scheduler.step()
        if i % 50 == 0:
            run.report("unlearn/loss", loss.item(), i)
    return model.eval()
