"""Hidden-layer mixing for any nn.Module (docs/method.md, hidden-layer methods): named layers, forward hooks that are
always removed, the same mixing as the StagedNet path, clear errors. Tiny models only."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import lmix
from lmix.mixing.hidden import check_layers, forward_mixed, num_hook_points, unwrap
from lmix.mixing.patchup import PatchUp, PatchUpPlan

NUM_CLASSES = 10


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def tiny_sequential() -> nn.Sequential:
    """(B, 3, 8, 8) -> (B, 10): two conv stages, then a head that flattens."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, NUM_CLASSES),
    )


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=NUM_CLASSES)


# -- the same mixing as the StagedNet path ---------------------------------------------------------


@pytest.mark.parametrize("patchup_type", ["hard", "soft"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_named_stages_give_the_staged_net_result_exactly(patchup_type, layer):
    """layers=('stages.0', 'stages.1') on a StagedNet: forward hooks on the stages' outputs mix
    exactly what the StagedNet's own hook points mix (same draws, same logits, same loss)."""
    torch.manual_seed(0)
    model = lmix.create_model("preact_resnet_tiny", num_classes=NUM_CLASSES).eval()
    x = torch.rand(4, 3, 16, 16, generator=gen(1))
    y = torch.tensor([0, 3, 3, 9])
    soft = patchup_type == "soft" and layer > 0
    plan = PatchUpPlan(True, layer, torch.tensor([2, 0, 3, 1]), torch.full((4,), 0.3) if soft else None)
    staged = PatchUp(patchup_type=patchup_type, seed=0)
    named = PatchUp(patchup_type=patchup_type, layers=("stages.0", "stages.1"), seed=0)
    logits_a, loss_a, batch_a = staged.forward_loss(model, x, y, generator=gen(2), plan=plan)
    logits_b, loss_b, batch_b = named.forward_loss(model, x, y, generator=gen(2), plan=plan)
    assert torch.equal(logits_a, logits_b) and torch.equal(loss_a, loss_b)
    assert torch.equal(batch_a.lam, batch_b.lam) and torch.equal(batch_a.images, batch_b.images)
    assert hooks_left(model) == 0


def test_torchvision_resnet18_every_hook_point(resnet18):
    """PatchUp on torchvision's resnet18 (not a StagedNet): the hook replaces the named layer's
    output by the block-mixed one; loss and gradients are finite; no hook is left behind."""
    x = torch.rand(2, 3, 32, 32, generator=gen(3))
    y = torch.tensor([1, 7])
    mixer = PatchUp(layers=("layer1", "layer2"), max_layer=None, seed=0)
    assert num_hook_points(resnet18, mixer.layers) == 3
    perm = torch.tensor([1, 0])
    for layer in range(3):
        plan = PatchUpPlan(True, layer, perm, None)
        resnet18.zero_grad()
        logits, loss, batch = mixer.forward_loss(resnet18, x, y, generator=gen(4), plan=plan)
        loss.backward()
        assert logits.shape == (2, NUM_CLASSES) and bool(torch.isfinite(loss))
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in resnet18.parameters())
        assert hooks_left(resnet18) == 0
        # Replay: the same hook function, registered by hand, gives the same logits.
        hook, record = mixer.hook(plan, generator=gen(4))
        if layer == 0:
            replay = resnet18(hook(x))
            assert torch.equal(batch.images, record["input"])
        else:
            seen = {}

            def spy(_m, _a, out, hook=hook, seen=seen):
                seen["in"], seen["out"] = out, hook(out)
                return seen["out"]

            handle = getattr(resnet18, f"layer{layer}").register_forward_hook(spy)
            try:
                replay = resnet18(x)
            finally:
                handle.remove()
            h, holes = seen["in"], record["holes"]
            assert h.shape == (2, 64 * layer, 8 // layer, 8 // layer)
            assert torch.equal(seen["out"], torch.where(holes, h[perm], h))
            assert torch.equal(batch.images, x)
        assert torch.allclose(replay, logits, atol=1e-6)


def test_plain_sequential_and_ddp_like_wrapper():
    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return self.module(*args, **kwargs)

    torch.manual_seed(0)
    net = tiny_sequential()
    model = Wrapper(net)
    assert unwrap(model) is net
    mixer = PatchUp(patchup_type="soft", patchup_prob=1.0, max_layer=None, layers=("1", "3"), block_size=3, seed=1)
    x, y = torch.rand(5, 3, 8, 8, generator=gen(5)), torch.arange(5)
    layers_seen = set()
    for _ in range(12):
        logits, loss, batch = mixer.forward_loss(model, x, y)
        assert logits.shape == (5, NUM_CLASSES) and bool(torch.isfinite(loss))
        assert bool(((batch.lam >= 0) & (batch.lam <= 1)).all())
        layers_seen.add(bool((batch.images != x).any()))
        loss.backward()
    assert layers_seen == {True, False}  # input mixing (CutMix) and hidden mixing both drawn
    assert hooks_left(model) == 0


# -- hooks are always removed ------------------------------------------------------------------------


class _Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom after the hooked layer")


def test_hooks_are_removed_when_the_forward_raises():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _Boom())
    mix_calls = []

    def mix(h):
        mix_calls.append(h.shape)
        return h

    with pytest.raises(RuntimeError, match="boom after the hooked layer"):
        forward_mixed(model, torch.rand(2, 3, 4, 4), point=1, mix=mix, layers=("0",))
    assert mix_calls == [(2, 4, 4, 4)] and hooks_left(model) == 0
    # A mixer error inside the hook (here: a reused module) also leaves no hook behind.
    relu = nn.ReLU()
    reused = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), relu, nn.Conv2d(4, 4, 1), relu)
    mixer = PatchUp(layers=("1",), patchup_prob=1.0, max_layer=None, seed=0)
    with pytest.raises(RuntimeError, match=r"layer '1' ran more than once in one forward pass"):
        mixer.forward_loss(
            reused, torch.rand(2, 3, 8, 8), torch.arange(2), plan=PatchUpPlan(True, 1, torch.arange(2), None)
        )
    assert hooks_left(reused) == 0


# -- errors ------------------------------------------------------------------------------------------


def test_unknown_layer_lists_valid_names(resnet18):
    mixer = PatchUp(layers=("layer1", "layer9"), seed=0)
    with pytest.raises(ValueError, match=r"unknown layer 'layer9' in ResNet.*e\.g\. 'conv1', 'bn1', .*'layer1'"):
        mixer.forward_loss(resnet18, torch.rand(2, 3, 32, 32), torch.arange(2))
    assert hooks_left(resnet18) == 0


def test_block_mask_needs_a_4d_output():
    mixer = PatchUp(layers=("5",), max_layer=None, seed=0)
    plan = PatchUpPlan(True, 1, torch.tensor([1, 0]), None)
    with pytest.raises(
        ValueError, match=r"PatchUp needs a 4-D \(B, C, H, W\) feature map at layer '5'.*got shape \(2, 6\)"
    ):
        mixer.forward_loss(tiny_sequential(), torch.rand(2, 3, 8, 8), torch.arange(2), plan=plan)


def test_layer_that_does_not_run_or_is_not_batch_first():
    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Conv2d(3, NUM_CLASSES, 1)
            self.unused = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.used(x).mean(dim=(2, 3))

    with pytest.raises(ValueError, match=r"layer 'unused' did not run during the forward pass"):
        forward_mixed(Skips(), torch.rand(2, 3, 4, 4), point=1, mix=lambda h: h, layers=("unused",))

    class Transposed(nn.Module):
        def forward(self, x):
            return x.transpose(0, 1)

    model = nn.Sequential(Transposed(), nn.Flatten(0, -1))
    with pytest.raises(ValueError, match=r"first dimension is not the batch size 2"):
        forward_mixed(model, torch.rand(2, 3, 4, 4), point=1, mix=lambda h: h, layers=("0",))
    with pytest.raises(ValueError, match=r"hook point must be an int in \[0, 1\]"):
        forward_mixed(model, torch.rand(2, 3, 4, 4), point=2, mix=lambda h: h, layers=("0",))


def test_plain_module_without_layers_is_refused_with_a_hint():
    with pytest.raises(TypeError, match=r"PatchUp needs a model with stage hooks.*layers=\('layer1', 'layer2'\)"):
        PatchUp(seed=0).forward_loss(tiny_sequential(), torch.rand(2, 3, 8, 8), torch.arange(2))


@pytest.mark.parametrize(
    "layers,match",
    [
        ("layer1", r"layers must be None .* or a sequence of submodule names"),
        (3, r"layers must be None"),
        (("layer1", ""), r"layers must hold non-empty submodule names"),
        (("layer1", 2), r"layers must hold non-empty submodule names .*got 2"),
        (("layer1", "layer1"), r"layers must name each submodule once"),
    ],
)
def test_bad_layers_argument(layers, match):
    with pytest.raises(ValueError, match=match):
        check_layers(layers)
    with pytest.raises(ValueError, match=match):
        lmix.create_mixer("patchup", layers=layers)


def test_layers_are_kept_as_a_tuple_and_shown():
    mixer = lmix.create_mixer("patchup", layers=["layer1", "layer2"])
    assert mixer.layers == ("layer1", "layer2") and "layers=('layer1', 'layer2')" in repr(mixer)
    assert check_layers(()) == () and check_layers(None) is None
