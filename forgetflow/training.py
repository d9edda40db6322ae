"""Pieces every training and unlearning loop shares: optimizers, losses, steps, pairing, evaluation.

Methods compose these; nothing here is a trainer class. A computation that a metric depends on (the
per-sample loss, the softmax outputs) lives here once so that no two places compute it differently.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.samples import Batch, SampleSet
from forgetflow.runtime import RunContext


# ---- optimisation ---------------------------------------------------------------------------------
def sgd(params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.SGD:
    """SGD over ``params`` (a module or an iterable of tensors)."""
    if isinstance(params, nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """AdamW over ``params`` (a module or an iterable of tensors)."""
    if isinstance(params, nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Zero grads, backpropagate ``loss``, take one optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def ce_loss(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``model`` on a batch."""
    return F.cross_entropy(model(batch.x), batch.y, reduction=reduction)


def cosine_lr(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay from the optimizer's lr to 0 over ``total_steps``."""
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


# ---- batching --------------------------------------------------------------------------------------
def cycled(samples: SampleSet, batch_size: int, run: RunContext) -> Iterator[Batch]:
    """Endless shuffled batches over ``samples`` (a new permutation each pass)."""
    while True:
        yield from samples.batches(batch_size, shuffle=True, generator=run.generator, device=run.device)


def paired(
    first: SampleSet, second: SampleSet, batch_size: int, run: RunContext, second_batch_size: int | None = None
) -> Iterator[tuple[Batch, Batch]]:
    """One pass over ``first`` with a batch of ``second`` cycled alongside each of its batches."""
    other = cycled(second, second_batch_size or batch_size, run)
    for batch in first.batches(batch_size, shuffle=True, generator=run.generator, device=run.device):
        yield batch, next(other)


# ---- evaluation ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outputs:
    """Per-sample outputs of a model on a set: logits, labels, loss."""

    logits: torch.Tensor
    labels: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return F.softmax(self.logits, dim=1)

    @property
    def loss(self) -> torch.Tensor:
        """Per-sample cross-entropy."""
        return F.cross_entropy(self.logits, self.labels, reduction="none")

    @property
    def correct(self) -> torch.Tensor:
        return self.logits.argmax(1) == self.labels

    @property
    def accuracy(self) -> float:
        """Accuracy in percent (0 for an empty set)."""
        return 100.0 * self.correct.float().mean().item() if len(self.labels) else 0.0


@torch.no_grad()
def outputs(model: nn.Module, samples: SampleSet, batch_size: int = 1024, device: torch.device | str = "cpu") -> Outputs:
    """Logits of ``model`` (in eval mode) on every sample, in order, on the CPU."""
    was_training = model.training
    model.eval()
    chunks = [model(b.x).float().cpu() for b in samples.batches(batch_size, device=device)]
    model.train(was_training)
    logits = torch.cat(chunks) if chunks else torch.empty(0, 0)
    return Outputs(logits=logits, labels=samples.labels.clone())


def accuracy(model: nn.Module, samples: SampleSet, batch_size: int = 1024, device: torch.device | str = "cpu") -> float:
    """Accuracy of ``model`` on ``samples``, in percent."""
    return outputs(model, samples, batch_size, device).accuracy


# ---- the training recipe (original model and retrained oracle) -------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A training recipe; the retrained oracle must use the same one as the original."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    schedule: str = "cosine"


def train_model(model: nn.Module, samples: SampleSet, recipe: Recipe, run: RunContext, desc: str = "train") -> nn.Module:
    """Train ``model`` on ``samples`` with ``recipe``; prints a progress bar to stderr when asked."""
    model.to(run.device).train()
    optimizer = sgd(model, recipe.lr, recipe.momentum, recipe.weight_decay)
    steps_per_epoch = math.ceil(len(samples) / recipe.batch_size)
    scheduler = cosine_lr(optimizer, recipe.epochs * steps_per_epoch) if recipe.schedule == "cosine" else None
    bar = _progress(recipe.epochs * steps_per_epoch, desc) if run.progress else None
    for epoch in range(recipe.epochs):
        total, seen = 0.0, 0
        for batch in samples.batches(recipe.batch_size, shuffle=True, generator=run.generator, device=run.device):
            loss = ce_loss(model, batch)
            step(optimizer, loss)
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(batch.y)
            seen += len(batch.y)
            if bar is not None:
                bar.update(1)
        run.report(f"{desc}/loss", total / max(1, seen), epoch)
        if bar is not None:
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / max(1, seen):.4f}")
    if bar is not None:
        bar.close()
    model.eval()
    return model


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, mininterval=0.5)


class Stopwatch:
    """Wall-clock timer used for every reported time (unlearn, oracle, total)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


# ---- teachers and fresh models (SCRUB, Bad Teacher, Retrain) ---------------------------------------
def distill_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) per batch sample, averaged ("batchmean"), with the student softened by ``temperature``.

    ``teacher_probs`` are already-softened teacher probabilities (``softmax(teacher_logits / T)``), so a
    caller can mix two teachers per sample (Bad Teacher). No ``T**2`` factor: callers that follow Hinton's
    convention (SCRUB) multiply by it themselves.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher_probs, reduction="batchmean")


def fresh_model(like: nn.Module, seed: int) -> nn.Module:
    """A newly initialised model of ``like``'s architecture, on its device, initialised from ``seed``.

    Layer constructors draw from torch's global generator, so the draw happens inside ``fork_rng``: the
    global state is restored afterwards and nothing outside sees a reseed. With the seed an original or
    oracle was trained with, the initial weights are exactly that model's initial weights.
    """
    from forgetflow.models import arch_of, build_model

    arch, config = arch_of(like)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, **config)
    return model.to(next(like.parameters()).device)


# ---- random relabelling (Random Labels, SalUn) ------------------------------------------------------
def random_wrong_labels(labels: torch.Tensor, num_classes: int, run: RunContext) -> torch.Tensor:
    """A uniformly drawn label different from each true label, ``(y + U{1..C-1}) mod C``, from ``run.generator``."""
    shift = torch.randint(1, num_classes, labels.shape, generator=run.generator)
    return (labels.cpu() + shift) % num_classes
