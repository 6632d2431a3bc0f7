"""The FMix reference's options on LMix and FMix: soft mask edges (``max_soft``) and the reformulated
lam (``reformulate``), checked against the reference's algorithm (ecs-vlc/FMix ``fmix.py``:
``binarise_mask``, ``sample_lam``, ``fmix_loss``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lmix
from lmix.mixing import masks as core
from lmix.mixing.masks import fourier_noise, soft_top_mask, top_mask
from tests.mixing.test_choice_sample import component_outputs

CPU = torch.device("cpu")
SIZES = [(50,), (7, 9), (32, 32), (4, 5, 6)]
SOFTS = [0.0, 0.01, 0.1, 0.25, 0.5]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_binarise(grey: np.ndarray, lam: float, max_soft: float) -> np.ndarray:
    """ecs-vlc/FMix ``binarise_mask`` on a flat float64 array, with ``num = round(lam * N)`` (half to
    even, as lmix) for its random choice of ceil or floor; everything else as the reference."""
    idx = grey.argsort()[::-1]
    mask = grey.copy()
    num = round(lam * mask.size)
    eff_soft = max_soft
    if max_soft > lam or max_soft > (1 - lam):
        eff_soft = min(lam, 1 - lam)
    soft = int(mask.size * eff_soft)
    num_low, num_high = num - soft, num + soft
    mask[idx[:num_high]] = 1
    mask[idx[num_low:]] = 0
    mask[idx[num_low:num_high]] = np.linspace(1, 0, (num_high - num_low))
    return mask


def soft_count(lam: float, numel: int, max_soft: float) -> int:
    return int(numel * min(max_soft, lam, 1 - lam))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("max_soft", SOFTS)
def test_soft_masks_are_the_reference_binarisation(size, max_soft):
    """Every weight is the reference's (its float64 linspace, to float32 precision); the weights sum to
    exactly round(lam N), which area reports; above 1/2 are exactly the binary mask's pixels; the ramp
    has 2 soft - 2 strictly fractional pixels, soft = int(N min(max_soft, lam, 1 - lam))."""
    numel = math.prod(size)
    lam = torch.cat([torch.tensor([0.0, 1.0, 0.5, 1 / numel, 0.03, 0.97]), torch.rand(18, generator=gen(1))])
    grey = fourier_noise(lam.numel(), size, k=1.0, generator=gen(2))
    weights, area = soft_top_mask(grey, lam, max_soft)
    assert weights.shape == (lam.numel(), 1, *size) and weights.dtype == torch.float32
    binary, binary_area = top_mask(grey, lam)
    assert torch.equal(area, binary_area)
    assert torch.equal(weights > 0.5, binary) and not bool((weights == 0.5).any())
    flat = weights.flatten(1).double()
    n = torch.tensor([round(float(v) * numel) for v in lam], dtype=torch.float64)
    assert torch.equal(flat.sum(1), n)  # exact: the ramp's weights pair up to 1
    for i, value in enumerate(lam.tolist()):
        expected = reference_binarise(grey[i].flatten().double().numpy(), float(torch.tensor(value)), max_soft)
        np.testing.assert_allclose(flat[i].numpy(), expected, rtol=0, atol=1e-7)
        soft = soft_count(value, numel, max_soft)
        fractional = int(((flat[i] > 0) & (flat[i] < 1)).sum())
        assert fractional == max(2 * soft - 2, 0)
        assert int((flat[i] == 1).sum()) == int(n[i]) - soft + (soft > 0)


def test_max_soft_zero_is_the_binary_path_and_the_noise_is_shared():
    """max_soft only changes the binarisation: the same generator gives the same noise, ranks and
    areas; max_soft = 0 is the bool masks of before, bit for bit."""
    lam = torch.rand(12, generator=gen(3))
    hard, hard_area = core.fourier_top_masks(lam, (16, 12), decay=3.0, k=1.0, generator=gen(4))
    zero, zero_area = core.fourier_top_masks(lam, (16, 12), decay=3.0, k=1.0, generator=gen(4), max_soft=0.0)
    assert hard.dtype == torch.bool and torch.equal(hard, zero) and torch.equal(hard_area, zero_area)
    soft, soft_area = core.fourier_top_masks(lam, (16, 12), decay=3.0, k=1.0, generator=gen(4), max_soft=0.2)
    assert soft.dtype == torch.float32 and torch.equal(soft > 0.5, hard) and torch.equal(soft_area, hard_area)
    public = lmix.fourier_masks(lam, (16, 12), k=1.0, max_soft=0.2, generator=gen(4))
    assert torch.equal(public, soft)


def test_soft_masks_in_groups_equal_one_call(monkeypatch):
    lam = torch.rand(13, generator=gen(5))
    whole = core.fourier_top_masks(lam, (20, 20), decay=3.0, k=1.0, generator=gen(6), max_soft=0.1)
    monkeypatch.setattr(core, "MASK_CHUNK", 900)  # two masks per group
    grouped = core.fourier_top_masks(lam, (20, 20), decay=3.0, k=1.0, generator=gen(6), max_soft=0.1)
    assert torch.equal(whole[0], grouped[0]) and torch.equal(whole[1], grouped[1])


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("name", ["lmix", "fmix"])
def test_soft_masks_blend_images_and_extras(name, rank):
    """Images blend pixel by pixel with the mask's weights, exactly as a float32 lerp; lam is the
    mask's exact mean; float64 images get the float32 weights exactly, bfloat16 ones a float32 blend
    rounded once, uint8 ones the float blend rounded; floating extras blend alike, integer extras take
    the sample's value where its weight is above 1/2 (the binary mask of the same draw); replay
    carries the soft mask."""
    size = {1: (40,), 2: (12, 10), 3: (5, 6, 7)}[rank]
    mixer = lmix.create_mixer(name, max_soft=0.3, seed=7)
    images = torch.rand(8, 2, *size, generator=gen(8), dtype=torch.float64)
    labels = torch.arange(8)
    seg = torch.randint(0, 5, (8, *size), generator=gen(9))
    batch = mixer(images, labels, extras=[images[:, :1].clone(), seg])
    w = batch.params.mask
    assert w.dtype == torch.float32 and w.shape == (8, 1, *size)
    assert bool(((w > 0) & (w < 1)).any())  # some pixels really are blended
    partner = images[batch.params.perm]
    torch.testing.assert_close(batch.images, torch.lerp(partner, images, w.double()), rtol=0, atol=0)
    assert torch.equal(batch.lam, w.flatten(1).double().mean(1).float())
    assert torch.equal(batch.extras[0], batch.images[:, :1])
    assert torch.equal(batch.extras[1], torch.where(w[:, 0] > 0.5, seg, seg[batch.params.perm]))
    again = mixer(images, labels, params=batch.params)
    assert torch.equal(again.images, batch.images) and torch.equal(again.lam, batch.lam)
    xb = images.bfloat16()
    bf16 = mixer(xb, labels, params=batch.params).images
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(bf16, torch.lerp(xb[batch.params.perm].float(), xb.float(), w).bfloat16())
    u8 = (images * 255).round().to(torch.uint8)
    out = mixer.apply(u8, labels, batch.params).images
    assert out.dtype == torch.uint8
    assert torch.equal(out, torch.lerp(u8[batch.params.perm].float(), u8.float(), w).round().to(torch.uint8))


def test_soft_masks_in_a_per_sample_choice():
    """Per sample, LMix's soft rows are its own blend and CutMix's rows its select; integer extras
    take LMix rows where the weight is above 1/2."""
    choice = lmix.create_mixer("cutmix+lmix", mode="sample", max_soft=0.25, seed=10)
    images = torch.rand(16, 2, 10, 12, generator=gen(11))
    labels = torch.arange(16) % 5
    seg = torch.randint(0, 4, (16, 10, 12), generator=gen(12))
    batch = choice(images, labels, extras=[seg])
    expected = component_outputs(choice, images, labels, batch.params)
    for i, (image, label_b, lam) in expected.items():
        torch.testing.assert_close(batch.images[i], image)
        assert batch.labels_b[i] == label_b and batch.lam[i] == lam
    perm = batch.params.perm
    for c, rows in enumerate(batch.params.rows):
        cp = batch.params.components[c]
        if cp is None:
            continue
        keep = cp.mask[:, 0] > 0.5 if cp.mask.dtype != torch.bool else cp.mask[:, 0]
        assert torch.equal(batch.extras[0][rows], torch.where(keep, seg[rows], seg[perm[rows]]))
    assert any(cp is not None and cp.mask.dtype == torch.float32 for cp in batch.params.components)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("name", ["lmix", "fmix"])
def test_reformulate_draws_the_area_from_beta_alpha_plus_one(name, alpha):
    """reformulate: the mask area follows Beta(alpha + 1, alpha) (mean (alpha + 1) / (2 alpha + 1)),
    and the target is the sample's own label (batch.lam = 1), as the reference's fmix_loss."""
    from scipy import stats

    n = 3000
    images = torch.rand(n, 1, 16, 16, generator=gen(13))
    labels = torch.arange(n) % 10
    batch = lmix.create_mixer(name, alpha=alpha, reformulate=True, seed=14)(images, labels)
    assert bool((batch.lam == 1).all())
    targets = batch.soft_targets(10)
    assert torch.equal(targets, torch.nn.functional.one_hot(labels, 10).float())
    area = batch.params.mask.flatten(1).double().mean(1).numpy()
    # The area is round(Beta * 256) / 256: undo the rounding by a uniform jitter of one bin.
    jitter = np.random.default_rng(15).uniform(-0.5, 0.5, n) / 256
    assert stats.kstest(np.clip(area + jitter, 0, 1), stats.beta(alpha + 1, alpha).cdf).pvalue > 1e-3
    mean, sd = (alpha + 1) / (2 * alpha + 1), stats.beta(alpha + 1, alpha).std()
    assert abs(area.mean() - mean) < 5 * sd / math.sqrt(n)
    # Without it: Beta(alpha, alpha), mean 1/2, labels mixed by the area.
    plain = lmix.create_mixer(name, alpha=alpha, seed=14)(images, labels)
    plain_area = plain.params.mask.flatten(1).double().mean(1)
    assert torch.equal(plain.lam.double(), plain_area.float().double())
    assert abs(float(plain_area.mean()) - 0.5) < 5 * stats.beta(alpha, alpha).std() / math.sqrt(n)
    assert stats.ks_2samp(area, plain_area.numpy()).pvalue < 1e-6


def test_reformulated_soft_masks_and_the_mixed_loss():
    """With both options the images blend with the soft mask and the loss is the own label's CE."""
    mixer = lmix.create_mixer("lmix", max_soft=0.2, reformulate=True, seed=16)
    images, labels = torch.rand(6, 3, 8, 8, generator=gen(17)), torch.arange(6)
    batch = mixer(images, labels)
    logits = torch.randn(6, 6, generator=gen(18))
    loss = lmix.mixed_cross_entropy(logits, batch)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))
    assert batch.params.mask.dtype == torch.float32


@pytest.mark.parametrize("name", ["lmix", "fmix", "lmix+mixup"])
@pytest.mark.parametrize(
    "param,value,error,match",
    [
        ("max_soft", -0.1, ValueError, r"max_soft must be a number in \[0, 0\.5\] \(0: binary masks\), got -0\.1$"),
        ("max_soft", 0.51, ValueError, r"max_soft must be a number in \[0, 0\.5\]"),
        ("max_soft", float("nan"), ValueError, r"max_soft must be a number in \[0, 0\.5\]"),
        ("max_soft", float("inf"), ValueError, r"max_soft must be a number in \[0, 0\.5\]"),
        ("max_soft", "0.1", ValueError, r"max_soft must be a number in \[0, 0\.5\].*got '0\.1'"),
        ("max_soft", True, ValueError, r"max_soft must be a number"),
        ("max_soft", None, ValueError, r"max_soft must be a number"),
        ("reformulate", 1, TypeError, r"reformulate must be True or False, got 1 \(int\)$"),
        ("reformulate", "yes", TypeError, r"reformulate must be True or False, got 'yes' \(str\)"),
        ("reformulate", None, TypeError, r"reformulate must be True or False"),
    ],
)
def test_bad_option_values_are_one_line_errors(name, param, value, error, match):
    with pytest.raises(error, match=match) as info:
        lmix.create_mixer(name, **{param: value})
    assert "\n" not in str(info.value)


def test_bad_max_soft_of_fourier_masks():
    with pytest.raises(ValueError, match=r"max_soft must be a number in \[0, 0\.5\]"):
        lmix.fourier_masks(torch.tensor([0.5]), (8, 8), max_soft=0.7)


def test_options_are_described_and_only_lmix_and_fmix_take_them():
    for name in ("lmix", "fmix"):
        d = lmix.create_mixer(name, max_soft=0.1, reformulate=True, seed=0).describe()
        assert d["max_soft"] == 0.1 and d["reformulate"] is True
        assert lmix.create_mixer(name, seed=0).describe()["max_soft"] == 0.0
        rebuilt = lmix.create_mixer(**{k: v for k, v in d.items()})
        assert rebuilt.describe() == d
    assert "max_soft=0.1, reformulate=True" in repr(lmix.create_mixer("fmix", max_soft=0.1, reformulate=True))
    for name in ("mixup", "cutmix", "cutout", "none", "patchup"):
        with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['max_soft'\]"):
            lmix.create_mixer(name, max_soft=0.1)
    choice = lmix.create_mixer("lmix+mixup", max_soft=0.1, seed=0)
    assert choice.mixers[0].max_soft == 0.1
