"""What several methods share: optimiser settings, the step budget that follows the forget set, three loops.

**The budget rule** (one formula for every method that takes optimiser steps). A method's work follows the
size of its forget set, not of the retain or training set, so that a batch of a few data subjects costs
seconds while a 10 % forget set costs what it did when the presets were tuned:

    steps = clamp(ceil(forget_passes * |D_f| / B), min_steps, max_steps)

``B`` is the batch size the method counts its steps in (its forget batch where it pairs a forget batch with
each step, otherwise its batch size), so ``forget_passes`` is the work of that many passes over the forget
set: a retain-only method (fine-tuning) processes ``forget_passes * |D_f|`` retain samples. ``min_steps`` is
the floor that keeps a tiny batch from getting no repair at all; ``max_steps`` an optional cap. Each method's
docstring states what its steps are.

Why this rule and not passes over the retain set: the damage an unlearning step must undo and the signal it
must remove both come from the forget set; a retain pass costs the same for one image as for ten thousand,
which made a three-subject batch cost as much as a tenth of retraining. The shipped presets were converted
so that each keeps its step count on the scenario it was tuned on (``converted`` block in the preset file).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.data.samples import Batch, SampleSet
from forgetflow.methods.base import MethodConfig
from forgetflow.models import clone
from forgetflow.runtime import RunContext


class SgdSettings(MethodConfig):
    """Mixin: SGD with momentum and weight decay, and the batch size of a step."""

    lr: float = Field(0.01, gt=0, description="SGD learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, description="SGD weight decay")
    batch_size: int = Field(128, ge=1, description="samples per step")

    def sgd(self, params) -> torch.optim.SGD:
        """SGD over ``params`` (a module or tensors) with these settings."""
        return training.sgd(params, self.lr, self.momentum, self.weight_decay)


class ForgetBudget(MethodConfig):
    """Mixin: the number of optimiser steps, in proportion to the forget set (the module docstring's rule)."""

    forget_passes: float = Field(1.0, gt=0, description="work in passes over the forget set: steps = "
                                                        "ceil(forget_passes * |D_f| / batch), see min/max_steps")
    min_steps: int = Field(20, ge=1, description="floor on the steps (small forget sets still get a usable budget)")
    max_steps: int | None = Field(None, ge=1, description="cap on the steps; None = no cap")

    def step_budget(self, n_forget: int, batch_size: int) -> int:
        """This budget's step count for a forget set of ``n_forget`` samples counted in batches of ``batch_size``."""
        return budget_steps(self.forget_passes, n_forget, batch_size, self.min_steps, self.max_steps)


def budget_steps(forget_passes: float, n_forget: int, batch_size: int, min_steps: int = 1,
                 max_steps: int | None = None) -> int:
    """``clamp(ceil(forget_passes * n_forget / batch_size), min_steps, max_steps)``; 0 when ``forget_passes`` is 0.

    The product is rounded to 9 decimals first, so that 2.25 * 5400 / 64 does not become 190.00000000000003
    and one step more than the preset was tuned with. ``forget_passes = 0`` (where a method allows it) means
    no steps at all, floor or not.
    """
    if forget_passes <= 0:
        return 0
    steps = max(int(min_steps), math.ceil(round(forget_passes * n_forget / batch_size, 9)))
    return min(steps, int(max_steps)) if max_steps is not None else steps


# ---- shared loops ---------------------------------------------------------------------------------
def cosine_steps(optimizer: torch.optim.Optimizer, steps: int, loss_at: Callable[[int], torch.Tensor],
                 run: RunContext, metric: str, log_every: int = 50) -> None:
    """``steps`` optimiser steps on ``loss_at(i)`` with a cosine decay of the learning rate to 0.

    The loop of every descend-a-loss baseline (fine-tuning, GA, NegGrad+, Random Labels); ``metric`` is the
    name its loss is reported under every ``log_every`` steps (the value reported is ``loss_at``'s).
    """
    scheduler = training.cosine_lr(optimizer, steps)
    for i in range(steps):
        loss = loss_at(i)
        training.step(optimizer, loss)
        scheduler.step()
        if i % log_every == 0 or i == steps - 1:  # and the last step: a short run still has a curve
            run.report(metric, loss.item(), i)


def fine_tune(model: nn.Module, samples: SampleSet, cfg: SgdSettings, steps: int, run: RunContext,
              penalty: Callable[[int], torch.Tensor] | None = None, log_every: int = 50) -> nn.Module:
    """``steps`` SGD steps of cross-entropy on cycled batches of ``samples`` with a cosine decay (train mode).

    ``penalty(i)``, when given, is added to the loss of step ``i`` (l1-sparse's decaying l1 term).
    Used by fine-tuning, l1-sparse and ARU's repair.
    """
    model.to(run.device).train()
    batches = training.cycled(samples, cfg.batch_size, run)

    def loss_at(i: int) -> torch.Tensor:
        loss = training.ce_loss(model, next(batches))
        return loss + penalty(i) if penalty is not None else loss

    cosine_steps(cfg.sgd(model), steps, loss_at, run, "unlearn/retain_loss", log_every)
    return model.eval()


def relabelled_pairs(forget: SampleSet, retain: SampleSet, num_classes: int, forget_batch_size: int,
                     batch_size: int, run: RunContext) -> Iterator[tuple[Batch, Batch]]:
    """Endless (forget batch under random wrong labels, retain batch) pairs: Random Labels' and SalUn's data.

    Each forget sample's wrong label is drawn once, uniformly among the other classes, from ``run.generator``.
    """
    relabelled = forget.with_labels(training.random_wrong_labels(forget.labels, num_classes, run))
    forget_batches = training.cycled(relabelled, forget_batch_size, run)
    retain_batches = training.cycled(retain, batch_size, run)
    while True:
        yield next(forget_batches), next(retain_batches)


def mixed_ce(model: nn.Module, forget_batch: Batch, retain_batch: Batch) -> torch.Tensor:
    """Cross-entropy over one forward pass of a relabelled forget batch and a retain batch together."""
    logits = model(torch.cat([forget_batch.x, retain_batch.x]))
    return F.cross_entropy(logits, torch.cat([forget_batch.y, retain_batch.y]))


def frozen(model: nn.Module) -> nn.Module:
    """A teacher: an independent copy of ``model`` in eval mode that takes no gradients."""
    return frozen_in_place(clone(model))


def frozen_in_place(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and switch off its gradients (a model built only to be a teacher)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
