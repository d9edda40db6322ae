"""l1-sparse: fine-tune on the retain set with an l1 penalty on the weights whose weight decays linearly to 0.

Paper: Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023 ("l1-sparse MU"). Needs: forget + retain; it reads only the retain set (the forget set is
declared because the pipeline's contract always hands it over).
What their code does and we keep: loss = CE(retain) + gamma_t * ||theta||_1 over *all* parameters, SGD with
momentum, gamma_t decaying linearly from ``gamma`` toward 0 (``gamma * (1 - t / T)``), the sparsity pushing
the model toward a region where the forget data's contribution is easier to erase.
Our choices: the decay runs per step rather than per epoch (our budgets are fractions of an epoch), over the
first ``l1_fraction`` of the steps (their ``no_l1_epochs`` tail is ``1 - l1_fraction``); the default gamma
is their scripts' 5e-4; the fine-tuning loop (cosine decay) is the one FT and ARU use (``common.fine_tune``).
Budget (``common`` rule): ``ceil(forget_passes * |D_f| / batch_size)`` retain batches, at least ``min_steps``.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, SgdSettings, fine_tune
from forgetflow.runtime import RunContext


class L1SparseConfig(SgdSettings, ForgetBudget):
    forget_passes: float = Field(9.0, gt=0, description="retain samples trained on per forget sample")
    gamma: float = Field(5e-4, ge=0, description="initial weight of the l1 penalty (decays linearly)")
    l1_fraction: float = Field(1.0, gt=0, le=1, description="fraction of the steps with the l1 term")


def _cost(cfg: L1SparseConfig, sizes) -> float:
    return cfg.step_budget(sizes.forget, cfg.batch_size) * cfg.batch_size


@register_method("l1-sparse", needs=Needs.FORGET | Needs.RETAIN, config=L1SparseConfig,
                 paper="Jia et al., NeurIPS 2023 (baseline)", cost=_cost,
                 search_space={"lr": [0.01, 0.03], "forget_passes": [3.0, 9.0, 27.0], "gamma": [1e-4, 5e-4, 2e-3]},
                 search_basis="gamma around the authors' 5e-4; lr 0.01-0.03; 3 to 27 retain samples per forget sample")
def unlearn(model: nn.Module, data: UnlearnData, cfg: L1SparseConfig, run: RunContext) -> nn.Module:
    """CE on retain batches + gamma_t * ||theta||_1, gamma_t decaying linearly to zero."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = cfg.step_budget(len(data.forget), cfg.batch_size)
    l1_steps = max(1, math.ceil(cfg.l1_fraction * total))

    def penalty(i: int) -> torch.Tensor:
        gamma = cfg.gamma * max(0.0, 1.0 - i / l1_steps)
        return gamma * torch.cat([p.flatten() for p in params]).abs().sum() if gamma > 0 else torch.zeros(())

    return fine_tune(model, data.retain, cfg, total, run, penalty=penalty)
