"""REM's extra capacity θ_o2 for an already trained model: widen, gate per sample, slice back.

Our originals have no reserved channels (the paper trains with them; docs/methods/rem.md), so REM widens them.
We widen each planned activation in place (rather than retraining with reserved channels): its producer (a conv or linear
layer, and the BatchNorm after it) gets ``ceil(ratio * C)`` new output units appended after the ``C``
original ones, initialised like a fresh layer (PyTorch's default uniform bound 1/sqrt(fan_in), BN weight
1, bias 0); its consumer gets the matching input columns, **zero** in the original output rows and random
in the new rows. Every tensor is therefore the original one padded at the end of each dimension, so:

* the widened model computes the original function exactly, whatever the gates on the new units (the
  original outputs never read them), and
* θ_o1 (the original parameters) is the leading slice of every tensor: ``deploy`` copies that slice into a
  model of the original class and state_dict keys, which *is* discarding θ_o2.

Why this option rather than parallel zero-output convs (torchunlearn): it is the structure of the paper's
ETD networks (one conv whose channels split into a generalisation and a memorisation part, with weights
from memorisation to generalisation channels), so the redirected data can build its own multi-layer path
through the new channels, and it needs no change to the model's ``forward``: the gates are forward hooks
on the BN (or linear) output, ``out * [1..1, g_1..g_e]``, which for binary gates commutes with the ReLU
and max-pooling that follow.

Which activations are widened is the architecture adapter's answer (``forgetflow/models/adapters.py``,
registered next to each builder): for ``small-cnn`` conv1..conv3 and fc1 (conv3's new channels reach fc1
through the 2x2 pooling and flatten, i.e. 4 input columns per channel, appended after the original ones), for
``resnet18`` the inner activation of every BasicBlock (the residual stream and the head are untouched).

Per-sample masks (ETD): each new unit is kept with probability ``p_mem``, drawn from a generator seeded by
the sample's stable uid (``uid + 1``), one draw for all widened layers in plan order; the discovered
corrupted samples share the mask of the reserved seed 0, which no uid maps to (the official code's shared
id can collide with a dataset index; ours cannot).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.func import functional_call

from forgetflow.errors import ConfigError
from forgetflow.models.adapters import Widening, adapter_for

SHARED_MASK_SEED = 0  # the seed of the one mask all discovered corrupted samples share (uids map to uid + 1)


def plan_for(model: nn.Module) -> list[Widening]:
    """The widening plan of a model's architecture (its adapter's ``widen``)."""
    return adapter_for(model).widen(model)


class WideModel(nn.Module):
    """The original model widened by ``ratio`` at every planned activation, with per-sample gates.

    ``forward(x, gates)``: ``gates`` is one ``[B, extra_j]`` 0/1 tensor per widening (θ_o1 + each sample's
    share of θ_o2), or ``None`` for drop mode (θ_o1 only). ``base(x)`` computes drop mode at the original
    size through views of θ_o1 (same function, a fraction of the cost; gradients reach the same tensors).
    """

    def __init__(self, original: nn.Module, ratio: float, generator: torch.Generator) -> None:
        super().__init__()
        if ratio <= 0:
            raise ConfigError(f"REM: expansion ratio must be > 0, not {ratio}")
        self.plan = plan_for(original)
        self.skeleton = [copy.deepcopy(original)]  # a list: not a submodule, never trained, only its structure
        self.net = copy.deepcopy(original)
        self.original_shapes = {k: tuple(v.shape) for k, v in original.state_dict().items()}
        modules = dict(self.net.named_modules())
        self.extra: list[int] = []
        grow_out: dict[str, int] = {}
        grow_in: dict[str, int] = {}
        for w in self.plan:
            out_units = _units(modules[w.producer], "out")
            e = max(1, math.ceil(ratio * out_units))
            group = _units(modules[w.consumer], "in") // out_units  # input columns per unit (flattened maps)
            self.extra.append(e)
            grow_out[w.producer] = e
            grow_in[w.consumer] = e * group
        for name in sorted(set(grow_out) | set(grow_in)):
            _set_module(self.net, name, _widened(modules[name], grow_out.get(name, 0), grow_in.get(name, 0), generator))
        for w in self.plan:
            if w.norm is not None:
                _set_module(self.net, w.norm, _widened_norm(modules[w.norm], grow_out[w.producer]))
        self._gates: list[torch.Tensor | None] = [None] * len(self.plan)
        modules = dict(self.net.named_modules())
        for j, w in enumerate(self.plan):
            modules[w.norm or w.producer].register_forward_hook(self._gate_hook(j))

    def scale_new_gradients(self, factor: float) -> None:
        """Multiply the gradient of every θ_o2 entry by ``factor`` (an SGD learning-rate multiplier for θ_o2)."""
        if factor == 1.0:
            return
        for name, p in self.net.named_parameters():
            shape = self.original_shapes[name]
            if tuple(p.shape) == shape:
                continue
            scale = torch.full_like(p, float(factor))
            scale[tuple(slice(0, n) for n in shape)] = 1.0
            p.register_hook(lambda g, scale=scale: g * scale)

    @property
    def total_extra(self) -> int:
        return sum(self.extra)

    def _gate_hook(self, j: int):
        def hook(module: nn.Module, inputs, out: torch.Tensor) -> torch.Tensor:
            gate = self._gates[j]
            units = out.shape[1] - self.extra[j]
            if gate is None:
                gate = out.new_zeros(out.shape[0], self.extra[j])
            scale = torch.cat([out.new_ones(out.shape[0], units), gate.to(out.dtype)], 1)
            return out * scale.view(*scale.shape, *([1] * (out.dim() - 2)))

        return hook

    def split(self, masks: torch.Tensor) -> list[torch.Tensor]:
        """Per-widening gates from ``[B, total_extra]`` concatenated masks."""
        return list(torch.split(masks, self.extra, dim=1))

    def forward(self, x: torch.Tensor, gates: list[torch.Tensor] | None = None) -> torch.Tensor:
        self._gates = list(gates) if gates is not None else [None] * len(self.plan)
        try:
            return self.net(x)
        finally:
            self._gates = [None] * len(self.plan)

    def base_state(self) -> dict[str, torch.Tensor]:
        """θ_o1 as views: every parameter and buffer sliced to its original shape."""
        state = dict(self.net.named_parameters())
        state.update(self.net.named_buffers())
        return {k: v[tuple(slice(0, n) for n in self.original_shapes[k])] if v.dim() else v
                for k, v in state.items()}

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """Drop mode (θ_o2 switched off) at the original size; train/eval follows ``self.training``."""
        skeleton = self.skeleton[0].to(x.device)
        skeleton.train(self.training)
        return functional_call(skeleton, self.base_state(), (x,))

    def deploy(self, into: nn.Module) -> nn.Module:
        """Copy θ_o1 into ``into`` (a model of the original architecture) and return it."""
        with torch.no_grad():
            into.load_state_dict({k: v.detach().clone() for k, v in self.base_state().items()})
        return into

    @torch.no_grad()
    def recalibrate_base(self, batches: list[torch.Tensor]) -> None:
        """Re-estimate θ_o1's BN running statistics in drop mode from ``batches`` (inputs only).

        Training through θ_o2 shifts what θ_o1's BN layers see; once θ_o2 is gone the statistics must
        describe θ_o1 alone, so they are recomputed as a cumulative average over drop-mode passes.
        """
        skeleton = self.deploy(copy.deepcopy(self.skeleton[0]).to(batches[0].device))
        norms = [m for m in skeleton.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        skeleton.train()
        for x in batches:
            skeleton(x)
        own = dict(self.net.named_buffers())
        for name, value in skeleton.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                own[name][: value.shape[0]] = value

    @torch.no_grad()
    def calibrate_new_norms(self, x: torch.Tensor) -> None:
        """Set the running statistics of the new BN channels from a full-capacity pass over ``x``.

        The original channels' statistics are restored afterwards, so the function stays exact.
        """
        norms = [m for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                 for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        was = self.training
        self.train()
        self.forward(x, [torch.ones(len(x), e, device=x.device) for e in self.extra])
        self.train(was)
        for m, (mean, var, count, momentum) in zip(norms, saved):
            n = mean.shape[0]
            m.running_mean[:n] = mean
            m.running_var[:n] = var
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum


def sample_mask(uid: int | None, total: int, p_mem: float) -> torch.Tensor:
    """The ``[total]`` 0/1 mask of one sample (``uid=None``: the mask shared by discovered samples)."""
    g = torch.Generator().manual_seed(SHARED_MASK_SEED if uid is None else int(uid) + 1)
    return torch.bernoulli(torch.full((total,), float(p_mem)), generator=g)


def mask_bank(uids: torch.Tensor, shared: torch.Tensor, total: int, p_mem: float) -> torch.Tensor:
    """Masks ``[N, total]`` (bool) of samples with ``uids``; rows where ``shared`` is true get the shared mask."""
    common = sample_mask(None, total, p_mem).bool()
    bank = torch.empty(len(uids), total, dtype=torch.bool)
    for i, (uid, is_shared) in enumerate(zip(uids.tolist(), shared.tolist())):
        bank[i] = common if is_shared else sample_mask(uid, total, p_mem).bool()
    return bank


# ---- private helpers ---------------------------------------------------------------------------------
def _units(module: nn.Module, side: str) -> int:
    if isinstance(module, nn.Conv2d):
        return module.out_channels if side == "out" else module.in_channels
    if isinstance(module, nn.Linear):
        return module.out_features if side == "out" else module.in_features
    raise ConfigError(f"REM can widen Conv2d and Linear layers, not {type(module).__name__}")


def _widened(module: nn.Module, add_out: int, add_in: int, generator: torch.Generator) -> nn.Module:
    """A copy of a conv/linear layer with ``add_out`` new output units and ``add_in`` new input columns.

    Original rows keep their weights and read the new columns with zero weights; new rows are random.
    """
    w = module.weight.detach()
    out_n, in_n = w.shape[0], w.shape[1]
    shape = (out_n + add_out, in_n + add_in, *w.shape[2:])
    fan_in = shape[1] * math.prod(w.shape[2:])
    bound = 1.0 / math.sqrt(fan_in)
    weight = (torch.rand(shape, generator=generator) * 2 - 1).mul_(bound).to(w.device, w.dtype)
    weight[:out_n] = 0.0
    weight[:out_n, :in_n] = w
    if isinstance(module, nn.Conv2d):
        new = nn.Conv2d(shape[1], shape[0], module.kernel_size, module.stride, module.padding, module.dilation,
                        module.groups, module.bias is not None, module.padding_mode)
    else:
        new = nn.Linear(shape[1], shape[0], bias=module.bias is not None)
    new = new.to(w.device, w.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if module.bias is not None:
            bias = (torch.rand(shape[0], generator=generator) * 2 - 1).mul_(bound).to(w.device, w.dtype)
            bias[:out_n] = module.bias.detach()
            new.bias.copy_(bias)
    return new


def _widened_norm(norm: nn.Module, add: int) -> nn.Module:
    """A copy of a BatchNorm with ``add`` fresh channels (weight 1, bias 0, running mean 0, var 1)."""
    n = norm.num_features
    new = type(norm)(n + add, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
    new = new.to(norm.weight.device)
    with torch.no_grad():
        if norm.affine:
            new.weight[:n] = norm.weight
            new.bias[:n] = norm.bias
        new.running_mean[:n] = norm.running_mean
        new.running_var[:n] = norm.running_var
        new.num_batches_tracked.copy_(norm.num_batches_tracked)
    return new


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)
