"""REM, Redirection for Erasing Memory: strip discovered corruption out of the model, redirect the rest into
extra capacity, discard that capacity.

Paper: Schoepf, Mozer, Mitchell, Brintrup, Kaissis, Kairouz, Triantafillou, "Redirection for Erasing Memory
(REM)", arXiv 2505.17730 (ICLR 2026); algorithm as in the official code (docs/methods/rem.md).
Needs: the discovered corrupted set D_f (stored, corrupted labels / triggered images) and the whole training
set D_train with stable sample uids (it holds the undiscovered corruption). D_r = D_train minus D_f (by uid)
is used only for model selection; the repair pass runs over all of D_train.

Loop, ``rounds`` times (as the official code does); θ_o1 = the original parameters, θ_o2 = the added capacity:
1. flush: while Acc_θo1(D_f) > γ against the stored labels (at most ``max_flush_epochs``), one epoch over
   D_f minimising mean[-npo(CE_θo1, CE_ref)];
2. repair + redirect: a share of an epoch over D_train, each batch minimising
   mean_i[npo(CE_θo1+mask_i, CE_ref) + 1[i in D_f] * -npo(CE_θo1, CE_ref)], with
   npo(c, r) = (2/β) log σ(β (c - r)), per-sample masks over θ_o2 and one shared mask for all of D_f;
3. selection: keep θ_o1 with the best Acc_θo1(D_r) * (1 - max(Acc_θo1(D_f), γ)).
The best θ_o1 is returned in the original architecture (θ_o2 discarded).

Our choices ([R] where the code has no equivalent; measured in docs/methods/rem.md):
* Widening: ``rem_expansion`` (widened layers with zero read-out weights, hooks as gates; small-cnn and
  resnet18). ``expansion`` = new units per original unit; 1.0 mirrors the paper's p_fixed = 0.5.
* The reference model is the frozen widened copy in full-capacity-with-mask mode, which before any step is
  *exactly* the original function (tested), and we train without augmentation, so CE_ref is computed once
  per sample from the original model in eval mode (as the code evaluates its reference) and looked up.
* Budget: the paper's 980 SGD steps of batch 512 (~10 epochs of CIFAR-10, a quarter of its pre-training) is
  scaled to ``epochs`` passes of batch 128 over D_train; ``rounds_per_epoch`` sets how often the loop flushes
  and selects. Constant learning rate, SGD with momentum and weight decay, as in the code.
* BatchNorm: ``norm="train"`` uses batch statistics everywhere as the code does (the drop-mode pass for
  continued removal then covers the whole batch, so its statistics are a batch's); ``norm="frozen"`` keeps
  every BN in eval mode (running statistics), and the drop-mode pass covers only the discovered samples.
  The new BN channels get running statistics from one full-capacity batch before unlearning.
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from forgetflow import training
from forgetflow.data.samples import SampleSet, to_float
from forgetflow.methods.base import MethodConfig, Needs, UnlearnData, register_method
from forgetflow.methods.rem_expansion import WideModel, mask_bank
from forgetflow.runtime import RunContext


class RemConfig(MethodConfig):
    lr: float = Field(0.005, gt=0, description="SGD learning rate (constant), the paper's CIFAR-10 value")
    epochs: float = Field(2.0, gt=0, description="repair passes over D_train (flush steps are not counted)")
    rounds_per_epoch: int = Field(2, ge=1, description="loop iterations (flush, repair share, selection) per epoch")
    batch_size: int = Field(128, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    gamma: float = Field(0.2, ge=0, le=1, description="removal threshold on Acc_θo1(D_f), a fraction")
    beta: float = Field(1.0, gt=0, description="NPO temperature")
    p_mem: float = Field(0.2, gt=0, le=1, description="keep probability of each new unit in a sample's mask")
    expansion: float = Field(1.0, gt=0, description="new units per original unit at each widened layer")
    max_flush_epochs: int = Field(100, ge=0, description="cap on flush epochs per round")
    continued_removal: bool = Field(True, description="Step 3.2: keep pushing θ_o1 off D_f during repair")
    new_lr_scale: float = Field(1.0, gt=0, description="learning-rate multiplier of θ_o2 (the added capacity)")
    recalibrate: int = Field(8192, ge=0, description="D_train samples that re-estimate θ_o1's BN statistics in "
                                                       "drop mode before each flush and selection (0 = off)")


@register_method("rem", needs=Needs.FORGET | Needs.TRAIN, config=RemConfig,
                 paper="Schoepf et al., REM, arXiv 2505.17730 (ICLR 2026)", kind="paper",
                 selects_checkpoint_on="known data: Acc_θo1(D_r)·(1−max(Acc_θo1(D_f),γ))",
                 search_space={"lr": [0.002, 0.005, 0.01], "epochs": [0.5, 1.0, 2.0], "p_mem": [0.2, 0.5, 1.0]})
def unlearn(model: nn.Module, data: UnlearnData, cfg: RemConfig, run: RunContext) -> nn.Module:
    """Flush the discovered corruption out of θ_o1, repair over D_train through per-sample extra capacity, discard it."""
    device = run.device
    model.to(device).eval()
    train, forget = data.train, data.forget
    found = torch.isin(train.uids, forget.uids)
    retain = train.subset(~found)  # D_r: model selection only
    ref_train = training.outputs(model, train, device=device).loss.to(device)
    ref_forget = training.outputs(model, forget, device=device).loss.to(device)

    wide = WideModel(model, cfg.expansion, run.generator).to(device)
    wide.scale_new_gradients(cfg.new_lr_scale)
    bank = mask_bank(train.uids, found, wide.total_extra, cfg.p_mem)
    first = torch.randperm(len(train), generator=run.generator)[: cfg.batch_size]
    wide.calibrate_new_norms(to_float(train.images[first]).to(device))
    optimizer = training.sgd(wide, cfg.lr, cfg.momentum, cfg.weight_decay)

    total = max(1, math.ceil(cfg.epochs * len(train) / cfg.batch_size))
    rounds = min(total, max(1, round(cfg.epochs * cfg.rounds_per_epoch)))
    order = _positions(len(train), cfg.batch_size, run)
    calibration = _calibration_batches(train, cfg.recalibrate, cfg.batch_size * 4, run)
    # checkpoint 0 is the unmodified model: if D_f is not fitted to begin with, nothing needs removing
    best_proxy = _proxy(_base_accuracy(wide, retain, device), _base_accuracy(wide, forget, device), cfg.gamma)
    best_state = {k: v.detach().clone() for k, v in wide.base_state().items()}
    run.report("unlearn/proxy", best_proxy, 0)
    for r in range(rounds):
        flushes = _flush(wide, forget, ref_forget, optimizer, cfg, run, calibration)
        wide.train()
        for _ in range(total * (r + 1) // rounds - total * r // rounds):
            idx = next(order)
            loss = _repair_loss(wide, train, idx, found[idx].to(device), ref_train[idx.to(device)], bank[idx], cfg, device)
            training.step(optimizer, loss)
        acc_f = _checked_accuracy(wide, forget, calibration, device)
        acc_r = _base_accuracy(wide, retain, device)
        proxy = _proxy(acc_r, acc_f, cfg.gamma)
        for key, value in (("flush_epochs", flushes), ("retain_acc_base", acc_r), ("forget_acc_base", acc_f),
                           ("proxy", proxy), ("loss", loss.item())):
            run.report(f"unlearn/{key}", value, r + 1)
        if proxy > best_proxy:
            best_proxy = proxy
            best_state = {k: v.detach().clone() for k, v in wide.base_state().items()}
    model.load_state_dict(best_state)
    return model.eval()


def npo(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al., arXiv 2404.05868) with per-sample CE, as REM uses it: (2/β) log σ(β (CE - CE_ref));
    minimise to fit, maximise to forget."""
    return 2.0 / beta * F.logsigmoid(beta * (ce - ce_ref))


def _proxy(retain_acc: float, forget_acc: float, gamma: float) -> float:
    """REM's selection score from known data: Acc_θo1(D_r) · (1 − max(Acc_θo1(D_f), γ)), accuracies in percent."""
    return retain_acc / 100.0 * (1.0 - max(forget_acc / 100.0, gamma))


def _flush(wide: WideModel, forget: SampleSet, ref: torch.Tensor, optimizer, cfg: RemConfig, run: RunContext,
           calibration: list[torch.Tensor]) -> int:
    """Step 2: NPO unlearning of D_f on θ_o1 alone until Acc_θo1(D_f) <= γ; returns the epochs it took.

    Flush batches hold only D_f, so in train mode they drag θ_o1's BN running statistics towards D_f's;
    the statistics are re-estimated on D_train before every check, so γ is tested on the deployable θ_o1.
    """
    epochs = 0
    while epochs < cfg.max_flush_epochs and _checked_accuracy(wide, forget, calibration, run.device) > 100.0 * cfg.gamma:
        wide.train()
        for idx in torch.randperm(len(forget), generator=run.generator).split(cfg.batch_size):
            x, y = to_float(forget.images[idx]).to(run.device), forget.labels[idx].to(run.device)
            ce = F.cross_entropy(wide.base(x), y, reduction="none")
            training.step(optimizer, -npo(ce, ref[idx.to(run.device)], cfg.beta).mean())
        epochs += 1
    return epochs


def _repair_loss(wide: WideModel, train: SampleSet, idx: torch.Tensor, found: torch.Tensor, ref: torch.Tensor,
                 masks: torch.Tensor, cfg: RemConfig, device: torch.device) -> torch.Tensor:
    """Step 3: redirect every sample through θ_o1 + its mask; keep removing the discovered ones from θ_o1."""
    x, y = to_float(train.images[idx]).to(device), train.labels[idx].to(device)
    gates = wide.split(masks.to(device, torch.float32))
    terms = npo(F.cross_entropy(wide(x, gates), y, reduction="none"), ref, cfg.beta).sum()
    if cfg.continued_removal and bool(found.any()):
        # the drop-mode pass covers the whole batch, as in the code, so its BN statistics are a batch's
        ce = F.cross_entropy(wide.base(x), y, reduction="none")[found]
        terms = terms - npo(ce, ref[found], cfg.beta).sum()
    return terms / len(idx)


def _calibration_batches(train: SampleSet, n: int, batch_size: int, run: RunContext) -> list[torch.Tensor]:
    """A fixed random subset of D_train's images (no labels), in batches, for BN re-estimation."""
    if n <= 0:
        return []
    pick = torch.randperm(len(train), generator=run.generator)[:n]
    return [to_float(train.images[idx]).to(run.device) for idx in pick.split(batch_size)]


def _positions(n: int, batch_size: int, run: RunContext):
    """Endless shuffled batches of positions (a new permutation per pass, drawn from the run's generator)."""
    while True:
        yield from torch.randperm(n, generator=run.generator).split(batch_size)


def _checked_accuracy(wide: WideModel, samples: SampleSet, calibration: list[torch.Tensor], device: torch.device) -> float:
    """``_base_accuracy`` after re-estimating θ_o1's BN statistics (when a calibration set is given)."""
    if calibration:
        wide.recalibrate_base(calibration)
    return _base_accuracy(wide, samples, device)


@torch.no_grad()
def _base_accuracy(wide: WideModel, samples: SampleSet, device: torch.device, batch_size: int = 1024) -> float:
    """Accuracy (percent) of θ_o1 alone in eval mode against the stored labels."""
    was = wide.training
    wide.eval()
    correct = 0
    for batch in samples.batches(batch_size, device=device):
        correct += int((wide.base(batch.x).argmax(1) == batch.y).sum())
    wide.train(was)
    return 100.0 * correct / max(1, len(samples))
