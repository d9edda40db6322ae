"""Random Labels (RL): train on the forget samples under wrong labels, mixed with correctly labelled retain data.

Paper: Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (the random-labelling baseline), in
the form SalUn (Fan et al., ICLR 2024) runs it: every forget sample gets a random label and the relabelled
forget set is trained on together with the retain set, cross-entropy on both. Needs: forget + retain.
Our choices: the wrong label is drawn once per sample, uniformly among the *other* classes, from
``run.generator`` (SalUn's code may redraw the true label; we never do, so every forget step pushes away from
it). SalUn shuffles the union of both sets; we build every batch from ``forget_batch_size`` relabelled forget
samples plus ``batch_size`` retain samples, each cycled, so a small forget set is visited many times within
a budget of a fraction of a retain pass (with a shuffled union, a 1 % forget set would appear in about one
batch in a hundred); cosine learning-rate decay. Budget (``common`` rule): ``ceil(forget_passes * |D_f| /
forget_batch_size)`` steps, at least ``min_steps``; the default 0.5 is close to the old default (a quarter
retain pass) on Fashion-MNIST random 10 %.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, SgdSettings, cosine_steps, mixed_ce, relabelled_pairs
from forgetflow.runtime import RunContext


class RandomLabelsConfig(SgdSettings, ForgetBudget):
    forget_passes: float = Field(0.5, gt=0, description="passes over the relabelled forget set (one step per forget batch)")
    batch_size: int = Field(128, ge=1, description="retain samples per batch")
    forget_batch_size: int = Field(32, ge=1, description="relabelled forget samples per batch")


def _cost(cfg: RandomLabelsConfig, sizes) -> float:
    return cfg.step_budget(sizes.forget, cfg.forget_batch_size) * (cfg.batch_size + cfg.forget_batch_size)


@register_method("random-labels", needs=Needs.FORGET | Needs.RETAIN, config=RandomLabelsConfig,
                 paper="Golatkar et al., CVPR 2020; SalUn's RL, Fan et al., ICLR 2024 (baseline)", cost=_cost,
                 search_space={"lr": [0.003, 0.01, 0.03], "forget_passes": [0.25, 0.5, 1.0], "forget_batch_size": [16, 32]},
                 search_basis="lr around 0.01; about one pass over the forget set as SalUn's RL runs")
def unlearn(model: nn.Module, data: UnlearnData, cfg: RandomLabelsConfig, run: RunContext) -> nn.Module:
    """Cross-entropy on (forget, random wrong label) and (retain, true label) samples in the same batches."""
    model.to(run.device).train()
    pairs = relabelled_pairs(data.forget, data.retain, data.num_classes, cfg.forget_batch_size, cfg.batch_size, run)
    cosine_steps(cfg.sgd(model), cfg.step_budget(len(data.forget), cfg.forget_batch_size),
                 lambda i: mixed_ce(model, *next(pairs)), run, "unlearn/loss")
    return model.eval()
