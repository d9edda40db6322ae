"""Gradient Ascent (GA): take SGD steps that *increase* the cross-entropy on the forget set.

Paper: the "GA" / "NegGrad" baseline of Thudi et al., "Unrolling SGD", EuroS&P 2022, and Graves et al.,
"Amnesiac Machine Learning", AAAI 2021, as run by Jia et al. (NeurIPS 2023) and SalUn (ICLR 2024): SGD with
momentum on -CE over forget batches, model in train mode, a few passes with a learning rate far below the
training one. Needs: forget only (it never sees the retain set, so nothing repairs the damage it does).
Our choices: a cosine decay, so the last steps are small; lr 1e-3 is the largest that did not collapse the
model on Fashion-MNIST random 10 % (2e-3 took every accuracy to about 60 %, 5e-4 changed nothing;
docs/methods/baselines.md); BatchNorm layers stay in train mode as in the reference code (their running
statistics drift toward the forget data). Freezing BN instead made the ascent diverge to NaN weights on
Fashion-MNIST random 10 % at lr 2e-3, so that is not offered.
Budget (``common`` rule): ``ceil(forget_passes * |D_f| / batch_size)`` ascent steps (passes over the forget
set, as the old ``epochs``), at least ``min_steps``.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, SgdSettings, cosine_steps
from forgetflow.runtime import RunContext


class GradientAscentConfig(SgdSettings, ForgetBudget):
    lr: float = Field(1e-3, gt=0, description="SGD learning rate of the ascent")
    batch_size: int = Field(64, ge=1, description="forget samples per step")
    min_steps: int = Field(1, ge=1, description="floor on the ascent steps (an ascent has nothing to repair it)")


def _cost(cfg: GradientAscentConfig, sizes) -> float:
    return cfg.step_budget(sizes.forget, cfg.batch_size) * cfg.batch_size


@register_method("gradient-ascent", needs=Needs.FORGET, config=GradientAscentConfig,
                 paper="Thudi et al., EuroS&P 2022; Graves et al., AAAI 2021 (baseline)", cost=_cost,
                 search_space={"lr": [1e-4, 3e-4, 1e-3], "forget_passes": [0.25, 0.5, 1.0]},
                 search_basis="lr from a tenth of the training lr's range down; a few passes as in SalUn's runs")
def unlearn(model: nn.Module, data: UnlearnData, cfg: GradientAscentConfig, run: RunContext) -> nn.Module:
    """Ascend the cross-entropy on forget batches (SGD on -CE), nothing else."""
    model.to(run.device).train()
    batches = training.cycled(data.forget, cfg.batch_size, run)
    # the reported value is the negated forget loss (what is descended)
    cosine_steps(cfg.sgd(model), cfg.step_budget(len(data.forget), cfg.batch_size),
                 lambda i: -training.ce_loss(model, next(batches)), run, "unlearn/neg_forget_loss", log_every=10)
    return model.eval()
