"""SSD: dampen the parameters that matter far more to the forget set than to the training set as a whole.

Paper: Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through Selective Synaptic
Dampening", AAAI 2024. Needs: forget + the whole training set (``Needs.TRAIN``: forget and retain in one
set, as the authors' "full train" loader concatenates the retain and forget sets).

No gradient step is taken. Two diagonal importances are computed with the model in eval mode:
``I_f`` on the forget set and ``I_D`` on the whole training set. For every parameter entry i,

* selection: entry i is selected when ``I_f,i > alpha * I_D,i``;
* dampening: a selected entry is multiplied by ``beta_i = min(lambda * I_D,i / I_f,i, 1)``;

defaults ``alpha = 10`` (selection weighting) and ``lambda = 1`` (dampening constant), the authors'
values for ResNet-18. Measured on our default small CNN (docs/methods/baselines.md): alpha = 10 selects
almost nothing there, even for a full class; alpha = 5 forgets a Fashion-MNIST class at the oracle's
retain and test accuracy. The search space covers 2 to 10. Every entry of ``model.named_parameters()`` takes part (convolutions, linear
layers, BatchNorm scales and shifts); buffers (BatchNorm running statistics) are left alone.

What the importance is, exactly (the authors' code, which the paper calls a diagonal Fisher information):
for each mini-batch B (unshuffled, in set order) the gradient of the *batch-mean* cross-entropy with the
true labels is taken, squared entry-wise, and these squares are averaged over the batches:
``I_i = (1 / #batches) * sum_B (d mean_{x in B} CE(x) / d theta_i)**2``. This is not the per-sample
Fisher: it depends on the batch size (both sets use the same one, 128, as the authors do), and an entry
whose forget importance is positive while its training importance is exactly 0 is set to 0.

Our choice where the paper is silent: ``train_fraction`` < 1 estimates the training-set importance on a
random subset (drawn from ``run.generator``) to save time; the default 1.0 is the paper's full pass. The
authors note the training-set importance can be computed once and stored; we recompute it per request.
Budget: no optimiser steps; its cost is one gradient pass over the forget set and one over
``train_fraction`` of the training set, so it does not shrink with the forget set (``train_fraction`` does).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.data.samples import SampleSet
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.runtime import RunContext


class SsdConfig(MethodConfig):
    alpha: float = Field(10.0, gt=0, description="selection weighting: select where forget imp > alpha * train imp")
    lam: float = Field(1.0, gt=0, description="dampening constant lambda: beta = min(lambda * train imp / forget imp, 1)")
    batch_size: int = Field(128, ge=1, description="batch size of both importance passes")
    train_fraction: float = Field(1.0, gt=0, le=1, description="fraction of the training set for its importance")


def _cost(cfg: SsdConfig, sizes) -> float:
    return sizes.forget + cfg.train_fraction * sizes.train  # one forward + backward per sample of each pass


@register_method("ssd", needs=Needs.FORGET | Needs.TRAIN, config=SsdConfig,
                 paper="Foster et al., AAAI 2024", kind="baseline", cost=_cost,
                 search_space={"alpha": [2.0, 3.0, 5.0, 7.0, 10.0], "lam": [0.5, 1.0]},
                 search_basis="the authors' alpha 10 and lambda 1, and below (alpha sets how selective it is)")
def unlearn(model: nn.Module, data: UnlearnData, cfg: SsdConfig, run: RunContext) -> nn.Module:
    """Dampen parameters whose forget importance exceeds alpha times their training-set importance."""
    model.to(run.device).eval()
    train = data.train
    if cfg.train_fraction < 1.0:
        keep = max(1, round(cfg.train_fraction * len(train)))
        train = train.subset(torch.randperm(len(train), generator=run.generator)[:keep])
    forget_imp = importance(model, data.forget, cfg.batch_size, run)
    train_imp = importance(model, train, cfg.batch_size, run)
    selected = dampen(model, forget_imp, train_imp, cfg.alpha, cfg.lam)
    total = sum(p.numel() for p in model.parameters())
    run.report("unlearn/selected_fraction", selected / max(1, total), 0)
    return model.eval()


def importance(model: nn.Module, samples: SampleSet, batch_size: int, run: RunContext) -> dict[str, torch.Tensor]:
    """Mean over (unshuffled) batches of the squared gradient of the batch-mean cross-entropy, per parameter."""
    imp = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = 0
    for batch in samples.batches(batch_size, device=run.device):
        model.zero_grad(set_to_none=True)
        training.ce_loss(model, batch).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                imp[n] += p.grad.detach().pow(2)
        batches += 1
    model.zero_grad(set_to_none=True)
    return {n: v / max(1, batches) for n, v in imp.items()}


@torch.no_grad()
def dampen(model: nn.Module, forget_imp: dict[str, torch.Tensor], train_imp: dict[str, torch.Tensor],
           alpha: float, lam: float) -> int:
    """Multiply selected entries by ``min(lam * train / forget, 1)`` in place; returns how many were selected."""
    count = 0
    for n, p in model.named_parameters():
        f, d = forget_imp[n], train_imp[n]
        where = f > alpha * d  # strict, so entries with both importances 0 are never selected
        beta = (lam * d[where] / f[where]).clamp(max=1.0)
        p[where] = p[where] * beta
        count += int(where.sum())
    return count
