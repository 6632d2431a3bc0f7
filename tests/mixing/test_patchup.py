"""PatchUp (docs/method.md, PatchUp): block masks, the mixing, the layer draw, targets and loss,
every registered model, bad hyperparameters. The generic Mixer tests run on it from the registry."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lmix
from lmix.mixing.patchup import PatchUp, PatchUpPlan, adjusted_gamma, block_holes, grow_blocks
from lmix.models import registry as model_registry
from tests.mixing._util import constant_images

CPU = torch.device("cpu")
NUM_CLASSES = 10
# Models whose forward + backward at 8x8 takes milliseconds; the paper's models (10-36M parameters,
# up to 272 layers) are only run forward under no_grad, to keep this file at a few seconds.
SMALL_MODELS = ("simple_cnn", "preact_resnet_tiny")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def opening_is_identity(holes: torch.Tensor, block_size: int) -> bool:
    """True iff (N, C, H, W) bool ``holes`` is a union of ``block_size`` squares centred in the map
    (squares may be clipped at the border): morphological opening, with the outside counted as
    holes, gives the mask back."""
    pad = block_size // 2
    padded = F.pad(holes.float(), (pad, pad, pad, pad), value=1.0)
    # Centres (inside the map) of squares that lie entirely in holes-or-outside.
    eroded = -F.max_pool2d(-padded, block_size, stride=1)[..., : holes.shape[-2], : holes.shape[-1]]
    return torch.equal(grow_blocks(eroded > 0, block_size), holes)


# -- defaults and validation ---------------------------------------------------------------------


def test_defaults_are_the_spec_values():
    m = lmix.create_mixer("patchup")
    assert isinstance(m, PatchUp) and isinstance(m, lmix.Mixer) and lmix.PatchUp is PatchUp
    assert (m.alpha, m.patchup_prob, m.gamma, m.block_size, m.patchup_type) == (
        2.0,
        0.7,
        0.5,
        7,
        "soft",
    )  # soft: the reference default
    assert (m.max_layer, m.input_mix, m.cutmix_alpha, m.loss_weights, m.mode) == (2, "cutmix", 1.0, (1.0, 1.0), "batch")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gamma": 0.0}, r"gamma must be a number in \(0, 1\].*got 0\.0"),
        ({"gamma": 1.5}, r"gamma must be a number in \(0, 1\].*got 1\.5"),
        ({"gamma": -0.1}, r"gamma must be a number in \(0, 1\]"),
        ({"gamma": float("nan")}, r"gamma must be a number in \(0, 1\]"),
        ({"gamma": "0.5"}, r"gamma must be a number in \(0, 1\]"),
        ({"block_size": 0}, r"block_size must be an integer >= 1, got 0"),
        ({"block_size": -3}, r"block_size must be an integer >= 1, got -3"),
        ({"block_size": 2.5}, r"block_size must be an integer >= 1, got 2\.5"),
        ({"block_size": True}, r"block_size must be an integer >= 1"),
        ({"patchup_prob": -0.1}, r"patchup_prob must be a number in \[0, 1\], got -0\.1"),
        ({"patchup_prob": 1.01}, r"patchup_prob must be a number in \[0, 1\], got 1\.01"),
        ({"patchup_type": "medium"}, r"patchup_type must be 'hard' .* or 'soft' .*got 'medium'"),
        ({"patchup_type": None}, r"patchup_type must be 'hard'"),
        ({"max_layer": -1}, r"max_layer must be an integer >= 0, got -1"),
        ({"input_mix": "mixup"}, r"input_mix must be 'cutmix' .* or 'patchup', got 'mixup'"),
        ({"cutmix_alpha": 0.0}, r"cutmix_alpha must be a finite number > 0"),
        ({"loss_weights": (1.0,)}, r"loss_weights must be a pair \(w_a, w_b\) of finite numbers >= 0"),
        ({"loss_weights": (1.0, -1.0)}, r"loss_weights must be a pair"),
        ({"loss_weights": "11"}, r"loss_weights must be a pair"),
        ({"alpha": 0.0}, r"alpha must be a finite number > 0"),
        ({"mode": "elem"}, r"mode must be 'sample'"),
        ({"loss_scale": "mean"}, r"loss_scale must be 'reference' .* or 'single' .*got 'mean'"),
        ({"layers": "layer1"}, r"layers must be None"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lmix.create_mixer("patchup", **kwargs)


def test_forward_loss_refuses_a_model_without_hooks():
    with pytest.raises(TypeError, match=r"PatchUp needs a model with stage hooks"):
        PatchUp(seed=0).forward_loss(nn.Linear(3, 2), torch.rand(2, 3, 4, 4), torch.arange(2))


# -- the block mask --------------------------------------------------------------------------------


def test_adjusted_gamma_is_the_reference_formula():
    # modules/patchup.py, adjust_gamma: gamma * W**2 / (block**2 * (W - block + 1)**2).
    for gamma, w, bs in [(0.5, 32, 7), (0.9, 16, 5), (0.25, 8, 3)]:
        assert math.isclose(adjusted_gamma(gamma, bs, (w, w)), gamma * w**2 / (bs**2 * (w - bs + 1) ** 2))
    assert math.isclose(adjusted_gamma(0.5, 3, (8, 12)), 0.5 * 96 / (9 * 6 * 10))
    # A block as large as (or larger than) the map: one seed covers it; the rate stays a probability.
    assert adjusted_gamma(0.5, 7, (7, 7)) == pytest.approx(0.5)
    assert adjusted_gamma(0.5, 7, (2, 2)) == pytest.approx(0.5)
    assert 0 < adjusted_gamma(1.0, 7, (9, 9)) <= 1.0


@pytest.mark.parametrize("block_size", [1, 3, 4, 7])
def test_one_seed_grows_into_a_block_of_block_size(block_size):
    seeds = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    seeds[0, 0, 9, 11] = True
    holes = grow_blocks(seeds, block_size)
    assert holes.dtype == torch.bool and holes.shape == seeds.shape
    rows, cols = holes[0, 0].any(1).nonzero().flatten(), holes[0, 0].any(0).nonzero().flatten()
    assert int(holes.sum()) == block_size**2
    assert len(rows) == len(cols) == block_size and bool(holes[0, 0, 9, 11])
    assert int(rows[-1] - rows[0]) == int(cols[-1] - cols[0]) == block_size - 1
    # A seed in the corner: the block is clipped at the border.
    corner = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    corner[0, 0, 0, 0] = True
    side = block_size // 2 + 1  # the seed's row/column and block_size // 2 after it
    assert int(grow_blocks(corner, block_size).sum()) == side**2


@pytest.mark.parametrize("size,block_size", [((32, 32), 7), ((16, 12), 3), ((2, 2), 7)])
def test_holes_are_binary_unions_of_blocks(size, block_size):
    holes = block_holes(64, (3, *size), gamma=0.5, block_size=block_size, generator=gen(1), device=CPU)
    assert holes.dtype == torch.bool and holes.shape == (64, 3, *size)
    assert 0 < int(holes.sum()) < holes.numel()
    assert opening_is_identity(holes, block_size)
    # Not a union of bigger blocks than asked for: some pixel is covered by no 9x9 square.
    if min(size) > 8:
        assert not opening_is_identity(holes, block_size + 2)


@pytest.mark.parametrize("size,block_size", [((32, 32), 7), ((16, 16), 3)])
def test_share_of_mixed_features_is_close_to_gamma(size, block_size):
    shares = []
    for gamma in (0.25, 0.5, 0.75):
        holes = block_holes(1000, (1, *size), gamma=gamma, block_size=block_size, generator=gen(2), device=CPU)
        shares.append(float(holes.float().mean()))
        if gamma <= 0.5:
            # Loose: overlapping blocks and clipping at the border make it approximate.
            assert abs(shares[-1] - gamma) < 0.06, (gamma, shares[-1])
    assert shares[0] < shares[1] < shares[2]


# -- __call__: block mixing of images --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_hard_call_swaps_blocks_shared_by_the_channels(mode):
    images, labels, values = constant_images(16, 3, 32, 32)
    mixer = lmix.create_mixer("patchup", patchup_type="hard", mode=mode, seed=3)
    params = mixer.sample(16, (32, 32), device=CPU, generator=gen(4))
    assert params.mask.dtype == torch.bool and params.mask.shape == ((16 if mode == "sample" else 1), 1, 32, 32)
    assert params.mix_lam is None
    assert opening_is_identity(~params.mask, 7)
    batch = mixer(images, labels, generator=gen(4))
    assert torch.equal(batch.images, torch.where(params.mask, images, images[params.perm]))
    assert torch.equal(batch.lam, params.mask.float().mean(dim=(1, 2, 3)).expand(16))
    assert torch.equal(batch.labels_b, labels[params.perm])
    assert (len(set(batch.lam.tolist())) == 1) == (mode == "batch")


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_soft_call_interpolates_inside_the_blocks(mode):
    x = torch.rand(12, 3, 16, 16, generator=gen(5))
    y = torch.arange(12)
    mixer = lmix.create_mixer("patchup", patchup_type="soft", mode=mode, seed=0)
    params = mixer.sample(12, (16, 16), device=CPU, generator=gen(6))
    m = params.mix_lam
    assert m.shape == (12,) and bool(((m > 0) & (m < 1)).all())
    assert (len(set(m.tolist())) == 1) == (mode == "batch")
    batch = mixer(x, y, generator=gen(6))
    partner = x[params.perm]
    expected = torch.where(params.mask, x, m.view(-1, 1, 1, 1) * x + (1 - m.view(-1, 1, 1, 1)) * partner)
    assert torch.allclose(batch.images, expected, atol=1e-6)
    u = params.mask.float().mean(dim=(1, 2, 3))
    assert torch.allclose(batch.lam, u + m * (1 - u), atol=1e-6)
    # The label share is each image's share: its mean is lam * own + (1 - lam) * partner's.
    c = constant_images(12, 3, 16, 16)
    out = mixer(c[0], c[1], generator=gen(6))
    want = out.lam.double()[:, None] * c[2] + (1 - out.lam.double()[:, None]) * c[2][out.labels_b]
    assert torch.allclose(out.images.double().mean(dim=(2, 3)), want, atol=1e-5)


def test_soft_weights_follow_beta_alpha():
    from scipy import stats

    mixer = lmix.create_mixer("patchup", patchup_type="soft", mode="sample", alpha=2.0)
    m = mixer.sample(4000, (4, 4), device=CPU, generator=gen(7)).mix_lam.double().numpy()
    assert stats.kstest(m, stats.beta(2.0, 2.0).cdf).pvalue > 1e-3


# -- forward_loss: the layer draw, patchup_prob -----------------------------------------------------


def test_patchup_prob_zero_never_mixes_and_one_always_mixes():
    never = lmix.create_mixer("patchup", patchup_prob=0.0, seed=1)
    always = lmix.create_mixer("patchup", patchup_prob=1.0, seed=1)
    for _ in range(200):
        assert not never.plan(8, 5, device=CPU).mixed
        assert always.plan(8, 5, device=CPU).mixed
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES).eval()
    x, y = torch.rand(6, 3, 8, 8, generator=gen(8)), torch.arange(6)
    logits, loss, batch = never.forward_loss(model, x, y, label_smoothing=0.1)
    assert torch.allclose(loss, F.cross_entropy(model(x), y, label_smoothing=0.1))
    assert torch.equal(batch.lam, torch.ones(6)) and torch.equal(batch.labels_b, y) and batch.images is x


def test_patchup_prob_is_the_mixing_frequency():
    mixer = lmix.create_mixer("patchup", patchup_prob=0.7, seed=2)
    n = 2000
    mixed = sum(mixer.plan(4, 5, device=CPU).mixed for _ in range(n))
    assert abs(mixed - 0.7 * n) < 5 * math.sqrt(n * 0.7 * 0.3)


@pytest.mark.parametrize("max_layer,points,expected", [(None, 5, 5), (2, 5, 3), (None, 3, 3), (7, 4, 4), (0, 5, 1)])
def test_layer_draw_is_uniform_over_the_hook_points(max_layer, points, expected):
    mixer = lmix.create_mixer("patchup", patchup_prob=1.0, max_layer=max_layer, seed=3)
    n = 1500
    counts = np.bincount([mixer.plan(4, points, device=CPU).layer for _ in range(n)], minlength=points)
    assert counts[expected:].sum() == 0
    p = 1 / expected
    assert all(abs(c - n * p) <= 5 * math.sqrt(n * p * (1 - p)) for c in counts[:expected]), counts


def test_soft_weight_is_drawn_except_for_cutmix_at_the_input():
    soft = lmix.create_mixer("patchup", patchup_type="soft", patchup_prob=1.0, max_layer=None, seed=4)
    for _ in range(50):
        plan = soft.plan(4, 5, device=CPU)
        assert (plan.mix_lam is None) == (plan.layer == 0)
    hard = lmix.create_mixer("patchup", patchup_type="hard", patchup_prob=1.0, max_layer=None, seed=4)
    assert all(hard.plan(4, 5, device=CPU).mix_lam is None for _ in range(20))


# -- forward_loss: mixing, targets and loss ----------------------------------------------------------


def reference_loss(logits, y, y_b, u, m, w, smoothing):
    """The reference's three terms (main.py, train(), 'patchup'), with explicit soft targets and
    cross-entropy in place of BCE: w_a u CE(t_a) + (1 - u) CE(t_b) + w_b CE(t_rw)."""
    a = F.one_hot(y, NUM_CLASSES).double()
    b = F.one_hot(y_b, NUM_CLASSES).double()
    u, m = u.double()[:, None], m.double()[:, None]
    t_a = a
    t_b = m * a + (1 - m) * b
    t_rw = u * a + m * (1 - u) * a + (1 - m) * (1 - u) * b

    def ce(t):
        t = (1 - smoothing) * t + smoothing / NUM_CLASSES
        return -(t * F.log_softmax(logits.double(), dim=1)).sum(1)

    return (w[0] * u[:, 0] * ce(t_a) + (1 - u[:, 0]) * ce(t_b) + w[1] * ce(t_rw)).mean()


CASES = [
    # (patchup_type, layer, input_mix, mode, loss_weights)
    ("hard", 1, "cutmix", "batch", (1.0, 1.0)),
    ("hard", 3, "cutmix", "sample", (1.0, 1.0)),
    ("soft", 2, "cutmix", "batch", (1.0, 1.0)),
    ("soft", 4, "cutmix", "sample", (0.5, 2.0)),
    ("hard", 0, "cutmix", "batch", (1.0, 1.0)),
    ("soft", 0, "cutmix", "sample", (1.0, 1.0)),
    ("soft", 0, "patchup", "batch", (1.0, 1.0)),
    ("hard", 0, "patchup", "sample", (0.0, 1.0)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_forward_loss_is_the_reference_formula(case, smoothing):
    patchup_type, layer, input_mix, mode, weights = case
    model = lmix.create_model("preact_resnet_tiny", num_classes=NUM_CLASSES).eval()
    b = 8
    x = torch.rand(b, 3, 16, 16, generator=gen(9))
    y = torch.randint(0, NUM_CLASSES, (b,), generator=gen(10))
    mixer = lmix.create_mixer(
        "patchup", patchup_type=patchup_type, input_mix=input_mix, mode=mode, loss_weights=weights, seed=0
    )
    soft = patchup_type == "soft" and not (layer == 0 and input_mix == "cutmix")
    perm = torch.randperm(b, generator=gen(11))
    m = torch.rand(b if mode == "sample" else 1, generator=gen(12)).expand(b) if soft else None
    plan = PatchUpPlan(True, layer, perm, m)
    logits, loss, batch = mixer.forward_loss(model, x, y, label_smoothing=smoothing, generator=gen(13), plan=plan)

    # Replay the same draws through the hook, recording what went in and out of it.
    hook, record = mixer.hook(plan, generator=gen(13))
    seen = {}

    def spy(h):
        seen["in"], seen["out"] = h, hook(h)
        return seen["out"]

    assert torch.equal(model(x, hook=spy, hook_at=layer), logits)
    h, out, holes, u = seen["in"], seen["out"], record["holes"], record["unchanged"]
    assert holes.dtype == torch.bool and out.shape == h.shape
    c = h.shape[1]
    if layer == 0:
        assert holes.shape[1] == 1  # images: one pattern for all channels
    else:
        assert holes.shape[1] == c  # one pattern per channel
        if layer < 3:  # maps larger than the blocks (at 2x2 one block covers all: every channel alike)
            assert not bool((holes == holes[:, :1]).all())
    assert holes.shape[0] == (b if mode == "sample" else 1)
    assert torch.allclose(u, 1 - holes.float().mean(dim=(1, 2, 3)).expand(b))
    if layer == 0 and input_mix == "cutmix":
        # CutMix: the holes are one box per image (per batch in batch mode).
        for i in range(holes.shape[0]):
            rows, cols = holes[i, 0].any(1).nonzero(), holes[i, 0].any(0).nonzero()
            assert int(holes[i].sum()) == len(rows) * len(cols)
    else:
        assert opening_is_identity(holes, 7)
    mm = torch.zeros(b) if m is None else m
    partner_part = mm.view(-1, 1, 1, 1) * h + (1 - mm.view(-1, 1, 1, 1)) * h[perm]
    assert torch.allclose(out, torch.where(holes, partner_part, h), atol=1e-6)

    expected = reference_loss(logits.detach(), y, y[perm], u, mm, weights, smoothing)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert torch.allclose(loss.double(), expected, atol=1e-5), (loss, expected)
    # The train-accuracy batch: share of y in the combined target.
    c_a = weights[0] * u + (1 - u) * mm + weights[1] * (u + mm * (1 - u))
    c_b = (1 + weights[1]) * (1 - u) * (1 - mm)
    assert torch.allclose(batch.lam, c_a / (c_a + c_b), atol=1e-6)
    assert torch.equal(batch.labels_a, y) and torch.equal(batch.labels_b, y[perm])
    assert torch.equal(batch.images, out if layer == 0 else x)


def test_default_loss_is_twice_the_cross_entropy_with_the_reweighted_targets():
    """With loss_weights (1, 1) the reference's three terms add up to 2 CE(out, t_rw)."""
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES).eval()
    x, y = torch.rand(6, 3, 8, 8, generator=gen(14)), torch.arange(6)
    for patchup_type in ("hard", "soft"):
        mixer = lmix.create_mixer("patchup", patchup_type=patchup_type, patchup_prob=1.0, max_layer=None, seed=5)
        for _ in range(6):
            logits, loss, batch = mixer.forward_loss(model, x, y)
            target = batch.soft_targets(NUM_CLASSES)
            assert torch.allclose(loss, 2 * F.cross_entropy(logits, target), atol=1e-5)
            assert torch.allclose(loss, 2 * lmix.mixed_cross_entropy(logits, batch), atol=1e-5)


def reference_bce_loss(logits, y, y_b, u, m, w):
    """The reference's loss itself (main.py, train(), 'patchup'): BCELoss(softmax(out), t) for each
    of the three targets, u one number per batch (mode='batch')."""
    p = F.softmax(logits.double(), dim=1)
    a, b = F.one_hot(y, NUM_CLASSES).double(), F.one_hot(y_b, NUM_CLASSES).double()
    m = m.double()[:, None]
    t_b = m * a + (1 - m) * b
    t_rw = u * a + m * (1 - u) * a + (1 - m) * (1 - u) * b
    bce = torch.nn.BCELoss()
    return w[0] * bce(p, a) * u + bce(p, t_b) * (1 - u) + w[1] * bce(p, t_rw)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0)])
@pytest.mark.parametrize("patchup_type", ["hard", "soft"])
def test_loss_scale_matches_the_reference_relative_weighting(weights, patchup_type):
    """Loss scale (docs/method.md, PatchUp): relative to one mixed loss with the batch's combined target (what a Mixup/CutMix
    batch and an unmixed batch are trained with), a PatchUp batch weighs W = w_a u + (1 - u) + w_b
    (2 with the default weights) under the reference's BCE(softmax) loss, in value and gradient;
    lmix's default loss_scale='reference' gives the same W with cross-entropy, 'single' gives 1."""
    torch.manual_seed(0)
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES, width=4)
    params = list(model.parameters())
    x, y = torch.rand(8, 3, 16, 16, generator=gen(30)), torch.randint(0, NUM_CLASSES, (8,), generator=gen(31))

    def gnorm(loss):
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        return torch.sqrt(sum((g.double() ** 2).sum() for g in grads))

    ref_mixer = lmix.create_mixer("patchup", patchup_type=patchup_type, loss_weights=weights, seed=0)
    one_mixer = lmix.create_mixer(
        "patchup", patchup_type=patchup_type, loss_weights=weights, loss_scale="single", seed=0
    )
    for layer in (0, 1, 2):
        m = torch.full((8,), 0.3) if patchup_type == "soft" and layer > 0 else None
        plan = PatchUpPlan(True, layer, torch.randperm(8, generator=gen(32 + layer)), m)
        logits, loss, batch = ref_mixer.forward_loss(model, x, y, generator=gen(40 + layer), plan=plan)
        _, loss_one, batch_one = one_mixer.forward_loss(model, x, y, generator=gen(40 + layer), plan=plan)
        assert torch.equal(batch.lam, batch_one.lam)
        hook, record = ref_mixer.hook(plan, generator=gen(40 + layer))
        model(x, hook=hook, hook_at=layer)
        u = float(record["unchanged"][0])
        weight = weights[0] * u + (1 - u) + weights[1]
        mm = torch.zeros(8) if m is None else m
        ref = reference_bce_loss(logits, y, y[plan.perm], u, mm, weights)
        lam = batch.lam.double()[:, None]
        target = lam * F.one_hot(y, NUM_CLASSES).double() + (1 - lam) * F.one_hot(y[plan.perm], NUM_CLASSES).double()
        one_bce = torch.nn.BCELoss()(F.softmax(logits.double(), dim=1), target)
        one_ce = lmix.mixed_cross_entropy(logits, batch)
        # The reference's relative weight, in value and in gradient ...
        assert torch.allclose(ref / one_bce, torch.tensor(weight, dtype=torch.float64), rtol=1e-6)
        assert torch.allclose(gnorm(ref) / gnorm(one_bce), torch.tensor(weight, dtype=torch.float64), rtol=1e-5)
        # ... is lmix's with loss_scale='reference' (the default) ...
        assert torch.allclose(loss.double() / one_ce.double(), torch.tensor(weight, dtype=torch.float64), rtol=1e-5)
        assert torch.allclose(gnorm(loss) / gnorm(one_ce), torch.tensor(weight, dtype=torch.float64), rtol=1e-4)
        # ... and 'single' is one mixed cross-entropy.
        assert torch.allclose(loss_one, one_ce, rtol=1e-5)
        assert torch.allclose(gnorm(loss_one) / gnorm(one_ce), torch.tensor(1.0, dtype=torch.float64), rtol=1e-4)


def test_loss_scale_single_leaves_unmixed_batches_alone():
    mixer = lmix.create_mixer("patchup", patchup_prob=0.0, loss_scale="single", seed=0)
    assert mixer.loss_scale == "single" and "loss_scale='single'" in repr(mixer)
    assert "loss_scale" not in repr(lmix.create_mixer("patchup"))
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES).eval()
    x, y = torch.rand(4, 3, 8, 8, generator=gen(50)), torch.arange(4)
    _, loss, _ = mixer.forward_loss(model, x, y)
    assert torch.allclose(loss, F.cross_entropy(model(x), y))


# PatchUp mixes 2-D feature maps: every registered image model. The registry entry names the input a
# model takes (model_info would build every model to count its parameters).
IMAGE_MODELS = sorted(n for n in lmix.list_models() if getattr(model_registry._REGISTRY[n], "spatial_dims", 2) == 2)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_works_with_every_registered_model(name):
    model = lmix.create_model(name, num_classes=NUM_CLASSES)
    points = model.num_hook_points
    x = torch.rand(2, 3, 8, 8, generator=gen(15))
    y = torch.tensor([1, 7])
    for patchup_type in ("hard", "soft"):
        mixer = lmix.create_mixer("patchup", patchup_type=patchup_type, seed=6)
        for layer in range(points):
            if name not in SMALL_MODELS and patchup_type == "soft" and layer % 2:
                continue  # the big models: every hook point once, alternating the variant
            m = torch.full((2,), 0.3) if patchup_type == "soft" and layer > 0 else None
            plan = PatchUpPlan(True, layer, torch.tensor([1, 0]), m)
            if name in SMALL_MODELS:
                model.zero_grad()
                logits, loss, batch = mixer.forward_loss(model, x, y, plan=plan)
                loss.backward()
                grads = [p.grad for p in model.parameters()]
                assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
            else:
                with torch.no_grad():
                    logits, loss, batch = mixer.forward_loss(model, x, y, plan=plan)
            assert logits.shape == (2, NUM_CLASSES) and bool(torch.isfinite(loss))
            assert batch.lam.shape == (2,) and bool(((batch.lam >= 0) & (batch.lam <= 1)).all())


class _Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the model under ``.module``, kwargs forwarded."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_wrapped_model_autocast_and_the_trainer_call():
    model = _Wrapper(lmix.create_model("simple_cnn", num_classes=NUM_CLASSES))
    mixer = lmix.create_mixer("patchup", patchup_prob=1.0, max_layer=None, seed=7)
    x, y = torch.rand(4, 3, 8, 8, generator=gen(16)), torch.tensor([0, 3, 3, 9])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss, batch = mixer.forward_loss(model, x, y, label_smoothing=0.1)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert hasattr(mixer, "forward_loss")  # how the trainer recognises hidden-layer mixing


def test_forward_loss_reproducible_resumable_and_global_rng_untouched():
    model = lmix.create_model("simple_cnn", num_classes=NUM_CLASSES).eval()
    x, y = torch.rand(5, 3, 8, 8, generator=gen(17)), torch.arange(5)
    torch.manual_seed(99)
    random.seed(99)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()

    def run(mixer, n=8):
        return [mixer.forward_loss(model, x, y, label_smoothing=0.0)[1].detach() for _ in range(n)]

    a, b = lmix.create_mixer("patchup", seed=8), lmix.create_mixer("patchup", seed=8)
    la, lb = run(a), run(b)
    assert all(torch.equal(p, q) for p, q in zip(la, lb))
    assert len({float(v) for v in la}) > 2  # mixed and unmixed batches, different layers
    state = a.state_dict()
    expected = run(a, 4)
    c = lmix.create_mixer("patchup", seed=9)
    c.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(run(c, 4), expected))
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])


def test_choice_with_patchup_runs_hidden_mixing_and_input_mixing():
    """``lmix+patchup``-style choices keep PatchUp's hidden-layer pass (via forward_loss)."""
    from lmix.mixing import MixChoice, Mixup, mixed_cross_entropy
    from lmix.models import create_model

    torch.manual_seed(0)
    model = create_model("simple_cnn", num_classes=10, width=8)
    x = torch.randn(6, 3, 16, 16)
    y = torch.arange(6)
    choice = MixChoice([PatchUp(patchup_prob=1.0, seed=1), Mixup(seed=2)], schedule="alternate", seed=0)
    assert choice.uses_model and not MixChoice([Mixup(), Mixup()]).uses_model
    calls = []
    real = PatchUp.forward_loss

    def spy(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    PatchUp.forward_loss = spy
    try:
        _, loss_a, _ = choice.forward_loss(model, x, y)
        logits_b, loss_b, batch_b = choice.forward_loss(model, x, y)
    finally:
        PatchUp.forward_loss = real
    assert calls == [1]  # first batch: PatchUp's own pass; second: Mixup on the input
    assert torch.isfinite(loss_a)
    assert torch.allclose(loss_b, mixed_cross_entropy(logits_b, batch_b))
    assert not torch.all(batch_b.lam == 1)
