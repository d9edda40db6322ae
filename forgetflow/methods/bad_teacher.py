"""Bad Teacher: distil from an incompetent teacher on forget samples and from the original on retain samples.

Paper: Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in Deep
Networks Using an Incompetent Teacher", AAAI 2023. Needs: forget + retain.

Three models: the *competent teacher* is a frozen copy of the original; the *incompetent teacher* is a
randomly initialised model of the same architecture; the *student* starts as the original. The student is
trained on one shuffled set made of every forget sample and a random share of the retain samples
(30 % of the retain set in the authors' code), each sample tagged forget or retain; its target is the softened output of
the incompetent teacher on forget samples and of the competent teacher on retain samples, and the loss is
``KL(target || student)`` at temperature T (default 1). The authors' defaults: Adam with lr 1e-4, one
epoch, batches of 256.

Our choices where the paper is silent:

* The incompetent teacher's initial weights are drawn from a seed taken from ``run.generator`` (so it is
  reproducible and never equals the original's own initialisation by accident); it runs in eval mode.
* The KL is averaged over the batch ("batchmean"); the authors' ``F.kl_div`` default also divides by the
  number of classes, a constant factor that Adam's update ignores (up to its epsilon).
* The student trains in train mode (BatchNorm statistics move with the mixed batches), as a normal
  training step would; the teachers are in eval mode.
* No ``T**2`` factor, as in the authors' loss.
* Budget (``common`` rule): the retain share is ``retain_per_forget`` samples per forget sample (the
  authors' 30 % of the retain set is 2.7 per forget sample at a 10 % forget set), so the mixed set and the
  ``ceil(forget_passes * |mixed| / batch_size)`` steps (at least ``min_steps``) follow the forget set.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.data.samples import SampleSet
from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, frozen, frozen_in_place
from forgetflow.methods.cost import FORWARD
from forgetflow.runtime import RunContext


class BadTeacherConfig(ForgetBudget):
    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    forget_passes: float = Field(1.0, gt=0, description="passes over the mixed set (forget + its retain share)")
    batch_size: int = Field(256, ge=1)
    retain_per_forget: float = Field(2.7, gt=0, description="retain samples distilled from the good teacher per "
                                                             "forget sample (the authors' 30 % of the retain set at a "
                                                             "10 % forget set)")
    temperature: float = Field(1.0, gt=0, description="KL temperature T")


def _cost(cfg: BadTeacherConfig, sizes) -> float:
    mixed = sizes.forget + _retain_share(cfg, sizes.forget, sizes.retain)
    return cfg.step_budget(mixed, cfg.batch_size) * cfg.batch_size * (1 + 2 * FORWARD)  # student + two teacher passes


@register_method("bad-teacher", needs=Needs.FORGET | Needs.RETAIN, config=BadTeacherConfig,
                 paper="Chundawat et al., AAAI 2023", kind="baseline", cost=_cost,
                 search_space={"lr": [1e-4, 3e-4, 1e-3], "retain_per_forget": [0.9, 2.7], "temperature": [1.0, 4.0]},
                 search_basis="the authors' Adam lr 1e-4 and up; their 30 % retain share and a third of it; T 1 or 4")
def unlearn(model: nn.Module, data: UnlearnData, cfg: BadTeacherConfig, run: RunContext) -> nn.Module:
    """KL-distil the student from a random teacher on forget samples and from the original on retain samples."""
    model.to(run.device)
    competent = frozen(model)
    incompetent = frozen_in_place(training.fresh_model(model, int(run.randint(0, 2**31 - 1, (1,)).item())))
    keep = _retain_share(cfg, len(data.forget), len(data.retain))
    retain_subset = data.retain.subset(torch.randperm(len(data.retain), generator=run.generator)[:keep])
    # Like the authors' dataset, the label slot carries the tag (1 = forget, 0 = retain): the loss never
    # reads true labels.
    mixed = SampleSet.concat(data.forget.with_labels(torch.ones(len(data.forget), dtype=torch.long)),
                             retain_subset.with_labels(torch.zeros(keep, dtype=torch.long)))
    optimizer = training.adam(model, cfg.lr)
    total = cfg.step_budget(len(mixed), cfg.batch_size)
    batches = training.cycled(mixed, cfg.batch_size, run)
    model.train()
    for i in range(total):
        batch = next(batches)
        with torch.no_grad():
            is_forget = batch.y.bool().unsqueeze(1)
            bad = torch.softmax(incompetent(batch.x) / cfg.temperature, dim=1)
            good = torch.softmax(competent(batch.x) / cfg.temperature, dim=1)
            target = torch.where(is_forget, bad, good)
        loss = training.distill_kl(model(batch.x), target, cfg.temperature)
        training.step(optimizer, loss)
        if i % 20 == 0:
            run.report("unlearn/kl", loss.item(), i)
    return model.eval()


def _retain_share(cfg: BadTeacherConfig, n_forget: int, n_retain: int) -> int:
    """Retain samples in the mixed set: ``retain_per_forget`` per forget sample, at least one, at most all."""
    return max(1, min(n_retain, round(cfg.retain_per_forget * n_forget)))
