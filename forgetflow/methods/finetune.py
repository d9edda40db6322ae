"""Fine-tune (FT): keep training the original model on the retain set only.

Paper: the standard baseline of Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020, and
of every later benchmark (SalUn, SCRUB, SSD). Needs: forget + retain; it reads the forget set's size only
(its budget) and trains on the retain set.
Our choices where papers differ: plain SGD with momentum and a cosine decay (``common.fine_tune``).
Budget (``common`` rule): ``ceil(forget_passes * |D_f| / batch_size)`` retain batches, at least
``min_steps``: it processes ``forget_passes`` retain samples per forget sample. The default 9 is the old
default of one retain pass on Fashion-MNIST random 10 % (48,600 retain / 5,400 forget samples).
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, SgdSettings, fine_tune
from forgetflow.runtime import RunContext


class FinetuneConfig(SgdSettings, ForgetBudget):
    forget_passes: float = Field(9.0, gt=0, description="retain samples trained on per forget sample")


def _cost(cfg: FinetuneConfig, sizes) -> float:
    return cfg.step_budget(sizes.forget, cfg.batch_size) * cfg.batch_size


@register_method("finetune", needs=Needs.FORGET | Needs.RETAIN, config=FinetuneConfig,
                 paper="Golatkar et al., CVPR 2020 (baseline)", cost=_cost,
                 search_space={"lr": [0.005, 0.01, 0.03], "forget_passes": [1.0, 3.0, 9.0, 27.0]},
                 search_basis="lr: half, equal and triple the common fine-tuning lr 0.01; budget: 1 to 27 retain "
                              "samples per forget sample (0.1 to 3 retain passes at random 10 %)")
def unlearn(model: nn.Module, data: UnlearnData, cfg: FinetuneConfig, run: RunContext) -> nn.Module:
    """Fine-tune on the retain set with cross-entropy; forgetting comes from catastrophic forgetting."""
    return fine_tune(model, data.retain, cfg, cfg.step_budget(len(data.forget), cfg.batch_size), run)
