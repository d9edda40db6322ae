"""REM: the widening keeps the function exactly, masks are tied to uids, and REM heals a corrupted digits task."""

from __future__ import annotations

import pytest
import torch

from forgetflow import bench
from forgetflow.methods import METHODS
from forgetflow.methods.rem_expansion import WideModel, mask_bank, sample_mask
from forgetflow.models import build_model, clone, same_architecture
from conftest import make_setup  # the already-loaded conftest module (no second execution)


@pytest.fixture(scope="module")
def digits_backdoor(digits_version, session_tmp) -> bench.Setup:
    """100 backdoored digits (3x3 corner patch, label 0), half of them discovered."""
    return make_setup(digits_version, "corrupted", session_tmp / "models", regularity="backdoor", discovery=0.5,
                      size=100)


def _all_modes_match(original, wide, x, atol=1e-5):
    original.eval()
    wide.eval()
    want = original(x)
    gen = torch.Generator().manual_seed(5)
    outs = {
        "drop": wide(x),
        "base": wide.base(x),
        "full": wide(x, [torch.ones(len(x), e) for e in wide.extra]),
        "masked": wide(x, [torch.bernoulli(torch.full((len(x), e), 0.3), generator=gen) for e in wide.extra]),
    }
    for mode, got in outs.items():
        assert torch.allclose(got, want, atol=atol, rtol=0), f"{mode}: max diff {(got - want).abs().max():.2e}"


def test_widened_small_cnn_reproduces_the_original_in_every_mode(digits_backdoor):
    original = clone(digits_backdoor.original.model)
    x = digits_backdoor.splits.test.tensors()[0][:64]
    wide = WideModel(original, 1.0, torch.Generator().manual_seed(0))
    assert wide.extra == [8, 16, 32, 128]  # small-cnn width 8: conv1..conv3 and fc1 doubled
    _all_modes_match(original, wide, x)
    wide.calibrate_new_norms(x)  # new BN statistics must not touch the original channels
    _all_modes_match(original, wide, x)
    deployed = wide.deploy(clone(original))
    assert same_architecture(deployed, original)
    assert all(torch.equal(a, b) for a, b in zip(deployed.state_dict().values(), original.state_dict().values()))


def test_widened_resnet18_reproduces_the_original_in_every_mode():
    torch.manual_seed(0)
    original = build_model("resnet18", in_channels=3, num_classes=10, image_size=16)
    original.train()
    with torch.no_grad():  # non-trivial BN statistics
        for _ in range(2):
            original(torch.randn(8, 3, 16, 16))
    wide = WideModel(original, 0.5, torch.Generator().manual_seed(0))
    assert len(wide.extra) == 8  # one widened activation inside every BasicBlock
    _all_modes_match(original, wide, torch.randn(4, 3, 16, 16))


def test_new_capacity_is_switched_on_by_the_gates_only():
    """After training the new units, drop mode still equals θ_o1 alone while masked modes differ."""
    torch.manual_seed(0)
    model = build_model("small-cnn", in_channels=1, num_classes=10, image_size=8, width=4)
    wide = WideModel(model, 1.0, torch.Generator().manual_seed(0))
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(wide.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(wide(x, [torch.ones(32, e) for e in wide.extra]), y).backward()
        opt.step()
    wide.eval()
    assert torch.allclose(wide(x), wide.base(x), atol=1e-5)
    assert not torch.allclose(wide(x, [torch.ones(32, e) for e in wide.extra]), wide(x), atol=1e-3)
    assert torch.allclose(wide.deploy(clone(model)).eval()(x), wide.base(x), atol=1e-5)


def test_masks_are_tied_to_uids_and_shared_by_discovered_samples():
    total, p = 240, 0.2
    uids = torch.tensor([7, 3, 11, 7, 42, 5])
    shared = torch.tensor([False, True, False, False, True, False])
    bank = mask_bank(uids, shared, total, p)
    again = mask_bank(uids, shared, total, p)
    assert torch.equal(bank, again)  # deterministic: no hidden random state
    assert torch.equal(bank[0], bank[3]) and torch.equal(bank[0], sample_mask(7, total, p).bool())
    assert torch.equal(bank[1], bank[4]) and torch.equal(bank[1], sample_mask(None, total, p).bool())
    assert not torch.equal(bank[0], bank[2]) and not torch.equal(bank[1], sample_mask(3, total, p).bool())
    many = torch.stack([sample_mask(u, total, p) for u in range(400)])
    assert abs(float(many.mean()) - p) < 0.01  # Bernoulli(p_mem)
    assert len({tuple(m.tolist()) for m in many}) == 400


def test_rem_heals_a_backdoor_and_keeps_the_architecture(digits_backdoor):
    s = digits_backdoor
    before = s.extra(s.original.model)
    row = bench.run_method(s, "rem", {})
    assert row["healed"] >= before["healed"] + 30.0, (before, row)
    assert row["healed_undiscovered"] >= before["healed_undiscovered"] + 25.0  # the redirect reaches hidden corruption
    assert row["forget_acc"] <= 100.0 * METHODS.get("rem").resolve().gamma + 5.0  # θ_o1 no longer fits D_f
    assert row["utility"] >= before["utility"] - 3.0
    assert row["retain_acc"] >= s.original_eval.metrics["retain_acc"] - 6.0  # D_r holds the undiscovered poison


def test_rem_returns_the_original_architecture(digits_backdoor):
    from forgetflow.methods import data_for
    from forgetflow.runtime import RunContext

    s = digits_backdoor
    spec = METHODS.get("rem")
    model = clone(s.original.model)
    data = data_for(spec, s.splits.forget, s.splits.retain, s.splits.num_classes, s.recipe)
    out = spec.unlearn(model, data, spec.resolve(None, {"forget_passes": 1.0, "min_steps": 4, "rounds": 2}), RunContext.create(0, "cpu"))
    assert type(out) is type(s.original.model) and same_architecture(out, s.original.model)
    assert out.state_dict().keys() == s.original.model.state_dict().keys()
