"""Property-based tests (hypothesis) over shapes and parameters."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmix
from lmix.mixing.masks import fourier_noise
from lmix.mixing.sampling import sample_beta
from tests.mixing._util import accepts, bounding_box, constant_images, kept_masks, kind_of, mixer_configs

SETTINGS = settings(max_examples=40, deadline=None)

sides = st.integers(min_value=2, max_value=24)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
alphas = st.floats(min_value=0.02, max_value=20.0, allow_nan=False)
decays = st.floats(min_value=0.0, max_value=6.0, allow_nan=False)
ks = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@SETTINGS
@given(h=sides, w=sides, lams=st.lists(unit, min_size=1, max_size=5), decay=decays, k=ks, seed=seeds)
def test_fourier_masks_exact_and_top_n(h, w, lams, decay, k, seed):
    lam = torch.tensor(lams, dtype=torch.float32)
    masks = lmix.fourier_masks(lam, (h, w), decay=decay, k=k, generator=torch.Generator().manual_seed(seed))
    assert masks.shape == (len(lams), 1, h, w)
    assert bool(((masks == 0) | (masks == 1)).all())
    assert masks.sum(dim=(1, 2, 3)).long().tolist() == [round(float(v) * h * w) for v in lam]
    grey = fourier_noise(len(lams), (h, w), decay=decay, k=k, generator=torch.Generator().manual_seed(seed))
    assert bool(torch.isfinite(grey).all())
    for m, g in zip(masks[:, 0], grey):
        if 0 < int(m.sum()) < h * w:
            assert float(g[m == 1].min()) >= float(g[m == 0].max())


@SETTINGS
@given(h=sides, w=sides, a=unit, b=unit, k=ks, seed=seeds)
def test_fourier_masks_nested_in_lam(h, w, a, b, k, seed):
    lo, hi = sorted((a, b))
    m_lo = lmix.fourier_masks(torch.tensor([lo]), (h, w), k=k, generator=torch.Generator().manual_seed(seed))
    m_hi = lmix.fourier_masks(torch.tensor([hi]), (h, w), k=k, generator=torch.Generator().manual_seed(seed))
    assert bool((m_lo <= m_hi).all())


CONFIGS = mixer_configs(combinations=True)


@SETTINGS
@given(
    index=st.integers(min_value=0, max_value=len(CONFIGS) - 1),
    b=st.integers(min_value=1, max_value=6),
    c=st.integers(min_value=1, max_value=3),
    h=st.integers(min_value=2, max_value=12),
    w=st.integers(min_value=2, max_value=12),
    alpha=alphas,
    decay=decays,
    k=ks,
    seed=seeds,
)
def test_any_mixer_any_shape(index, b, c, h, w, alpha, decay, k, seed):
    name, params = CONFIGS[index]
    extra = {}
    components = name.split("+")
    for key, value in (("alpha", alpha), ("decay", decay), ("k", k)):
        if any(accepts(n, key) for n in components):
            extra[key] = value
    mixer = lmix.create_mixer(name, **params, **extra, seed=seed % 1000)
    images, labels, values = constant_images(b, c, h, w)
    batch = mixer(images, labels)
    assert batch.images.shape == images.shape and batch.lam.shape == (b,)
    assert bool(((batch.lam >= 0) & (batch.lam <= 1)).all())
    assert bool(torch.isfinite(batch.images).all())
    lam = batch.lam.double()[:, None]
    kind = None if isinstance(mixer, lmix.MixChoice) else kind_of(mixer)
    if kind == "erase":
        assert bool((batch.lam == 1).all()) and torch.equal(batch.labels_b, labels)
        return
    expected = lam * values + (1 - lam) * values[batch.labels_b]
    assert torch.allclose(batch.images.double().mean(dim=(2, 3)), expected, atol=1e-5)
    if kind == "mask":
        kept, valid = kept_masks(batch.images, values, batch.labels_b)
        assert torch.allclose(kept.float().mean(dim=(1, 2))[valid], batch.lam[valid], atol=1e-7)


@SETTINGS
@given(alpha=st.floats(min_value=1e-3, max_value=100.0), n=st.integers(min_value=1, max_value=300), seed=seeds)
def test_sample_beta_in_unit_interval(alpha, n, seed):
    lam = sample_beta(alpha, n, generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
    assert lam.shape == (n,) and bool(torch.isfinite(lam).all()) and bool(((lam >= 0) & (lam <= 1)).all())


@SETTINGS
@given(
    bh=st.integers(min_value=1, max_value=20),
    bw=st.integers(min_value=1, max_value=20),
    h=st.integers(min_value=2, max_value=20),
    w=st.integers(min_value=2, max_value=20),
    seed=seeds,
)
def test_cutmix_fixed_box_area_is_lam_and_cutout_matches(bh, bw, h, w, seed):
    images, labels, values = constant_images(6, 1, h, w)
    batch = lmix.create_mixer("cutmix", size=(bh, bw), seed=seed % 1000)(images, labels)
    kept, valid = kept_masks(batch.images, values, batch.labels_b)
    for i in valid.nonzero().flatten().tolist():
        region = ~kept[i]
        count = int(region.sum())
        assert 0 < count <= bh * bw
        assert math.isclose((1 - float(batch.lam[i])) * h * w, count, abs_tol=1e-3)
        y1, y2, x1, x2 = bounding_box(region)
        assert (y2 - y1) * (x2 - x1) == count
    out = lmix.create_mixer("cutout", size=(bh, bw), seed=seed % 1000)(images, labels).images
    zero = out[:, 0] == 0
    for i in range(6):
        count = int(zero[i].sum())
        assert 0 < count <= bh * bw
        y1, y2, x1, x2 = bounding_box(zero[i])
        assert (y2 - y1) * (x2 - x1) == count


# -- 1, 2 and 3 spatial axes ----------------------------------------------------------------------

spatial = st.lists(st.integers(min_value=2, max_value=10), min_size=1, max_size=3).map(tuple)
softs = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=0.5, allow_nan=False))


@SETTINGS
@given(size=spatial, lams=st.lists(unit, min_size=1, max_size=5), decay=decays, k=ks, max_soft=softs, seed=seeds)
def test_nd_masks_exact_top_n_and_soft(size, lams, decay, k, max_soft, seed):
    """Any (L,), (H, W) or (D, H, W): exactly round(lam N) ones on the largest noise values; a soft
    mask's weights sum to exactly that count and exceed 1/2 on exactly those pixels."""
    lam = torch.tensor(lams, dtype=torch.float32)
    numel = math.prod(size)

    def masks(soft: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return lmix.fourier_masks(lam, size, decay=decay, k=k, max_soft=soft, generator=g)

    binary = masks(0.0)
    assert binary.shape == (len(lams), 1, *size)
    counts = [round(float(v) * numel) for v in lam]
    assert binary.flatten(1).sum(1).long().tolist() == counts
    grey = fourier_noise(len(lams), size, decay=decay, k=k, generator=torch.Generator().manual_seed(seed))
    for m, g in zip(binary.flatten(1), grey.flatten(1), strict=True):
        if 0 < int(m.sum()) < numel:
            assert float(g[m == 1].min()) >= float(g[m == 0].max())
    soft = masks(max_soft)
    assert soft.flatten(1).double().sum(1).tolist() == [float(c) for c in counts]
    assert torch.equal(soft > 0.5, binary > 0.5) and bool(((soft >= 0) & (soft <= 1)).all())


RANK_CONFIGS = [*mixer_configs(combinations=True), ("lmix", {"max_soft": 0.3}), ("fmix+mixup", {"mode": "sample"})]


@SETTINGS
@given(
    index=st.integers(min_value=0, max_value=len(RANK_CONFIGS) - 1),
    b=st.integers(min_value=1, max_value=5),
    c=st.integers(min_value=1, max_value=3),
    size=spatial,
    alpha=alphas,
    max_soft=softs,
    seed=seeds,
)
def test_any_mixer_any_rank(index, b, c, size, alpha, max_soft, seed):
    """Every mixer on (B, C, *size) with the ranks it takes: each image's mean is lam * own +
    (1 - lam) * partner (masks, soft masks and blends alike), Cutout keeps lam = 1; another rank is
    refused."""
    name, params = RANK_CONFIGS[index]
    extra = {key: value for key, value in (("alpha", alpha), ("max_soft", max_soft)) if key not in params}
    extra = {key: value for key, value in extra.items() if any(accepts(n, key) for n in name.split("+"))}
    mixer = lmix.create_mixer(name, **params, **extra, seed=seed % 1000)
    d = len(size)
    values = torch.arange(1, b + 1, dtype=torch.float64)[:, None] + torch.arange(c, dtype=torch.float64)[None, :] / 4
    images = values.view(b, c, *(1,) * d).expand(b, c, *size).float().contiguous()
    labels = torch.arange(b)
    if d not in mixer.spatial_ranks:
        with pytest.raises(ValueError, match=r"images must have shape"):
            mixer(images, labels)
        return
    batch = mixer(images, labels)
    assert batch.images.shape == images.shape and batch.lam.shape == (b,)
    assert bool(((batch.lam >= 0) & (batch.lam <= 1)).all()) and bool(torch.isfinite(batch.images).all())
    if not isinstance(mixer, lmix.MixChoice) and kind_of(mixer, size) == "erase":
        assert bool((batch.lam == 1).all()) and torch.equal(batch.labels_b, labels)
        return
    lam = batch.lam.double()[:, None]
    expected = lam * values + (1 - lam) * values[batch.labels_b]
    mean = batch.images.double().mean(dim=tuple(range(2, 2 + d)))
    assert torch.allclose(mean, expected, atol=1e-5)
