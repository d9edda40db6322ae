"""NegGrad+: descend the loss on the retain set while ascending it on the forget set.

Paper: Kurmanji et al., "Towards Unbounded Machine Unlearning" (SCRUB), NeurIPS 2023, baseline section;
also MUFAC's "Advanced NegGrad". Needs: forget + retain.
Our choices where the paper is silent: one joint step per forget batch with a retain batch cycled alongside,
a cosine decay of the learning rate. Budget (``common`` rule): ``ceil(forget_passes * |D_f| /
forget_batch_size)`` joint steps, at least ``min_steps``, i.e. ``forget_passes`` passes over the forget set.
The default 2.25 is the old default (half a retain pass) on Fashion-MNIST random 10 %.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, SgdSettings, cosine_steps
from forgetflow.runtime import RunContext


class NegGradPlusConfig(SgdSettings, ForgetBudget):
    forget_passes: float = Field(2.25, gt=0, description="passes over the forget set (one joint step per forget batch)")
    forget_batch_size: int = Field(64, ge=1)
    retain_weight: float = Field(0.99, ge=0.0, le=1.0,
                                 description="alpha: weight of the retain loss (1 - alpha on the forget loss)")


def _cost(cfg: NegGradPlusConfig, sizes) -> float:
    return cfg.step_budget(sizes.forget, cfg.forget_batch_size) * (cfg.batch_size + cfg.forget_batch_size)


@register_method("neggrad-plus", needs=Needs.FORGET | Needs.RETAIN, config=NegGradPlusConfig,
                 paper="Kurmanji et al., NeurIPS 2023 (baseline)", cost=_cost,
                 search_space={"lr": [0.005, 0.01, 0.03], "forget_passes": [0.5, 1.5, 4.5],
                               "retain_weight": [0.9, 0.99]},
                 search_basis="lr around 0.01; alpha 0.9 / 0.99 (the paper's range); budget 0.5 to 4.5 forget passes")
def unlearn(model: nn.Module, data: UnlearnData, cfg: NegGradPlusConfig, run: RunContext) -> nn.Module:
    """alpha * CE(retain) - (1 - alpha) * CE(forget), one joint SGD step per forget batch."""
    model.to(run.device).train()
    optimizer = cfg.sgd(model)
    retain = training.cycled(data.retain, cfg.batch_size, run)
    forget = training.cycled(data.forget, cfg.forget_batch_size, run)

    def loss_at(i: int):
        return (cfg.retain_weight * training.ce_loss(model, next(retain))
                - (1 - cfg.retain_weight) * training.ce_loss(model, next(forget)))

    cosine_steps(optimizer, cfg.step_budget(len(data.forget), cfg.forget_batch_size), loss_at, run, "unlearn/loss")
    return model.eval()
