"""RFA: residual feature alignment with LoRA — zero residuals on retained data, shifted ones on forget data.

Paper: Qin, Zhu, Wang, Zhou, "Machine Unlearning on Pre-trained Models by Residual Feature Alignment Using
LoRA", arXiv 2411.08443 (IEEE TDSC). No code was published and only the abstract could be
read, so everything past the idea is a reconstruction [R], chosen here and measured in docs/methods/rfa.md.
Needs: forget + retain.

The published idea [P]: attach LoRA so that each adapted layer's output is the frozen pre-trained output
plus a residual from the low-rank branch, ``h = W0 x + (alpha / r) B A x``; train only the LoRA weights so
that the residual is ~0 on the retained set (the model stays aligned with the original, "feature
distillation") and shifted on the forget set.

Our reconstruction [R]:

* **Adapters.** ``peft`` LoRA (imported inside the function), rank ``rank``, ``alpha`` = rank unless set,
  no dropout. peft's conv-LoRA is A = k x k conv (C_in -> r), B = 1 x 1 conv (r -> C_out); B starts at 0,
  so the student starts exactly at the original. peft draws A from the global RNG; we redraw it from
  ``run.generator`` (same Kaiming-uniform law) so that the run is seeded by the run context alone.
* **Which layers** (``layers``): ``all`` = every conv and linear layer (small-cnn: conv1..conv3, fc1,
  fc2; resnet18: every conv incl. shortcuts, and fc); ``late`` = the last stage plus the head, as the
  architecture adapter names them (small-cnn: conv3, fc1, fc2; resnet18: layer4's convs and fc);
  ``head`` = the linear layers only (fc1, fc2 / fc). The penultimate features are the input of the
  adapter's ``head`` layer.
* **Residuals.** Captured by forward hooks on each adapter's ``lora_B`` module (its output times the
  layer's ``alpha / r`` is exactly the residual added to the frozen layer's output), rather than by
  recomputing A and B by hand: the hooks see what the forward pass really added.
* **Retain loss.** ``residual_weight`` x the sum over adapted layers of the mean squared residual on the
  retain batch (the abstract's "zero residuals") + ``output_weight`` x an output-level term on the retain
  batch: KL(teacher || student) (``retain_output="kl"``, distillation: residuals that cancel downstream
  are allowed) or cross-entropy on the retain labels (``"ce"``, which also lets the model drop the
  teacher's mistakes toward a removed class).
* **Forget shift** (``forget_shift``; the paper says only that forget residuals shift): ``hinge`` pushes
  the penultimate features of a forget sample at least a margin away from the teacher's,
  ``max(0, m - mean_d (phi - phi_p)^2)``, with ``m`` = ``margin_scale`` x the teacher's mean squared distance between retain class means (option 1; it
  saturates, so the shift is bounded, but nothing says in which direction: the class may survive it);
  ``other-class`` pulls them onto the teacher features of a retain sample of another class from the paired
  retain batch (option 2); ``runner-up`` does the same with a retain sample of the class the teacher ranks
  second for that forget sample (our refinement of option 2: a retrained model mostly sends a forgotten
  sample to its nearest class, and a short pull there disturbs the other classes' features least);
  ``uniform`` is KL(uniform || student) on the forget outputs (option 3).
* **Optimiser.** AdamW on the LoRA weights only, constant ``lr``; one step per forget batch with a retain
  batch cycled alongside; the budget is the ``common`` rule, ``ceil(forget_passes * |D_f| / batch_size)``
  steps, at least ``min_steps`` (so that small forget sets still get a usable budget). Student and teacher
  stay in eval mode (BatchNorm statistics frozen: in train mode, conv-LoRA would change the statistics the
  merged model deploys with).
* **Merge.** ``merge_and_unload`` folds ``W0 + (alpha / r) B A`` into the base weights, so the returned
  module is the original class with the original state_dict keys; every parameter is trainable again.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, frozen
from forgetflow.methods.cost import FORWARD
from forgetflow.models.adapters import adapter_for
from forgetflow.runtime import RunContext


class RfaConfig(ForgetBudget):
    rank: int = Field(8, ge=1, description="LoRA rank r")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha (scaling alpha / r); None = rank")
    layers: Literal["all", "late", "head"] = Field("all", description="which layers get an adapter")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate on the LoRA weights")
    forget_passes: float = Field(1.0, gt=0, description="passes over the forget set (fractions allowed)")
    batch_size: int = Field(128, ge=1, description="forget samples per step")
    retain_batch_size: int = Field(128, ge=1, description="retain samples per step")
    residual_weight: float = Field(1.0, ge=0, description="weight of the zero-residual penalty on retain data")
    output_weight: float = Field(1.0, ge=0, description="weight of the output-level retain term")
    retain_output: Literal["kl", "ce"] = Field("kl", description="retain output term: KL(teacher || student) or CE on labels")
    forget_shift: Literal["hinge", "other-class", "runner-up", "uniform"] = Field(
        "hinge", description="forget-shift loss (see the module docstring and docs/methods/rfa.md)")
    forget_weight: float = Field(1.0, ge=0, description="lambda: weight of the forget-shift loss")
    margin_scale: float = Field(1.0, gt=0, description="hinge margin in units of the teacher's between-class distance")


def _cost(cfg: RfaConfig, sizes) -> float:
    # student forward + backward and teacher forward on a forget + retain batch; the margin's teacher features
    per_step = (cfg.batch_size + cfg.retain_batch_size) * (1 + FORWARD)
    return cfg.step_budget(sizes.forget, cfg.batch_size) * per_step + min(2048, sizes.retain) * FORWARD


@register_method("rfa", needs=Needs.FORGET | Needs.RETAIN, config=RfaConfig, kind="paper", cost=_cost,
                 paper="Qin et al., arXiv 2411.08443 (IEEE TDSC)",
                 search_space={"rank": [4, 8, 16], "lr": [1e-4, 1e-3], "forget_weight": [0.1, 1.0],
                               "forget_shift": ["hinge", "other-class", "uniform"]},
                 search_basis="the reconstruction defaults of docs/methods/rfa.md, declared before any run: rank {4, 8, 16}, "
                              "lr 1e-4 to 1e-3, lambda {0.1, 1}, and its three forget-shift options")
def unlearn(model: nn.Module, data: UnlearnData, cfg: RfaConfig, run: RunContext) -> nn.Module:
    """Train LoRA residuals to vanish on retain data and shift forget features; merge them into the weights."""
    from peft import LoraConfig, get_peft_model

    model.to(run.device).eval()
    teacher = frozen(model)
    head = adapter_for(model).head
    targets = _target_layers(model, cfg.layers)
    # a full-match regex, so that "conv1" cannot also catch "layer1.0.conv1" by suffix
    pattern = "^(" + "|".join(re.escape(t) for t in targets) + ")$"
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha or cfg.rank, target_modules=pattern, lora_dropout=0.0)
    student = get_peft_model(model, lora).eval()
    residuals = _capture_residuals(student, run)
    feats = {"student": _capture_input(student.get_submodule(f"base_model.model.{head}")),
             "teacher": _capture_input(teacher.get_submodule(head))}

    margin = cfg.margin_scale * _between_class_distance(teacher, feats["teacher"], data, run)
    optimizer = training.adam([p for p in student.parameters() if p.requires_grad], cfg.lr)
    total = cfg.step_budget(len(data.forget), cfg.batch_size)
    forget = training.cycled(data.forget, cfg.batch_size, run)
    retain = training.cycled(data.retain, cfg.retain_batch_size, run)
    for i in range(total):
        fb, rb = next(forget), next(retain)
        n_r = len(rb.y)
        x = torch.cat([rb.x, fb.x])  # one pass for both: eval-mode BN keeps the samples independent
        with torch.no_grad():
            t_logits = teacher(x)
        t_phi = feats["teacher"].pop()
        residuals.clear()
        logits = student(x)
        phi = feats["student"].pop()
        # zero residuals on retain: mean squared residual of each adapted layer, summed over layers
        l_res = sum(r[:n_r].pow(2).mean() for r in residuals)
        if cfg.retain_output == "kl":
            l_out = F.kl_div(F.log_softmax(logits[:n_r], 1), F.log_softmax(t_logits[:n_r], 1), log_target=True,
                             reduction="batchmean")
        else:
            l_out = F.cross_entropy(logits[:n_r], rb.y)
        l_f = _forget_shift(cfg, logits[n_r:], t_logits[n_r:], phi[n_r:], t_phi[n_r:], t_phi[:n_r], rb.y, fb.y,
                            margin, run)
        loss = cfg.residual_weight * l_res + cfg.output_weight * l_out + cfg.forget_weight * l_f
        training.step(optimizer, loss)
        if i % 10 == 0 or i == total - 1:
            run.report("unlearn/residual_retain", float(l_res.detach()), i)
            run.report("unlearn/output_retain", l_out.item(), i)
            run.report("unlearn/forget_shift", l_f.item(), i)
    merged = student.merge_and_unload()
    for hook in residuals.handles + feats["student"].handles + feats["teacher"].handles:
        hook.remove()
    return merged.requires_grad_(True).eval()


def _forget_shift(cfg: RfaConfig, logits: torch.Tensor, t_logits: torch.Tensor, phi: torch.Tensor,
                  t_phi: torch.Tensor, t_phi_retain: torch.Tensor, y_retain: torch.Tensor, y_forget: torch.Tensor,
                  margin: float, run: RunContext) -> torch.Tensor:
    """The forget-shift loss chosen by ``cfg.forget_shift`` (see the module docstring)."""
    if cfg.forget_shift == "hinge":
        dist = (phi - t_phi).pow(2).mean(1)
        return F.relu(margin - dist).mean()
    if cfg.forget_shift == "uniform":
        k = logits.shape[1]
        return (-F.log_softmax(logits, 1).mean(1) - math.log(k)).mean()  # KL(uniform || p)
    # pull each forget sample's features onto the teacher features of a retain sample of another class:
    # a random one of the batch ("other-class"), or one of the teacher's runner-up class for that sample
    # ("runner-up"; a random other class where the batch holds none of it)
    scores = torch.rand(len(y_forget), len(y_retain), generator=run.generator).to(phi.device)
    scores = scores.masked_fill(y_forget[:, None] == y_retain[None, :], -1.0)
    if cfg.forget_shift == "runner-up":
        runner_up = t_logits.scatter(1, y_forget[:, None], float("-inf")).argmax(1)
        scores = scores + 2.0 * (runner_up[:, None] == y_retain[None, :])
    target = t_phi_retain[scores.argmax(1)]
    return (phi - target).pow(2).mean(1).mean()


class _Captured(list):
    """Tensors captured by forward hooks, plus the hook handles to remove at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.handles: list = []


def _capture_residuals(student: nn.Module, run: RunContext) -> _Captured:
    """Hook every adapter's ``lora_B``: its output times the layer's scaling is the residual it adds.

    Also redraws every ``lora_A`` from ``run.generator`` (peft initialised it from the global RNG).
    """
    out = _Captured()
    for module in student.modules():
        lora_b = getattr(module, "lora_B", None)
        if not isinstance(lora_b, nn.ModuleDict) or "default" not in lora_b:
            continue
        scale = float(module.scaling["default"])
        with torch.no_grad():
            weight = module.lora_A["default"].weight
            weight.copy_(nn.init.kaiming_uniform_(torch.empty_like(weight, device="cpu"), a=math.sqrt(5),
                                                  generator=run.generator))
        out.handles.append(lora_b["default"].register_forward_hook(
            lambda _m, _i, output, s=scale: out.append(s * output)))
    return out


def _capture_input(module: nn.Module) -> _Captured:
    """Keep the input of ``module`` (the head: its input is the penultimate features) at each forward."""
    out = _Captured()
    out.handles.append(module.register_forward_pre_hook(lambda _m, args: out.append(args[0])))
    return out


def _between_class_distance(teacher: nn.Module, phi: _Captured, data: UnlearnData, run: RunContext,
                            n: int = 2048) -> float:
    """Mean squared distance (per feature) between the teacher's class-mean features on a retain sample."""
    retain = data.retain
    pos = torch.randperm(len(retain), generator=run.generator)[:n].sort().values
    sample = retain.subset(pos)
    feats, labels = [], []
    with torch.no_grad():
        for b in sample.batches(512, device=run.device):
            teacher(b.x)
            feats.append(phi.pop())
            labels.append(b.y)
    f, y = torch.cat(feats), torch.cat(labels)
    means = torch.stack([f[y == c].mean(0) for c in y.unique()])
    if len(means) < 2:
        return float(f.var(0).mean())
    d = (means[:, None, :] - means[None, :, :]).pow(2).mean(2)
    return float(d.sum() / (len(means) * (len(means) - 1)))


def _target_layers(model: nn.Module, layers: str) -> list[str]:
    """Exact module names to adapt for ``layers`` (see the module docstring; ``late`` is the adapter's answer)."""
    adaptable = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if layers == "all":
        return adaptable
    if layers == "head":
        return linear
    return adapter_for(model).late_layers(model)
