"""Mixers, generated from the registry: what they do to images and labels, modes, randomness,
shapes/dtypes/devices, autograd, and the method-specific guarantees (CutMix, Cutout, Mixup, LMix)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

import lmix
from lmix.mixing.masks import sharpen
from tests.mixing._util import (
    bounding_box,
    config_id,
    constant_images,
    kept_masks,
    kind_of,
    mixer_configs,
    mixing_names,
    tolerance,
)

CONFIGS = mixer_configs()
ALL_CONFIGS = mixer_configs(combinations=True)
SAMPLE_MODE = [(name, {"mode": "sample"}) for name in mixing_names()]
BATCH_MODE = [(name, {"mode": "batch"}) for name in mixing_names()]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(config, **extra) -> lmix.Mixer:
    name, params = config
    return lmix.create_mixer(name, **params, **extra)


def mixer_kind(mixer: lmix.Mixer) -> str | None:
    return None if isinstance(mixer, lmix.MixChoice) else kind_of(mixer)


def test_registry_lists_the_documented_methods():
    names = lmix.list_mixers()
    assert {"lmix", "fmix", "mixup", "cutmix", "cutout", "none"} <= set(names)
    for name in names:
        mixer = lmix.create_mixer(name, seed=0)
        assert isinstance(mixer, lmix.Mixer) and mixer.name == name
    assert isinstance(lmix.create_mixer("lmix+mixup"), lmix.MixChoice)
    expected = {
        "lmix": "mask",
        "fmix": "mask",
        "cutmix": "mask",
        "mixup": "blend",
        "cutout": "erase",
        "none": "identity",
    }
    for name, kind in expected.items():
        assert kind_of(lmix.create_mixer(name, seed=0)) == kind, name


def check_mixed_batch(batch, images, labels, values, kind, *, dtype, device):
    """Structural checks, and what each kind of mixer does to ``constant_images``."""
    b, c, h, w = images.shape
    assert batch.images.shape == (b, c, h, w)
    assert batch.images.dtype == dtype and batch.images.device.type == torch.device(device).type
    for lab in (batch.labels_a, batch.labels_b):
        assert lab.shape == (b,) and lab.dtype == labels.dtype and lab.device == labels.device
    assert torch.equal(batch.labels_a, labels)
    assert sorted(batch.labels_b.tolist()) == list(range(b)) or kind == "erase"
    assert batch.lam.shape == (b,) and batch.lam.dtype == torch.float32
    assert bool(torch.isfinite(batch.lam).all()) and bool(((batch.lam >= 0) & (batch.lam <= 1)).all())
    out = batch.images.detach().double().cpu()
    lam = batch.lam.double().cpu()[:, None]
    own = values
    partner = values[batch.labels_b.cpu()]
    tol = tolerance(dtype) * 20
    if kind == "erase":
        assert torch.equal(batch.labels_b, labels) and bool((batch.lam == 1).all())
        assert bool(((out == own[:, :, None, None]) | (out == 0)).all())
        return
    # Every kind that mixes: each image's mean is lam * own + (1 - lam) * partner.
    expected_mean = lam * own + (1 - lam) * partner
    assert torch.allclose(out.mean(dim=(2, 3)), expected_mean, atol=tol, rtol=0)
    if kind == "identity":
        assert torch.equal(batch.images, images) and bool((batch.lam == 1).all())
    elif kind == "blend":
        assert torch.allclose(out, expected_mean[:, :, None, None].expand_as(out), atol=tol, rtol=0)
    elif kind == "mask":
        is_own = out == own[:, :, None, None]
        assert bool((is_own | (out == partner[:, :, None, None])).all())
        kept, valid = kept_masks(out, values, batch.labels_b)
        area = kept.double().mean(dim=(1, 2))
        assert torch.allclose(area[valid], lam[valid, 0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=config_id)
@pytest.mark.parametrize("size", [(2, 2), (32, 32), (28, 20)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("b", [1, 2, 7, 16])
@pytest.mark.parametrize("c", [1, 3])
def test_every_shape_dtype_device_with_autograd(config, size, b, c, dtype, device):
    mixer = make(config, seed=b * 100 + size[1])
    images, labels, values = constant_images(b, c, *size, dtype=dtype, device=device)
    images.requires_grad_(True)
    batch = mixer(images, labels)
    kind = mixer_kind(mixer)
    check_mixed_batch(batch, images.detach(), labels, values, kind, dtype=dtype, device=device)
    assert batch.images.requires_grad
    batch.images.float().sum().backward()
    grad = images.grad
    assert grad is not None and grad.shape == images.shape and grad.dtype == dtype
    assert bool(torch.isfinite(grad).all())
    if kind == "erase":
        assert bool(((grad == 0) | (grad == 1)).all())
    else:
        # Each output pixel is a convex combination of input pixels: gradients sum to the pixel count.
        assert abs(float(grad.double().sum()) - images.numel()) <= tolerance(dtype) * 4 * images.numel()


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_float64_images_and_int32_labels(config):
    images, labels, values = constant_images(5, 2, 9, 7, dtype=torch.float64)
    labels = labels.to(torch.int32)
    batch = make(config, seed=1)(images, labels)
    check_mixed_batch(batch, images, labels, values, mixer_kind(make(config)), dtype=torch.float64, device="cpu")


@pytest.mark.parametrize("name", [n for n in mixing_names() if kind_of(lmix.create_mixer(n)) == "mask"])
@pytest.mark.parametrize("mode", ["sample", "batch"])
def test_lam_is_the_mask_mean_read_from_the_output(name, mode):
    images, labels, values = constant_images(16, 3, 24, 20)
    batch = lmix.create_mixer(name, mode=mode, seed=3)(images, labels)
    kept, valid = kept_masks(batch.images, values, batch.labels_b)
    assert int(valid.sum()) >= 8
    area = kept.float().mean(dim=(1, 2))
    assert torch.allclose(area[valid], batch.lam[valid], atol=1e-7, rtol=0)
    # The same generator state gives the same mask through sample(): apply() uses exactly it.
    mixer = lmix.create_mixer(name, mode=mode)
    params = mixer.sample(16, (24, 20), device=torch.device("cpu"), generator=gen(4))
    batch = mixer(images, labels, generator=gen(4))
    assert torch.equal(batch.images, torch.where(params.mask, images, images[params.perm]))
    assert torch.equal(batch.lam, params.mask.float().mean(dim=(1, 2, 3)).expand(16))


@pytest.mark.parametrize("mode", ["sample", "batch"])
@pytest.mark.parametrize("dtype_", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_mixup_output_is_the_convex_combination(mode, dtype_):
    x = torch.rand(9, 3, 8, 6, generator=gen(5)).to(dtype_)
    labels = torch.arange(9)
    batch = lmix.create_mixer("mixup", alpha=0.7, mode=mode, seed=6)(x, labels)
    perm = batch.labels_b
    lam = batch.lam.view(-1, 1, 1, 1)
    # lam is the weight actually applied: representable in the image dtype.
    assert torch.equal(batch.lam.to(dtype_).float(), batch.lam)
    expected = lam * x.double() + (1 - lam) * x[perm].double()
    assert torch.allclose(batch.images.double(), expected, atol=tolerance(dtype_) * 2, rtol=0)
    assert not torch.equal(perm, torch.arange(9))


@pytest.mark.parametrize("name", ["cutout", "none"])
def test_unmixing_methods_report_lam_one_and_keep_labels(name):
    images, labels, _ = constant_images(6, 3, 10, 10)
    batch = lmix.create_mixer(name, seed=0)(images, labels)
    assert torch.equal(batch.lam, torch.ones(6)) and torch.equal(batch.labels_b, labels)


@pytest.mark.parametrize("config", SAMPLE_MODE, ids=config_id)
def test_per_sample_mode_draws_per_sample(config):
    images, labels, values = constant_images(16, 1, 32, 32)
    mixer = make(config, seed=7)
    batch = mixer(images, labels)
    assert len(set(batch.lam.tolist())) >= 12, batch.lam
    assert not torch.equal(batch.labels_b, labels)
    assert sorted(batch.labels_b.tolist()) == list(range(16))
    assert not torch.equal(mixer(images, labels).labels_b, batch.labels_b)  # a new partner draw per call
    params = mixer.sample(16, (32, 32), device=torch.device("cpu"), generator=gen(8))
    if params.mask is not None:
        assert params.mask.shape == (16, 1, 32, 32)
        flat = params.mask.reshape(16, -1)
        assert len({tuple(row.tolist()) for row in flat}) == 16
        kept, valid = kept_masks(batch.images, values, batch.labels_b)
        assert len({tuple(m.flatten().tolist()) for m in kept[valid]}) == int(valid.sum())


@pytest.mark.parametrize("config", BATCH_MODE, ids=config_id)
def test_per_batch_mode_draws_one_lam_and_one_mask(config):
    images, labels, values = constant_images(16, 1, 32, 32)
    mixer = make(config, seed=9)
    batch = mixer(images, labels)
    assert len(set(batch.lam.tolist())) == 1
    assert sorted(batch.labels_b.tolist()) == list(range(16))
    params = mixer.sample(16, (32, 32), device=torch.device("cpu"), generator=gen(10))
    if params.mask is not None:
        assert params.mask.shape[0] == 1 or bool((params.mask == params.mask[:1]).all())
        kept, valid = kept_masks(batch.images, values, batch.labels_b)
        assert bool((kept[valid] == kept[valid][:1]).all())
    lams = {float(mixer(images, labels).lam[0]) for _ in range(5)}
    assert len(lams) > 1  # but a new one per batch


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=config_id)
def test_randomness_comes_only_from_the_generator(config):
    x = torch.rand(8, 3, 12, 10, generator=gen(11))
    y = torch.arange(8)
    a = make(config, seed=1)(x, y, generator=gen(12))
    b = make(config, seed=2)(x, y, generator=gen(12))  # the mixer's own seed plays no part
    for field in ("images", "labels_a", "labels_b", "lam"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=config_id)
def test_seed_makes_the_sequence_reproducible(config):
    x = torch.rand(8, 3, 12, 10, generator=gen(13))
    y = torch.arange(8)
    m1, m2, m3 = make(config, seed=5), make(config, seed=5), make(config, seed=6)
    outs = [[m(x, y) for _ in range(3)] for m in (m1, m2, m3)]
    for b1, b2 in zip(outs[0], outs[1]):
        assert torch.equal(b1.images, b2.images) and torch.equal(b1.lam, b2.lam)
        assert torch.equal(b1.labels_b, b2.labels_b)
    if mixer_kind(m1) != "identity":
        assert any(not torch.equal(b1.images, b3.images) for b1, b3 in zip(outs[0], outs[2]))
        assert not torch.equal(outs[0][0].images, outs[0][1].images)
    assert m1.generator_for("cpu") is m1.generator_for(torch.device("cpu"))


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=config_id)
def test_global_rng_is_untouched(config):
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    x = torch.rand(6, 3, 9, 8, generator=gen(14))
    y = torch.arange(6)
    mixer = make(config)  # seed=None: seeded non-deterministically, but not from the global RNG
    mixer(x, y)
    mixer(x, y, generator=gen(15))
    mixer.load_state_dict(mixer.state_dict())
    lmix.fourier_masks(torch.rand(3, generator=gen(16)), (8, 8))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    np_now = np.random.get_state()
    assert np_now[0] == np_state[0] and np.array_equal(np_now[1], np_state[1]) and np_now[2:] == np_state[2:]
    if torch.cuda.is_available():
        cuda_state = torch.cuda.get_rng_state()
        mixer(x.cuda(), y.cuda())
        assert torch.equal(torch.cuda.get_rng_state(), cuda_state)


def test_unseeded_mixers_differ():
    x = torch.rand(8, 1, 16, 16, generator=gen(17))
    y = torch.arange(8)
    assert not torch.equal(lmix.create_mixer("lmix")(x, y).images, lmix.create_mixer("lmix")(x, y).images)


@pytest.mark.parametrize("mode", ["sample", "batch"])
@pytest.mark.parametrize("shape", [(16, 3, 32, 32), (7, 1, 28, 20), (1, 3, 2, 5)], ids=str)
@pytest.mark.parametrize("alpha,decay", [(1.0, 3.0), (0.4, 2.0)])
def test_lmix_with_k0_is_fmix(mode, shape, alpha, decay):
    x = torch.rand(shape, generator=gen(18))
    y = torch.arange(shape[0])
    a = lmix.create_mixer("lmix", k=0.0, alpha=alpha, decay=decay, mode=mode)(x, y, generator=gen(19))
    b = lmix.create_mixer("fmix", alpha=alpha, decay=decay, mode=mode)(x, y, generator=gen(19))
    for field in ("images", "labels_a", "labels_b", "lam"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    # Same with the mixers' own generators from equal seeds.
    a = lmix.create_mixer("lmix", k=0.0, alpha=alpha, decay=decay, mode=mode, seed=4)(x, y)
    b = lmix.create_mixer("fmix", alpha=alpha, decay=decay, mode=mode, seed=4)(x, y)
    assert torch.equal(a.images, b.images) and torch.equal(a.lam, b.lam)


def test_lmix_k_changes_the_masks():
    x = torch.rand(8, 1, 32, 32, generator=gen(20))
    y = torch.arange(8)
    a = lmix.create_mixer("lmix", k=0.0)(x, y, generator=gen(21))
    b = lmix.create_mixer("lmix", k=4.0)(x, y, generator=gen(21))
    assert torch.equal(a.labels_b, b.labels_b)
    assert not torch.equal(a.images, b.images)


def test_lmix_image_sharpening():
    x = torch.rand(6, 3, 16, 12, generator=gen(22))
    y = torch.arange(6)
    plain = lmix.create_mixer("lmix", image_k=0.0)(x, y, generator=gen(23))
    sharp = lmix.create_mixer("lmix", image_k=1.5)(x, y, generator=gen(23))
    assert torch.equal(plain.lam, sharp.lam) and torch.equal(plain.labels_b, sharp.labels_b)
    assert torch.allclose(sharp.images, sharpen(plain.images, decay=3.0, k=1.5), atol=1e-6)
    assert not torch.allclose(sharp.images, plain.images, atol=1e-3)


def test_lmix_lam_follows_beta_through_the_mask_area():
    from scipy import stats

    images, labels, _ = constant_images(3000, 1, 32, 32)
    for alpha in (1.0, 2.0):
        lam = lmix.create_mixer("lmix", alpha=alpha)(images, labels, generator=gen(24)).lam.double().numpy()
        # The area is round(Beta * 1024) / 1024; undo the rounding by a uniform jitter of one bin.
        jitter = np.random.default_rng(25).uniform(-0.5, 0.5, lam.shape) / 1024
        assert stats.kstest(np.clip(lam + jitter, 0, 1), stats.beta(alpha, alpha).cdf).pvalue > 1e-3


# -- CutMix ---------------------------------------------------------------------------------------


def partner_regions(batch, values):
    kept, valid = kept_masks(batch.images, values, batch.labels_b)
    return ~kept, valid


def test_cutmix_beta_box_is_a_clipped_rectangle_whose_area_is_lam():
    h, w = 24, 20
    images, labels, values = constant_images(64, 2, h, w)
    batch = lmix.create_mixer("cutmix", alpha=1.0, seed=26)(images, labels)
    region, valid = partner_regions(batch, values)
    assert int(valid.sum()) > 50
    clipped = unclipped = 0
    for i in valid.nonzero().flatten().tolist():
        count = int(region[i].sum())
        assert abs((1 - float(batch.lam[i])) * h * w - count) < 1e-3
        if count == 0:
            continue
        y1, y2, x1, x2 = bounding_box(region[i])
        assert (y2 - y1) * (x2 - x1) == count  # a full rectangle
        if y1 > 0 and x1 > 0 and y2 < h and x2 < w:
            unclipped += 1
            # Not clipped: sides int(H r) and int(W r) for one ratio r = sqrt(1 - lam0).
            assert abs((y2 - y1) / h - (x2 - x1) / w) < 1 / min(h, w)
        else:
            clipped += 1
    assert clipped > 0 and unclipped > 0


@pytest.mark.parametrize("box,size", [((16, 16), (40, 40)), ((5, 9), (12, 30)), (7, (9, 11))], ids=str)
def test_cutmix_fixed_box(box, size):
    h, w = size
    bh, bw = (box, box) if isinstance(box, int) else box
    images, labels, values = constant_images(64, 1, h, w)
    batch = lmix.create_mixer("cutmix", size=box, seed=27)(images, labels)
    region, valid = partner_regions(batch, values)
    inside = clipped = 0
    for i in valid.nonzero().flatten().tolist():
        count = int(region[i].sum())
        assert 0 < count <= bh * bw
        assert abs((1 - float(batch.lam[i])) * h * w - count) < 1e-3
        y1, y2, x1, x2 = bounding_box(region[i])
        assert (y2 - y1) * (x2 - x1) == count and y2 - y1 <= bh and x2 - x1 <= bw
        if y1 > 0 and x1 > 0 and y2 < h and x2 < w:
            inside += 1
            assert (y2 - y1, x2 - x1) == (bh, bw) and count == bh * bw
        if count < bh * bw:
            clipped += 1
            assert y1 == 0 or x1 == 0 or y2 == h or x2 == w
    assert inside > 0 and clipped > 0


def test_cutmix_box_larger_than_the_image_takes_everything():
    images, labels, values = constant_images(5, 1, 8, 8)
    batch = lmix.create_mixer("cutmix", size=(40, 40), seed=0)(images, labels)
    assert torch.equal(batch.lam, torch.zeros(5))
    assert torch.equal(batch.images, images[batch.labels_b])


def test_cutmix_batch_mode_uses_one_box():
    images, labels, values = constant_images(16, 1, 20, 20)
    batch = lmix.create_mixer("cutmix", size=(6, 6), mode="batch", seed=28)(images, labels)
    region, valid = partner_regions(batch, values)
    assert bool((region[valid] == region[valid][:1]).all())


def rand_bbox_masks(lam0: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H, W) bool, True outside the box of clovaai/CutMix-PyTorch's ``rand_bbox`` (train.py),
    re-created per sample with its arithmetic: ``cut = int(side * sqrt(1 - lam))``, box
    ``clip(c - cut // 2)`` to ``clip(c + cut // 2)``."""
    masks = torch.ones(lam0.shape[0], h, w, dtype=torch.bool)
    for i in range(lam0.shape[0]):
        ratio = math.sqrt(1.0 - float(lam0[i]))
        cut_h, cut_w = int(h * ratio), int(w * ratio)
        y, x = int(cy[i]), int(cx[i])
        y1, y2 = min(max(y - cut_h // 2, 0), h), min(max(y + cut_h // 2, 0), h)
        x1, x2 = min(max(x - cut_w // 2, 0), w), min(max(x + cut_w // 2, 0), w)
        masks[i, y1:y2, x1:x2] = False
    return masks


@pytest.mark.parametrize("size", [(32, 32), (15, 22)])
def test_cutmix_reference_box_rounding_matches_rand_bbox(size):
    h, w = size
    mixer = lmix.create_mixer("cutmix", box_rounding="reference", seed=0)
    params = mixer.sample(200, size, device=torch.device("cpu"), generator=gen(3))
    ref = gen(3)  # the same draws: permutation, lam0, centres
    torch.randperm(200, generator=ref)
    lam0 = torch.rand(200, generator=ref)
    cy, cx = torch.randint(0, h, (200,), generator=ref), torch.randint(0, w, (200,), generator=ref)
    expected = rand_bbox_masks(lam0, cy, cx, h, w)
    assert torch.equal(params.mask[:, 0], expected)
    area = expected.double().mean(dim=(1, 2)).float()  # the reference's lam = 1 - box area / (H W)
    assert torch.allclose(params.lam, area, atol=1e-6)
    # The exact box differs from it exactly where a side is odd (one pixel more).
    exact = lmix.create_mixer("cutmix", seed=0).sample(200, size, device=torch.device("cpu"), generator=gen(3))
    assert bool((exact.lam <= params.lam).all()) and bool((exact.lam < params.lam).any())


def test_cutmix_reference_rounding_of_a_fixed_box():
    for rounding, side in (("exact", 7), ("reference", 6)):
        mixer = lmix.create_mixer("cutmix", size=7, box_rounding=rounding, seed=1)
        params = mixer.sample(32, (30, 30), device=torch.device("cpu"), generator=gen(4))
        holes = (~params.mask[:, 0]).sum(dim=(1, 2))
        assert int(holes.max()) == side * side  # unclipped boxes
    with pytest.raises(ValueError, match="box_rounding must be 'exact'.*or 'reference'"):
        lmix.create_mixer("cutmix", box_rounding="round")
    assert "box_rounding='reference'" in repr(lmix.CutMix(box_rounding="reference"))


# -- Cutout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("box,size", [(16, (40, 40)), ((3, 5), (10, 13))], ids=str)
def test_cutout_zeroes_exactly_its_clipped_square(box, size):
    h, w = size
    bh, bw = (box, box) if isinstance(box, int) else box
    images, labels, values = constant_images(64, 3, h, w)
    batch = lmix.create_mixer("cutout", size=box, seed=29)(images, labels)
    assert torch.equal(batch.labels_b, labels) and torch.equal(batch.lam, torch.ones(64))
    zero = batch.images == 0
    assert bool((zero == zero[:, :1]).all())  # same square in every channel
    assert torch.equal(batch.images[~zero], images[~zero])  # nothing else changes
    zero = zero[:, 0]
    inside = clipped = 0
    for i in range(64):
        count = int(zero[i].sum())
        assert 0 < count <= bh * bw  # the centre lies in the image, so the square is never empty
        y1, y2, x1, x2 = bounding_box(zero[i])
        assert (y2 - y1) * (x2 - x1) == count
        if y1 > 0 and x1 > 0 and y2 < h and x2 < w:
            inside += 1
            assert count == bh * bw
        if count < bh * bw:
            clipped += 1
            assert y1 == 0 or x1 == 0 or y2 == h or x2 == w
    assert inside > 0 and clipped > 0


def test_cutout_larger_than_the_image_erases_it():
    out = lmix.create_mixer("cutout", size=50, seed=0)(torch.rand(3, 1, 16, 16), torch.arange(3)).images
    assert torch.equal(out, torch.zeros(3, 1, 16, 16))
