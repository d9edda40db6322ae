"""SalUn: weight saliency from the forget loss, then random-label unlearning that updates only salient weights.

Paper: Fan, Liu, Zhang, Wei, Wong, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation", ICLR 2024. Needs: forget + retain.
What we keep from the paper and its code: the saliency map is |sum over forget batches of dCE/dtheta| for
every parameter tensor (BN included), taken with the model in eval mode; the mask keeps the top
``mask_ratio`` fraction of all weights by that magnitude, one global threshold (their default ratio 0.5);
unlearning is Random Labels (forget samples under random labels together with retain samples, CE) where
only masked weights move: gradients are multiplied by the mask and unmasked weights are held at their
original values after every step (so momentum and weight decay cannot move them either).
Our choices: the mask's gradient is taken at the original weights (the released script steps an optimizer
while it accumulates, which makes the map depend on the batch order); the random label is a *wrong* label,
drawn once per sample from ``run.generator``; batches hold ``forget_batch_size`` relabelled forget samples
plus ``batch_size`` retain samples (the loop shared with our ``random-labels``, so small forget sets are
visited often); a cosine learning-rate decay. Budget (``common`` rule): ``ceil(forget_passes * |D_f| /
forget_batch_size)`` steps, at least ``min_steps``, after one saliency pass over the forget set.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.data.samples import SampleSet
from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, SgdSettings, mixed_ce, relabelled_pairs
from forgetflow.runtime import RunContext


class SalunConfig(SgdSettings, ForgetBudget):
    mask_ratio: float = Field(0.5, gt=0, le=1, description="fraction of weights (largest |forget grad|) that may move")
    forget_passes: float = Field(0.5, gt=0, description="passes over the relabelled forget set (one step per forget batch)")
    batch_size: int = Field(128, ge=1, description="retain samples per batch")
    forget_batch_size: int = Field(32, ge=1, description="relabelled forget samples per batch")
    saliency_batch_size: int = Field(256, ge=1, description="batch size of the saliency pass")


def _cost(cfg: SalunConfig, sizes) -> float:
    return sizes.forget + cfg.step_budget(sizes.forget, cfg.forget_batch_size) * (cfg.batch_size + cfg.forget_batch_size)


@register_method("salun", needs=Needs.FORGET | Needs.RETAIN, config=SalunConfig,
                 paper="Fan et al., ICLR 2024 (baseline)", cost=_cost,
                 search_space={"mask_ratio": [0.3, 0.5], "lr": [0.003, 0.01, 0.03], "forget_passes": [0.25, 0.5, 1.0]},
                 search_basis="mask ratio around the paper's 0.5; lr around 0.01; about one forget pass")
def unlearn(model: nn.Module, data: UnlearnData, cfg: SalunConfig, run: RunContext) -> nn.Module:
    """Random-label unlearning restricted to the weights most salient for the forget loss."""
    model.to(run.device)
    masks = saliency_mask(model, data.forget, cfg.mask_ratio, cfg.saliency_batch_size, run)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    frozen = {n: p.detach().clone() for n, p in named}
    pairs = relabelled_pairs(data.forget, data.retain, data.num_classes, cfg.forget_batch_size, cfg.batch_size, run)
    model.train()
    optimizer = cfg.sgd([p for _, p in named])
    total = cfg.step_budget(len(data.forget), cfg.forget_batch_size)
    scheduler = training.cosine_lr(optimizer, total)
    for i in range(total):
        loss = mixed_ce(model, *next(pairs))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for n, p in named:
            if p.grad is not None:
                p.grad.mul_(masks[n])
        optimizer.step()
        with torch.no_grad():  # weight decay and momentum must not move unmasked weights either
            for n, p in named:
                p.copy_(torch.where(masks[n].bool(), p, frozen[n]))
        scheduler.step()
        if i % 50 == 0:
            run.report("unlearn/loss", loss.item(), i)
    return model.eval()


def saliency_mask(model: nn.Module, forget: SampleSet, ratio: float, batch_size: int,
                  run: RunContext) -> dict[str, torch.Tensor]:
    """{parameter name: 0/1 mask}: the top ``ratio`` of all weights by |summed forget-CE gradient|."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sums = {n: torch.zeros_like(p) for n, p in named}
    for batch in forget.batches(batch_size, device=run.device):
        model.zero_grad(set_to_none=True)
        training.ce_loss(model, batch).backward()
        for n, p in named:
            if p.grad is not None:
                sums[n] += p.grad
    model.zero_grad(set_to_none=True)
    flat = torch.cat([s.abs().flatten() for s in sums.values()])
    k = max(1, min(len(flat), math.ceil(round(ratio * len(flat), 9))))
    keep = torch.zeros_like(flat)
    keep[torch.topk(flat, k).indices] = 1.0  # exactly k weights, as SalUn's rank-based cut
    masks, start = {}, 0
    for n, s in sums.items():
        masks[n] = keep[start : start + s.numel()].view_as(s)
        start += s.numel()
    total = sum(int(m.sum()) for m in masks.values())
    run.report("unlearn/salient_fraction", total / len(flat))
    return masks
