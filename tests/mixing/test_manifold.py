"""Manifold Mixup (docs/method.md, Manifold Mixup): the layer draw, the mixing of hidden states, the mixed loss,
on lmix's StagedNets and on plain modules (named layers), randomness, bad parameters. The generic
Mixer tests run on it from the registry (its ``__call__`` is input Mixup)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import lmix
from lmix.mixing.manifold import STAGED_POINTS, ManifoldMixup, ManifoldPlan
from lmix.mixing.registry import create_mixer, list_mixers

NUM_CLASSES = 10
CPU = torch.device("cpu")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def expected_loss(logits, y, y_b, lam, smoothing=0.0):
    """lam CE(out, y) + (1 - lam) CE(out, y_b), written out with explicit soft targets."""
    t = lam.double()[:, None] * F.one_hot(y, NUM_CLASSES).double()
    t = t + (1 - lam.double()[:, None]) * F.one_hot(y_b, NUM_CLASSES).double()
    t = (1 - smoothing) * t + smoothing / NUM_CLASSES
    return -(t * F.log_softmax(logits.double(), dim=1)).sum(1).mean()


# -- registration, defaults, validation -----------------------------------------------------------


def test_registered_with_the_reference_defaults():
    assert "manifold_mixup" in list_mixers()
    m = create_mixer("manifold_mixup", seed=0)
    assert isinstance(m, ManifoldMixup) and m.uses_model and m.name == "manifold_mixup"
    assert (m.alpha, m.layers, m.mode, m.pairing) == (2.0, None, "batch", "random")
    assert repr(m) == "ManifoldMixup(alpha=2.0, mode='batch', pairing='random')"
    choice = create_mixer("manifold_mixup+mixup", seed=0)
    assert choice.uses_model


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": 0.0}, r"alpha must be a finite number > 0, got 0\.0"),
        ({"alpha": float("inf")}, r"alpha must be a finite number > 0"),
        ({"mode": "elem"}, r"mode must be 'sample' .* or 'batch' .*got 'elem'"),
        ({"pairing": "shuffle"}, r"pairing must be 'random' .*'no_self' .*'flip' .*'roll' .*got 'shuffle'"),
        ({"layers": "layer1"}, r"layers must be None .* or a sequence of submodule names"),
        ({"layers": ("a", "a")}, r"layers must name each submodule once"),
        ({"seed": -1}, r"seed must be a non-negative integer or None, got -1"),
        ({"max_layer": 2}, r"unknown parameter\(s\) \['max_layer'\] for mixer 'manifold_mixup'"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_mixer("manifold_mixup", **kwargs)


# -- forward_loss on the lmix models (StagedNet) ------------------------------------------------------


@pytest.mark.parametrize("model_name", ["simple_cnn", "preact_resnet_tiny"])
@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_staged_net_mixes_the_hidden_state_and_takes_the_mixed_loss(model_name, layer, mode):
    torch.manual_seed(0)
    model = lmix.create_model(model_name, num_classes=NUM_CLASSES, width=8).eval()
    b = 6
    x = torch.rand(b, 3, 16, 16, generator=gen(1))
    y = torch.randint(0, NUM_CLASSES, (b,), generator=gen(2))
    perm = torch.randperm(b, generator=gen(3))
    lam = torch.rand(1 if mode == "batch" else b, generator=gen(4)).expand(b).contiguous()
    plan = ManifoldPlan(layer, perm, lam)
    mixer = ManifoldMixup(mode=mode, seed=0)
    for smoothing in (0.0, 0.1):
        logits, loss, batch = mixer.forward_loss(model, x, y, label_smoothing=smoothing, plan=plan)
        assert loss.dtype == torch.float32 and loss.shape == ()
        assert torch.allclose(loss.double(), expected_loss(logits.detach(), y, y[perm], lam, smoothing), atol=1e-6)
    assert torch.equal(batch.labels_a, y) and torch.equal(batch.labels_b, y[perm]) and torch.equal(batch.lam, lam)
    # Replay through the StagedNet's own hook: the hidden state is lam h + (1 - lam) h[perm].
    seen = {}

    def spy(h):
        w = lam.view(-1, *([1] * (h.ndim - 1)))
        seen["in"], seen["out"] = h, w * h + (1 - w) * h[perm]
        return seen["out"]

    assert torch.allclose(model(x, hook=spy, hook_at=layer), logits, atol=1e-5)
    if layer == 0:
        assert torch.allclose(batch.images, seen["out"], atol=1e-6)
    else:
        assert torch.equal(batch.images, x)


def test_layer_draw_is_uniform_over_the_eligible_points():
    mixer = ManifoldMixup(seed=1)
    tiny = lmix.create_model("preact_resnet_tiny", num_classes=NUM_CLASSES)
    assert tiny.num_hook_points > STAGED_POINTS == 3 and mixer.num_points(tiny) == 3
    assert mixer.num_points(nn_staged(2)) == 2  # fewer stages than the default points
    named = ManifoldMixup(layers=("stages.1", "stages.2", "stages.3"), seed=1)
    assert named.num_points(tiny) == 4
    for points in (3, 4):
        n = 600
        counts = np.bincount([mixer.plan(4, points, device=CPU).layer for _ in range(n)], minlength=points)
        assert len(counts) == points
        p = 1 / points
        assert all(abs(c - n * p) <= 5 * math.sqrt(n * p * (1 - p)) for c in counts), counts


def nn_staged(stages: int) -> nn.Module:
    from lmix.models.base import ClassifierHead, StagedNet

    convs = [nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(stages)]
    return StagedNet(convs, ClassifierHead(4, NUM_CLASSES, preact=False), num_classes=NUM_CLASSES, num_features=4)


def test_lam_follows_beta_alpha_and_mode():
    from scipy import stats

    per_sample = ManifoldMixup(alpha=2.0, mode="sample", seed=2).plan(2000, 3, device=CPU)
    assert stats.kstest(per_sample.lam.double().numpy(), stats.beta(2.0, 2.0).cdf).pvalue > 1e-3
    batch = ManifoldMixup(alpha=0.5, mode="batch", seed=2)
    lams = [batch.plan(5, 3, device=CPU).lam for _ in range(200)]
    assert all(bool((lam == lam[0]).all()) for lam in lams)
    assert stats.kstest(torch.stack([lam[0] for lam in lams]).double().numpy(), stats.beta(0.5, 0.5).cdf).pvalue > 1e-3


@pytest.mark.parametrize("pairing", ["random", "no_self", "flip", "roll"])
def test_pairing(pairing):
    mixer = ManifoldMixup(pairing=pairing, seed=3)
    for _ in range(20):
        perm = mixer.plan(7, 3, device=CPU).perm
        assert sorted(perm.tolist()) == list(range(7))
        if pairing == "no_self":
            assert bool((perm != torch.arange(7)).all())
        elif pairing == "flip":
            assert perm.tolist() == list(range(6, -1, -1))
        elif pairing == "roll":
            assert perm.tolist() == [6, 0, 1, 2, 3, 4, 5]


# -- any nn.Module ---------------------------------------------------------------------------------


def test_plain_sequential_with_a_flat_layer_and_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, NUM_CLASSES)
    )
    x, y = torch.rand(5, 3, 8, 8, generator=gen(5)), torch.arange(5)
    mixer = ManifoldMixup(layers=("1", "3"), mode="sample", seed=4)  # a (B, C, H, W) and a (B, D) output
    perm, lam = torch.tensor([4, 0, 1, 2, 3]), torch.linspace(0.1, 0.9, 5)
    for layer in range(3):
        model.zero_grad()
        logits, loss, batch = mixer.forward_loss(model, x, y, plan=ManifoldPlan(layer, perm, lam))
        loss.backward()
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
        assert torch.allclose(loss.double(), expected_loss(logits.detach(), y, y[perm], lam), atol=1e-6)
        assert hooks_left(model) == 0
    # Layer "3" (Flatten, (B, 4)) mixed: the logits are the head on the mixed pooled features.
    pooled = model[:4](x)
    mixed = lam[:, None] * pooled + (1 - lam[:, None]) * pooled[perm]
    assert torch.allclose(logits, model[4](mixed), atol=1e-6)


def test_torchvision_resnet18():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    x, y = torch.rand(2, 3, 32, 32, generator=gen(6)), torch.tensor([3, 8])
    mixer = ManifoldMixup(layers=("layer1", "layer2"), seed=5)
    assert mixer.num_points(model) == 3
    plan = ManifoldPlan(2, torch.tensor([1, 0]), torch.tensor([0.25, 0.25]))
    logits, loss, batch = mixer.forward_loss(model, x, y, plan=plan)
    loss.backward()
    assert logits.shape == (2, NUM_CLASSES) and bool(torch.isfinite(loss)) and hooks_left(model) == 0
    assert torch.equal(batch.images, x) and torch.equal(batch.labels_b, torch.tensor([8, 3]))
    with pytest.raises(ValueError, match=r"unknown layer 'layer5' in ResNet.*'layer4'"):
        ManifoldMixup(layers=("layer5",), seed=0).forward_loss(model, x, y)
    with pytest.raises(TypeError, match=r"Manifold Mixup needs a model with stage hooks.*layers="):
        ManifoldMixup(seed=0).forward_loss(model, x, y)
    assert hooks_left(model) == 0


# -- randomness --------------------------------------------------------------------------------------


def test_reproducible_resumable_explicit_generator_and_global_rng_untouched():
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES, width=4).eval()
    x, y = torch.rand(5, 3, 8, 8, generator=gen(7)), torch.arange(5)
    torch.manual_seed(99)
    random.seed(99)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()

    def run(mixer, n=8, **kw):
        return [mixer.forward_loss(model, x, y, **kw)[1].detach() for _ in range(n)]

    a, b = ManifoldMixup(seed=8), ManifoldMixup(seed=8)
    la = run(a)
    assert all(torch.equal(p, q) for p, q in zip(la, run(b)))
    assert len({float(v) for v in la}) == len(la)
    assert not all(torch.equal(p, q) for p, q in zip(la, run(ManifoldMixup(seed=9))))
    state = a.state_dict()
    expected = run(a, 4)
    c = ManifoldMixup(seed=0)
    c.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(run(c, 4), expected))
    # An explicit generator is the only source of randomness: the mixer's own state does not matter.
    d, e = ManifoldMixup(seed=1), ManifoldMixup(seed=2)
    g1, g2 = gen(10), gen(10)
    assert all(torch.equal(p, q) for p, q in zip(run(d, 4, generator=g1), run(e, 4, generator=g2)))
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])


def test_autocast_reports_the_rounded_lam():
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES, width=4)
    x, y = torch.rand(4, 3, 8, 8, generator=gen(11)), torch.tensor([0, 1, 2, 3])
    lam = torch.full((4,), 0.123456789)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss, batch = ManifoldMixup(seed=0).forward_loss(
            model, x, y, plan=ManifoldPlan(1, torch.arange(4).flip(0), lam)
        )
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert torch.equal(batch.lam, lam.to(torch.bfloat16).float()) and not torch.equal(batch.lam, lam)
    loss.backward()


def test_choice_runs_manifold_mixup_inside_the_model():
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES, width=4)
    x, y = torch.rand(6, 3, 8, 8, generator=gen(12)), torch.arange(6)
    choice = create_mixer("manifold_mixup+cutmix", schedule="alternate", seed=0)
    _, loss, batch = choice.forward_loss(model, x, y)
    assert bool(torch.isfinite(loss)) and batch.lam.shape == (6,)
    assert choice.calls == 1
