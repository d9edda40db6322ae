"""ARU, Attack-and-Reset for Unlearning: attack the forget set, reset the filters the attack exposes, fine-tune.

Paper: Jung, Cho, Hsu, Hockenmaier, "Attack and Reset for Unlearning: Exploiting Adversarial Noise toward
Machine Unlearning through Parameter Re-initialization", arXiv 2401.08998 (v1, 2024). No public code.
Not to be confused with torchunlearn's ``ARU`` class (a different, retain-free method by other authors).
Needs: forget (attack and mask) + retain (fine-tuning after the reset).

What the paper's readable text fixes [P]: adversarial noise on the forget set produces a parameter mask;
masked parameters (convolutional filters [S]) are re-initialised; the network is then fine-tuned on the
retain data [S]. Everything else is a RECONSTRUCTION [R] (docs/methods/aru.md measures each choice); our choices and why:

1. Attack. PGD-L-inf on each forget sample against the *original* model in eval mode: ``steps`` signed
   gradient steps of size ``step_size`` inside an ``epsilon`` ball, random start drawn from
   ``run.generator``, pixels clamped to [0, 1]. ``attack="maximise"`` (default) ascends the cross-entropy
   (error-maximising PGD); ``"minimise"`` descends it (sample-wise error-minimising noise, the
   "unlearnable examples" reading of the abstract). Both are measured in docs/methods/aru.md.
2. Score. ``score="saliency"`` (default): for each eligible layer and output filter k, the mean over forget
   samples of the *per-sample* L1 norm of dCE(f(x+delta), y)/dW[k], divided by the filter's number of
   weights (per-sample gradients via ``torch.func`` so that opposite-signed gradients of different samples
   do not cancel). ``contrast_retain > 0`` divides it by the same quantity on that many clean retain
   samples (drawn from ``run.generator``), so filters busy on every input are not taken for forget-specific
   ones. Attack and score use at most ``max_attack_samples`` forget samples (a seeded subset; PGD costs
   ``steps`` forward-backward passes per sample, so on a 6,000-sample forget set it would cost as much as
   a whole epoch). ``score="activation-shift"``: the mean |a_k(x+delta) - a_k(x)| of the filter's batch-normalised
   output (the conv output where no BN follows). Scores are z-normalised per layer so that layers with
   larger gradients do not take the whole global budget. ``score="random"`` is the control ablation: the
   same number of filters, chosen uniformly at random, which tells how much the attack's signal adds.
3. Mask. The top ``mask_ratio`` fraction of eligible filters: ``ceil(rho * #filters)`` over all eligible
   layers (``mask_scope="global"``) or ``ceil(rho * #filters of the layer)`` per layer. Eligible: every
   ``Conv2d`` (the paper's granularity), plus hidden ``Linear`` units when ``include_linear``; the first
   conv and the final classifier can be excluded (``exclude_first_conv``, ``exclude_final_fc``). The
   first conv is excluded by default: its 3x3 edge detectors are generic and cheap to disturb.
4. Reset. A masked filter's weights (and bias, if any) are redrawn from the layer's own default init,
   with ``run.generator``: with ``init="auto"`` the architecture adapter's ``reset_init``: PyTorch's default
   (uniform, bound 1/sqrt(fan_in)) for the small CNN, torchvision's Kaiming-normal (fan_out, ReLU) for
   ``resnet18``. ``bn="reset"`` (default) also resets
   the matching BatchNorm channel (gamma 1, beta 0, running mean 0, running var 1) so the channel carries
   no trace of the old filter's statistics; ``bn="keep"`` leaves BN untouched and lets fine-tuning
   re-estimate it. The matching BN is the BatchNorm module registered right after the conv with as many
   channels (conv1->bn1 in the small CNN, convN->bnN and downsample.0->downsample.1 in ResNet).
5. Fine-tune on the retain set: SGD with momentum, cosine decay (the loop FT uses, ``common.fine_tune``),
   a fixed budget (no checkpoint selection: the method sees no validation data). Budget (the ``common``
   rule): ``ceil(forget_passes * |D_f| / batch_size)`` retain batches, at least ``min_steps``, i.e.
   ``forget_passes`` retain samples per forget sample; ``forget_passes = 0`` skips the fine-tuning. The
   attack and score cost ``steps`` passes over at most ``max_attack_samples`` forget samples. So the whole
   method follows the forget set; the reset itself is free. The floor ``min_steps`` is what a batch of a
   few subjects gets: the repair the reset needs does not shrink with the forget set.

Defaults were picked on the oracle-free validation objective of ``tuning.py``. The measurements are in
docs/methods/aru.md (Fashion-MNIST; subject-level over 3 seeds, random 10 %):
- rho trades forgetting for utility;
- the reset is what moves the forget set (fine-tuning alone does not);
- the attack sign, the scoring rule and the BN option changed nothing beyond seed noise;
- a random mask of the same size did as well as the attack-guided one on that well-generalising model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forgetflow.data.samples import SampleSet, to_float
from forgetflow.methods.base import Needs, UnlearnData, register_method
from forgetflow.methods.common import ForgetBudget, SgdSettings, fine_tune
from forgetflow.methods.cost import FORWARD
from forgetflow.models.adapters import adapter_for
from forgetflow.runtime import RunContext


class AruConfig(SgdSettings, ForgetBudget):
    attack: Literal["maximise", "minimise"] = Field(
        "maximise", description="PGD sign: maximise the forget loss (adversarial) or minimise it (unlearnable noise)")
    epsilon: float = Field(8 / 255, ge=0, le=1, description="L-inf radius of the noise, pixels in [0, 1]")
    step_size: float = Field(2 / 255, gt=0, description="PGD step size")
    steps: int = Field(10, ge=0, description="PGD steps (0 = the random start only)")
    score: Literal["saliency", "activation-shift", "random"] = Field(
        "saliency", description="filter scoring rule; random = the control ablation (no attack signal)")
    contrast_retain: int = Field(0, ge=0, description="retain samples for the saliency contrast; 0 = no contrast")
    mask_ratio: float = Field(0.1, gt=0, le=1, description="rho: fraction of eligible filters to reset")
    mask_scope: Literal["global", "per-layer"] = Field("global", description="top-rho over all layers or per layer")
    include_linear: bool = Field(False, description="also score and reset hidden Linear units")
    exclude_first_conv: bool = Field(True, description="never reset the first convolution")
    exclude_final_fc: bool = Field(True, description="never reset the classifier (with include_linear)")
    bn: Literal["reset", "keep"] = Field("reset", description="reset the matching BN channel or keep it")
    init: Literal["auto", "uniform", "kaiming-normal"] = Field(
        "auto", description="re-init scheme; auto = the architecture's own init")
    max_attack_samples: int = Field(
        2048, ge=0, description="attack and score at most this many forget samples (drawn from run.generator); 0 = all")
    attack_batch_size: int = Field(256, ge=1, description="batch size of the attack and the activation-shift score")
    saliency_batch_size: int = Field(
        64, ge=1, description="samples per per-sample-gradient chunk (memory: chunk x #conv weights floats)")
    lr: float = Field(0.01, gt=0, description="fine-tuning SGD learning rate")
    forget_passes: float = Field(9.0, ge=0, description="fine-tuning: retain samples per forget sample (0 = none)")
    min_steps: int = Field(40, ge=1, description="floor on the fine-tuning steps (the reset needs repair at any size)")


def _cost(cfg: AruConfig, sizes) -> float:
    attacked = min(sizes.forget, cfg.max_attack_samples) if cfg.max_attack_samples else sizes.forget
    attack = attacked * (cfg.steps + FORWARD)  # PGD steps (forward + backward to the input), then a check
    score = attacked * 2 + (cfg.contrast_retain * 2 if cfg.score == "saliency" else 0)  # per-sample gradients
    tune = cfg.step_budget(sizes.forget, cfg.batch_size) * cfg.batch_size
    return attack + score + tune


@register_method("aru", needs=Needs.FORGET | Needs.RETAIN, config=AruConfig,
                 paper="Jung et al., arXiv 2401.08998 (2024)", kind="paper", cost=_cost,
                 search_space={"mask_ratio": [0.05, 0.1, 0.2, 0.3], "min_steps": [40, 120], "lr": [0.01, 0.03]},
                 search_basis="mask ratio: the sweep of docs/methods/aru.md {0.05, 0.1, 0.2, 0.3}; lr: the MUFAC fine-tuning "
                              "range 0.01 and up; the repair floor: a few dozen steps, and three times that")
def unlearn(model: nn.Module, data: UnlearnData, cfg: AruConfig, run: RunContext) -> nn.Module:
    """PGD on the forget set, reset the top-rho most forget-salient filters, fine-tune on the retain set."""
    model.to(run.device).eval()
    layers = eligible_layers(model, cfg)
    forget = data.forget
    if cfg.max_attack_samples and len(forget) > cfg.max_attack_samples:
        # the mask is a per-filter average: a few thousand samples estimate it, and PGD costs steps x |D_f|
        forget = forget.subset(torch.randperm(len(forget), generator=run.generator)[: cfg.max_attack_samples])
    delta = attack(model, forget, cfg, run)
    retain = data.retain if cfg.contrast_retain > 0 and cfg.score == "saliency" else None
    scores = score_filters(model, layers, forget, delta, cfg, run, retain)
    mask = select_filters(scores, cfg)
    reset_filters(model, layers, mask, cfg, run)
    run.report("aru/reset_filters", sum(len(v) for v in mask.values()))
    steps = cfg.step_budget(len(data.forget), cfg.batch_size)
    if steps > 0:
        fine_tune(model, data.retain, cfg, steps, run)
    return model.eval()


# ---- stage 1: attack --------------------------------------------------------------------------------
def attack(model: nn.Module, samples: SampleSet, cfg: AruConfig, run: RunContext) -> torch.Tensor:
    """PGD-L-inf noise ``delta`` (CPU, same shape as the images) with ``x + delta`` in [0, 1]."""
    model.eval()  # BN on running statistics: the noise targets the deployed model
    sign = 1.0 if cfg.attack == "maximise" else -1.0
    chunks, flipped, total = [], 0, 0
    for batch in samples.batches(cfg.attack_batch_size, device=run.device):
        x = batch.x
        start = (torch.rand(x.shape, generator=run.generator) * 2 - 1) * cfg.epsilon
        delta = ((x + start.to(x.device)).clamp(0, 1) - x).detach()
        for _ in range(cfg.steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), batch.y)
            (g,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + sign * cfg.step_size * g.sign()
            # project onto the epsilon ball, then back into the valid pixel range
            delta = ((x + delta.clamp(-cfg.epsilon, cfg.epsilon)).clamp(0, 1) - x).detach()
        with torch.no_grad():
            flipped += int((model(x + delta).argmax(1) != batch.y).sum())
        total += len(batch.y)
        chunks.append(delta.cpu())
    run.report("aru/attack_error_rate", 100.0 * flipped / max(1, total))
    return torch.cat(chunks) if chunks else torch.empty(0)


# ---- stage 2: score ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    """An eligible layer: its name, module and the BatchNorm that normalises its output (if any)."""

    name: str
    module: nn.Module
    bn: nn.Module | None

    @property
    def filters(self) -> int:
        return int(self.module.weight.shape[0])


def eligible_layers(model: nn.Module, cfg: AruConfig) -> list[Layer]:
    """Conv layers (and hidden Linear layers with ``include_linear``) in registration order, after exclusions."""
    modules = list(model.named_modules())
    convs = [n for n, m in modules if isinstance(m, nn.Conv2d)] or [None]
    linears = [n for n, m in modules if isinstance(m, nn.Linear)] or [None]
    out = []
    for i, (name, module) in enumerate(modules):
        if isinstance(module, nn.Conv2d):
            if cfg.exclude_first_conv and name == convs[0]:
                continue
        elif isinstance(module, nn.Linear):
            if not cfg.include_linear or (cfg.exclude_final_fc and name == linears[-1]):
                continue
        else:
            continue
        nxt = modules[i + 1][1] if i + 1 < len(modules) else None
        is_bn = isinstance(nxt, nn.modules.batchnorm._BatchNorm) and nxt.num_features == module.weight.shape[0]
        bn = nxt if is_bn else None
        out.append(Layer(name, module, bn))
    return out


def score_filters(model: nn.Module, layers: list[Layer], forget: SampleSet, delta: torch.Tensor, cfg: AruConfig,
                  run: RunContext, retain: SampleSet | None = None) -> dict[str, torch.Tensor]:
    """Per-layer z-normalised forget-bias score of every eligible filter (``retain``: the contrast's source)."""
    model.eval()
    adversarial = forget.with_images((to_float(forget.images) + delta).clamp(0, 1))
    if cfg.score == "random":
        raw = {layer.name: torch.rand(layer.filters, generator=run.generator) for layer in layers}
    elif cfg.score == "activation-shift":
        raw = _activation_shift(model, layers, forget, adversarial, cfg, run)
    else:
        raw = _saliency(model, layers, adversarial, cfg, run)
        if cfg.contrast_retain > 0 and retain is not None:
            pick = torch.randperm(len(retain), generator=run.generator)[: cfg.contrast_retain]
            base = _saliency(model, layers, retain.subset(pick), cfg, run)
            # a relative floor keeps filters that are silent on retain data from dividing by ~0
            raw = {k: v / (base[k] + 1e-3 * base[k].mean() + 1e-12) for k, v in raw.items()}
    return {k: (v - v.mean()) / (v.std() + 1e-12) if v.numel() > 1 else v * 0 for k, v in raw.items()}


def _saliency(model: nn.Module, layers: list[Layer], samples: SampleSet, cfg: AruConfig,
              run: RunContext) -> dict[str, torch.Tensor]:
    """Mean over samples of the per-sample |dCE/dW[k]|_1 / numel(W[k]) for every filter k of every layer."""
    from torch.func import functional_call, grad, vmap

    names = {f"{layer.name}.weight": layer.name for layer in layers}
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in names}
    fixed.update({n: b for n, b in model.named_buffers()})

    def loss(p, x, y):
        return F.cross_entropy(functional_call(model, {**p, **fixed}, (x[None],)), y[None])

    per_sample_grad = vmap(grad(loss), in_dims=(None, 0, 0))
    sums = {layer.name: torch.zeros(layer.filters, device=run.device) for layer in layers}
    for batch in samples.batches(cfg.saliency_batch_size, device=run.device):
        grads = per_sample_grad(params, batch.x, batch.y)
        for pname, g in grads.items():
            sums[names[pname]] += g.abs().flatten(2).mean(2).sum(0)  # mean |g| over the filter = L1 / numel
    return {k: (v / max(1, len(samples))).cpu() for k, v in sums.items()}


def _activation_shift(model: nn.Module, layers: list[Layer], clean: SampleSet, adversarial: SampleSet,
                      cfg: AruConfig, run: RunContext) -> dict[str, torch.Tensor]:
    """Mean over samples and positions of |a_k(x + delta) - a_k(x)| at each filter's (normalised) output."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [(layer.bn or layer.module).register_forward_hook(
        lambda _m, _i, out, name=layer.name: captured.__setitem__(name, out.detach().clone())) for layer in layers]
    sums = {layer.name: torch.zeros(layer.filters, device=run.device) for layer in layers}
    try:
        with torch.no_grad():
            pairs = zip(clean.batches(cfg.attack_batch_size, device=run.device),
                        adversarial.batches(cfg.attack_batch_size, device=run.device))
            for a, b in pairs:
                model(a.x)
                before = dict(captured)
                model(b.x)
                for name, out in captured.items():
                    diff = (out - before[name]).abs()
                    sums[name] += diff.flatten(2).mean(2).sum(0) if diff.dim() > 2 else diff.sum(0)
    finally:
        for h in hooks:
            h.remove()
    return {k: (v / max(1, len(clean))).cpu() for k, v in sums.items()}


# ---- stage 3: mask ----------------------------------------------------------------------------------
def mask_size(ratio: float, count: int) -> int:
    """ceil(ratio * count), immune to float noise such as 0.1 * 110 = 11.000000000000002."""
    return min(count, math.ceil(round(ratio * count, 9)))


def select_filters(scores: dict[str, torch.Tensor], cfg: AruConfig) -> dict[str, list[int]]:
    """Indices of the filters to reset, per layer (top ``mask_ratio`` globally or per layer)."""
    if cfg.mask_scope == "per-layer":
        return {name: sorted(torch.topk(s, mask_size(cfg.mask_ratio, len(s))).indices.tolist())
                for name, s in scores.items()}
    names = list(scores)
    flat = torch.cat([scores[n] for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    offset = torch.cat([torch.arange(len(scores[n])) for n in names])
    top = torch.topk(flat, mask_size(cfg.mask_ratio, len(flat))).indices
    out: dict[str, list[int]] = {n: [] for n in names}
    for j in top.tolist():
        out[names[int(owner[j])]].append(int(offset[j]))
    return {n: sorted(v) for n, v in out.items()}


# ---- stage 4: reset ---------------------------------------------------------------------------------
@torch.no_grad()
def reset_filters(model: nn.Module, layers: list[Layer], mask: dict[str, list[int]], cfg: AruConfig,
                  run: RunContext) -> None:
    """Redraw the masked filters from the layer's default init (and reset their BN channels with ``bn="reset"``)."""
    scheme = adapter_for(model).reset_init if cfg.init == "auto" else cfg.init
    for layer in layers:
        idx = mask.get(layer.name, [])
        if not idx:
            continue
        w = layer.module.weight
        rows = torch.tensor(idx, device=w.device)
        shape = (len(idx), *w.shape[1:])
        fan_in = w[0].numel()
        if scheme == "kaiming-normal" and isinstance(layer.module, nn.Conv2d):
            fan_out = w.shape[0] * w[0, 0].numel()
            fresh = torch.randn(shape, generator=run.generator) * math.sqrt(2.0 / fan_out)
        else:  # PyTorch's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            fresh = (torch.rand(shape, generator=run.generator) * 2 - 1) / math.sqrt(fan_in)
        w[rows] = fresh.to(w.device, w.dtype)
        if layer.module.bias is not None:
            b = (torch.rand(len(idx), generator=run.generator) * 2 - 1) / math.sqrt(fan_in)
            layer.module.bias[rows] = b.to(w.device, w.dtype)
        if cfg.bn == "reset" and layer.bn is not None:
            bn = layer.bn
            if bn.affine:
                bn.weight[rows] = 1.0
                bn.bias[rows] = 0.0
            if bn.track_running_stats:
                bn.running_mean[rows] = 0.0
                bn.running_var[rows] = 1.0
