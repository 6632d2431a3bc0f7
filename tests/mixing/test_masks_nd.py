"""Fourier masks of sequences (1-D) and volumes (3-D): exact area, top-n of the noise, the power of
every frequency bin (self-conjugate planes included), isotropy, and k's emphasis of the boundary.

The statistical bounds come from the sample size: a bin's mean power over N noise images is a mean
of N independent squared Gaussians (relative standard deviation at most sqrt(2 / N)); the isotropy
and boundary statistics are paired differences over N masks, compared with their standard error.
"""

from __future__ import annotations

import math

import pytest
import torch

import lmix
from lmix.mixing.masks import emphasis_filter, fourier_noise, frequency_magnitude, lowpass_filter, top_mask

SIZES = [(2,), (3,), (17,), (64,), (2, 2, 2), (3, 4, 5), (8, 8, 8), (5, 2, 7)]
#: Standard errors a statistic may lie from its expectation (a Bonferroni bound over the few
#: hundred bins and statistics of this file at a 1e-4 false alarm rate).
Z = 5.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def size_id(size: tuple[int, ...]) -> str:
    return "x".join(map(str, size))


@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("k", [0.0, 2.0])
def test_nd_masks_exact_count_binary_shape(size, k):
    n = math.prod(size)
    lam = torch.cat([torch.tensor([0.0, 1.0, 0.5, 1.0 / n, 1 - 1.0 / n]), torch.rand(11, generator=gen(1))])
    masks = lmix.fourier_masks(lam, size, k=k, generator=gen(2))
    assert masks.shape == (lam.numel(), 1, *size) and masks.dtype == torch.float32
    assert bool(((masks == 0) | (masks == 1)).all())
    expected = torch.tensor([round(float(v) * n) for v in lam])
    assert torch.equal(masks.flatten(1).sum(1).long(), expected)


@pytest.mark.parametrize("size", [(64,), (33,), (8, 8, 8), (6, 5, 7)], ids=size_id)
def test_nd_mask_is_top_n_of_the_noise(size):
    """Mask step 8 in N-D: the ones are the round(lam N) largest values of G (same draws)."""
    lam = torch.rand(8, generator=gen(3))
    masks = lmix.fourier_masks(lam, size, decay=2.0, k=1.5, generator=gen(4))
    grey = fourier_noise(8, size, decay=2.0, k=1.5, generator=gen(4))
    assert grey.shape == (8, *size)
    assert torch.equal(masks.bool(), top_mask(grey, lam)[0])
    for m, g in zip(masks.flatten(1), grey.flatten(1), strict=True):
        ones, zeros = g[m == 1], g[m == 0]
        if ones.numel() and zeros.numel():
            assert float(ones.min()) >= float(zeros.max())


def test_nd_filters():
    f = frequency_magnitude((6, 5, 8))
    assert f.shape == (6, 5, 5) and float(f[0, 0, 0]) == 0.0
    assert math.isclose(float(f[2, -1, 3]), math.sqrt((2 / 6) ** 2 + (1 / 5) ** 2 + (3 / 8) ** 2), rel_tol=1e-6)
    f1 = frequency_magnitude((9,))
    assert torch.allclose(f1, torch.arange(5) / 9)
    for size in [(9,), (6, 5, 8)]:
        lp = lowpass_filter(size, 3.0)
        f_min = 1 / max(size)
        assert torch.allclose(lp, (f_min / frequency_magnitude(size).clamp_min(f_min)) ** 3)
        assert torch.allclose(emphasis_filter(size, 3.0, 2.0), (1 + 2 * (1 - lp)) * lp)


def raw_noise(n: int, size: tuple[int, ...], decay: float, k: float, seed: int) -> torch.Tensor:
    """Noise drawn straight into irfftn's half spectrum, without the self-conjugate planes' fix."""
    parts = torch.randn(n, *size[:-1], size[-1] // 2 + 1, 2, generator=gen(seed))
    z = torch.view_as_complex(parts) * emphasis_filter(size, decay, k)
    return torch.fft.irfftn(z, s=size, dim=tuple(range(-len(size), 0)))


def bin_power(grey: torch.Tensor, decay: float, k: float) -> torch.Tensor:
    """Mean rfftn power of (N, *size) noise per bin, over its expectation 2 |transfer|^2 (real and
    imaginary parts of variance 1 each)."""
    size = tuple(grey.shape[1:])
    p = (torch.fft.rfftn(grey.double(), dim=tuple(range(-len(size), 0))).abs() ** 2).mean(0)
    return p / (2 * emphasis_filter(size, decay, k).double() ** 2)


@pytest.mark.parametrize("size", [(32,), (33,), (8, 8, 8), (6, 7, 9), (4, 6, 2)], ids=size_id)
@pytest.mark.parametrize("decay,k", [(0.0, 0.0), (3.0, 1.0)])
def test_nd_noise_has_the_filter_power_in_every_bin(size, decay, k):
    """Every bin of the half spectrum, the self-conjugate planes (last-axis bins 0 and n/2) included,
    carries exactly the filter's power; without the planes' fix those carry half of it."""
    n = 4000
    grey = fourier_noise(n, size, decay=decay, k=k, generator=gen(20))
    p = bin_power(grey, decay, k)
    bound = Z * math.sqrt(2 / n)
    assert float((p - 1).abs().max()) < bound, (float(p.min()), float(p.max()))
    planes = [0, -1] if size[-1] % 2 == 0 else [0]
    unfixed = bin_power(raw_noise(n, size, decay, k, seed=21), decay, k)
    for plane in planes:
        # The plane's bins on average: the fixed noise is at 1, the unfixed one well below.
        count = p[..., plane].numel()
        assert abs(float(p[..., plane].mean()) - 1) < Z * math.sqrt(2 / (n * count))
        assert float(unfixed[..., plane].mean()) < 1 - Z * math.sqrt(2 / (n * count)) - 0.3
    assert float((unfixed - 1).abs().max()) > bound  # the bound flags the unfixed noise


def axis_power(masks: torch.Tensor, axis: int, r: int) -> torch.Tensor:
    """(N,) power of each (N, D, H, W) mask at frequency r on ``axis`` and 0 on the other two axes
    (the DFT of the mask's profile along that axis)."""
    others = tuple(a for a in (1, 2, 3) if a != axis + 1)
    profile = masks.double().sum(dim=others)
    return torch.fft.rfft(profile, dim=1)[:, r].abs() ** 2


def plane_power(masks: torch.Tensor, zero_axis: int, a: int, b: int) -> torch.Tensor:
    """(N,) power at frequency (a, b) on the two axes other than ``zero_axis`` and 0 on it."""
    profile = masks.double().sum(dim=zero_axis + 1)
    return torch.fft.fft2(profile)[:, a, b].abs() ** 2


def gradient_energy(masks: torch.Tensor, axis: int) -> torch.Tensor:
    """(N,) mean squared finite difference of each mask along ``axis``: its boundary share on that axis."""
    return masks.double().diff(dim=axis + 1).pow(2).flatten(1).mean(1)


def paired_z(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean of the paired differences ``a - b`` over its standard error."""
    d = a - b
    return float(d.mean() / (d.std() / math.sqrt(d.numel())))


def isotropy_z(masks: torch.Tensor) -> dict[str, float]:
    """Paired z statistics of (N, D, H, W) cubic masks, each ~N(0, 1) for isotropic masks: the power
    on each axis against the last axis at r = 1..3, the power at (a, b) in each coordinate plane
    against the plane through the last axis's bin 0 (the self-conjugate plane), and the
    boundary share along each axis against the last."""
    stats: dict[str, float] = {}
    for r in (1, 2, 3):
        last = axis_power(masks, 2, r)
        for axis in (0, 1):
            stats[f"axis{axis}_r{r}"] = paired_z(axis_power(masks, axis, r), last)
    for a, b in ((1, 2), (2, 1), (2, 3)):
        on_plane = plane_power(masks, 2, a, b)  # frequency (a, b, 0): the self-conjugate plane
        for zero_axis in (0, 1):
            stats[f"plane{zero_axis}_{a}{b}"] = paired_z(plane_power(masks, zero_axis, a, b), on_plane)
    last = gradient_energy(masks, 2)
    for axis in (0, 1):
        stats[f"gradient{axis}"] = paired_z(gradient_energy(masks, axis), last)
    return stats


@pytest.mark.parametrize("k", [0.0, 1.0], ids=["fmix", "lmix"])
def test_3d_masks_are_isotropic(k):
    """No axis is preferred: the masks' power on each axis and in each coordinate plane, and their
    boundary share along each axis, agree within Z standard errors; masks of the unfixed noise
    (half power on the last axis's self-conjugate plane) fail the same statistics."""
    n = 3000
    lam = torch.rand(n, generator=gen(10))
    masks = lmix.fourier_masks(lam, (12, 12, 12), decay=3.0, k=k, generator=gen(11))[:, 0]
    stats = isotropy_z(masks)
    worst = max(stats, key=lambda s: abs(stats[s]))
    assert abs(stats[worst]) < Z, f"{worst} = {stats[worst]:.2f}: {stats}"
    biased = top_mask(raw_noise(n, (12, 12, 12), 3.0, k, seed=12), lam)[0][:, 0]
    flagged = isotropy_z(biased)
    assert max(abs(v) for v in flagged.values()) > 2 * Z, flagged


@pytest.mark.parametrize("size", [(256,), (16, 16, 16)], ids=size_id)
def test_raising_k_raises_the_boundary_share(size):
    """The same noise filtered with a larger k gives masks with more boundary (pixels whose neighbour
    differs), per mask: the paired difference is positive by many standard errors."""
    n = 400 if len(size) == 3 else 2000
    lam = torch.rand(n, generator=gen(30))
    shares = []
    for k in (0.0, 1.0, 4.0):
        masks = lmix.fourier_masks(lam, size, k=k, generator=gen(31))[:, 0]
        shares.append(sum(gradient_energy(masks, axis) for axis in range(len(size))))
    assert paired_z(shares[1], shares[0]) > Z and paired_z(shares[2], shares[1]) > Z
    # The noise itself: its high-frequency share rises with k.
    high = frequency_magnitude(size) > 0.25
    fractions = []
    for k in (0.0, 1.0, 4.0):
        spec = torch.fft.rfftn(
            fourier_noise(200, size, k=k, generator=gen(32)).double(), dim=tuple(range(1, 1 + len(size)))
        )
        power = (spec.abs() ** 2).mean(0)
        fractions.append(float(power[high].sum() / power.sum()))
    assert fractions[0] < fractions[1] < fractions[2], fractions


def test_nd_masks_follow_the_generator_and_leave_the_global_rng():
    state = torch.get_rng_state()
    lam = torch.full((6,), 0.5)
    a = lmix.fourier_masks(lam, (5, 6, 7), generator=gen(6))
    b = lmix.fourier_masks(lam, (5, 6, 7), generator=gen(6))
    c = lmix.fourier_masks(lam, (5, 6, 7), generator=gen(7))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a.flatten(1)}) == 6
    lmix.fourier_masks(lam, (40,))
    assert torch.equal(torch.get_rng_state(), state)


def test_nd_masks_in_chunks_equal_one_group():
    """On the CPU masks are made in groups of MASK_CHUNK pixels: the grouping does not change a bit."""
    from lmix.mixing import masks as core

    lam = torch.rand(40, generator=gen(8))
    whole = core.fourier_top_masks(lam, (6, 6, 6), decay=3.0, k=1.0, generator=gen(9))
    saved = core.MASK_CHUNK
    try:
        core.MASK_CHUNK = 6**3 * 3  # groups of 3 masks
        grouped = core.fourier_top_masks(lam, (6, 6, 6), decay=3.0, k=1.0, generator=gen(9))
    finally:
        core.MASK_CHUNK = saved
    assert torch.equal(whole[0], grouped[0]) and torch.equal(whole[1], grouped[1])
