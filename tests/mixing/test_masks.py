"""Fourier masks: exact area, binary, top-n of the noise, isotropic spectrum, the k emphasis."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lmix
from lmix.mixing import masks as core
from lmix.mixing.masks import (
    binarise_top,
    box_masks,
    emphasis_filter,
    fourier_noise,
    frequency_magnitude,
    lowpass_filter,
    sharpen,
)
from tests.mixing._util import anisotropy, mean_power, reference_fmix_masks, worst_log_ratio

SIZES = [(2, 2), (2, 7), (5, 3), (32, 32), (28, 20), (20, 28), (17, 33)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("k", [0.0, 1.0, 4.0])
def test_fourier_masks_exact_count_binary_shape(size, k):
    h, w = size
    lam = torch.cat([torch.tensor([0.0, 1.0, 0.5, 1.0 / (h * w), 1 - 1.0 / (h * w)]), torch.rand(11, generator=gen(1))])
    masks = lmix.fourier_masks(lam, size, k=k, generator=gen(2))
    assert masks.shape == (lam.numel(), 1, h, w)
    assert masks.dtype == torch.float32
    assert bool(((masks == 0) | (masks == 1)).all())
    expected = torch.tensor([round(float(v) * h * w) for v in lam])
    assert torch.equal(masks.sum(dim=(1, 2, 3)).long(), expected)
    assert bool((masks[0] == 0).all()) and bool((masks[1] == 1).all())


@pytest.mark.parametrize("lam_value", [0.0, 1.0])
def test_fourier_masks_lam_extremes(lam_value):
    masks = lmix.fourier_masks(torch.full((3,), lam_value), (6, 9), k=2.0, generator=gen())
    assert torch.equal(masks, torch.full((3, 1, 6, 9), lam_value))


@pytest.mark.parametrize("size", [(32, 32), (28, 20), (3, 2)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("k", [0.0, 1.5])
def test_mask_is_top_n_of_the_noise(size, k):
    """Mask step 8 (docs/method.md): the ones are exactly the round(lam HW) largest pixels of G (same draws)."""
    lam = torch.rand(8, generator=gen(3))
    masks = lmix.fourier_masks(lam, size, decay=2.0, k=k, generator=gen(4))
    grey = fourier_noise(8, size, decay=2.0, k=k, generator=gen(4))
    for m, g in zip(masks[:, 0], grey):
        ones, zeros = g[m == 1], g[m == 0]
        if ones.numel() and zeros.numel():
            assert float(ones.min()) >= float(zeros.max())


def test_masks_are_nested_in_lam_for_the_same_noise():
    lams = torch.linspace(0, 1, 11)
    masks = torch.cat([lmix.fourier_masks(lam.expand(4), (16, 12), k=1.0, generator=gen(5)) for lam in lams])
    masks = masks.reshape(11, 4, 16, 12)
    assert bool((masks[:-1] <= masks[1:]).all())


def test_masks_differ_across_the_batch_and_follow_the_generator():
    lam = torch.full((16,), 0.5)
    a = lmix.fourier_masks(lam, (16, 16), generator=gen(6))
    b = lmix.fourier_masks(lam, (16, 16), generator=gen(6))
    c = lmix.fourier_masks(lam, (16, 16), generator=gen(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    flat = a.reshape(16, -1)
    assert len({tuple(row.tolist()) for row in flat}) == 16


def test_default_generator_does_not_touch_global_rng():
    state = torch.get_rng_state()
    lmix.fourier_masks(torch.rand(4, generator=gen()), (8, 8))
    assert torch.equal(torch.get_rng_state(), state)


def test_filters():
    size = (24, 17)
    f = frequency_magnitude(size)
    assert f.shape == (24, 17 // 2 + 1)
    assert float(f[0, 0]) == 0.0
    assert math.isclose(float(f[3, 4]), math.hypot(3 / 24, 4 / 17), rel_tol=1e-6)
    lp = lowpass_filter(size, 3.0)
    assert float(lp[0, 0]) == 1.0
    assert bool(((lp > 0) & (lp <= 1)).all())
    # Monotone decreasing in the radial frequency.
    order = torch.argsort(f.flatten())
    assert bool((lp.flatten()[order].diff() <= 1e-7).all())
    assert torch.equal(emphasis_filter(size, 3.0, 0.0), lp)
    emph = emphasis_filter(size, 3.0, 2.0)
    assert torch.allclose(emph, (1 + 2.0 * (1 - lp)) * lp)
    assert torch.allclose(lowpass_filter(size, 0.0), torch.ones_like(lp))


def test_sharpen_keeps_mean_dtype_and_boosts_high_frequencies():
    x = torch.rand(2, 3, 16, 16, generator=gen())
    for dtype in (torch.float32, torch.bfloat16):
        y = sharpen(x.to(dtype), decay=3.0, k=1.0)
        assert y.dtype == dtype and y.shape == x.shape
    y = sharpen(x, decay=3.0, k=1.0)
    assert torch.allclose(y.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), atol=1e-5)
    assert torch.allclose(sharpen(x, decay=3.0, k=0.0), x, atol=1e-5)
    hi = mean_power(y)[8, 8] / mean_power(x)[8, 8]
    assert float(hi) > 3.0  # gain (1 + k H_hp)^2 -> ~4 at the corner of the spectrum


def test_box_masks_clip_at_the_border():
    cy = torch.tensor([0, 5, 9])
    cx = torch.tensor([0, 5, 9])
    size = torch.tensor([4, 4, 4])
    keep, lam = box_masks(cy, cx, size, size, (10, 10))
    areas = torch.tensor([4, 16, 9])  # 2x2 in the corner, 4x4 inside, 3x3 at the far corner
    assert torch.equal((keep == 0).sum(dim=(1, 2, 3)), areas)
    assert torch.allclose(lam, 1 - areas / 100)


# -- isotropy -----------------------------------------------------------------------------------

ISOTROPIC = math.log(1.25)  # every statistic within a factor 1.25 of 1 (observed: <= 1.07)


@pytest.mark.parametrize("k", [0.0, 1.0], ids=["fmix", "lmix"])
def test_mask_spectrum_is_isotropic(k):
    lam = torch.rand(2000, generator=gen(10))
    masks = lmix.fourier_masks(lam, (32, 32), decay=3.0, k=k, generator=gen(11))
    stats = anisotropy(masks)
    name, dev = worst_log_ratio(stats)
    assert dev < ISOTROPIC, f"{name} = {stats[name]:.3f}: {stats}"
    assert abs(math.log(stats["gradient"])) < math.log(1.05), stats


def test_isotropy_statistic_flags_the_fmix_reference_axis_bug():
    lams = np.random.default_rng(12).uniform(size=2000)
    masks = torch.from_numpy(reference_fmix_masks(lams, (32, 32), seed=13))
    assert torch.equal(masks.sum(dim=(1, 2)), torch.tensor([round(v * 1024) for v in lams], dtype=masks.dtype))
    stats = anisotropy(masks)
    name, dev = worst_log_ratio(stats)
    assert dev > math.log(2.0), stats  # the same statistic as above, far outside its bound
    assert abs(math.log(stats["gradient"])) > math.log(1.2), stats
    assert all(stats[f"axes_{r}"] < 0.5 for r in (1, 2, 3)), stats


def normalised_noise_power(grey: torch.Tensor, decay: float, k: float) -> torch.Tensor:
    """(H, W//2+1) average rfft2 power of (N, H, W) noise over the squared transfer function, / its mean."""
    h, w = grey.shape[-2:]
    p = (torch.fft.rfft2(grey.double()).abs() ** 2).mean(0)
    p = p / emphasis_filter((h, w), decay, k).double() ** 2
    return p / p.mean()


@pytest.mark.parametrize("size", [(32, 32), (28, 20), (15, 9)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("decay,k", [(0.0, 0.0), (3.0, 0.0), (3.0, 1.0)])
def test_noise_has_equal_power_in_every_frequency_bin(size, decay, k):
    """The grey noise G (before binarisation) has power exactly |transfer|^2 in every bin,
    including the self-conjugate columns fx = 0 and fx = W/2 of the half spectrum."""
    grey = fourier_noise(2000, size, decay=decay, k=k, generator=gen(20))
    assert grey.shape == (2000, *size) and grey.dtype == torch.float32
    p = normalised_noise_power(grey, decay, k)
    assert float(p.min()) > 0.85 and float(p.max()) < 1.15, (float(p.min()), float(p.max()))
    assert abs(float(p[1:, 0].mean()) - 1) < 0.05  # the fx = 0 column carries full power
    if size[1] % 2 == 0:
        assert abs(float(p[1:, -1].mean()) - 1) < 0.05  # and so does the Nyquist column


def test_power_check_flags_half_spectrum_noise():
    """Complex noise drawn straight into irfft2's half spectrum loses half the power at fx = 0."""
    size, decay = (32, 32), 3.0
    parts = torch.randn(2000, 32, 17, 2, generator=gen(21))
    grey = torch.fft.irfft2(torch.view_as_complex(parts) * emphasis_filter(size, decay, 0.0), s=size)
    p = normalised_noise_power(grey, decay, 0.0)
    assert float(p[1:, 0].mean()) < 0.6 * float(p[1:, 1:-1].mean())
    assert float(p.min()) < 0.85
    # Its binarised masks are anisotropic by the mask statistic too (vertical stripes dominate).
    masks = binarise_top(grey, torch.rand(2000, generator=gen(22)))
    stats = anisotropy(masks)
    assert worst_log_ratio(stats)[1] > ISOTROPIC, stats


def high_frequency_share(masks: torch.Tensor, cutoff: float = 0.15) -> float:
    """Share of a mask set's (mean-removed) power at radial frequency > cutoff cycles per pixel."""
    p = mean_power(masks)
    h, w = p.shape
    f = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2).double()
    return float(p[f > cutoff].sum() / p.sum())


def test_raising_k_raises_the_high_frequency_share():
    lam = torch.rand(600, generator=gen(30))
    shares = [high_frequency_share(lmix.fourier_masks(lam, (32, 32), k=k, generator=gen(31))) for k in (0.0, 1.0, 4.0)]
    assert shares[0] < shares[1] < shares[2], shares
    assert shares[2] > 1.2 * shares[0], shares
    noise = [high_frequency_share(fourier_noise(300, (32, 32), k=k, generator=gen(32))) for k in (0.0, 1.0, 4.0)]
    assert noise[0] < noise[1] < noise[2], noise


def _stable_sort_top(values: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The definition of ``top_mask``: the first n of a stable descending sort, (B, 1, H, W) bool."""
    b, h, w = values.shape
    n = torch.round(lam.double() * (h * w)).long()
    order = torch.argsort(values.reshape(b, -1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w).expand(b, -1).contiguous())
    return (ranks < n[:, None]).reshape(b, 1, h, w)


@pytest.mark.parametrize(
    "kind", ["noise", "ties", "float64-ties", "float16", "constant-and-tiny", "non-finite", "inf-span"]
)
@pytest.mark.parametrize("size", [(32, 32), (23, 19), (9, 30)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_top_mask_selection_equals_the_stable_sort(kind, size):
    """The CPU radix selection (taken above 4096 values) gives the stable sort's mask, ties included."""
    g = gen(11)
    b = 48
    x = torch.randn(b, *size, generator=g)
    if kind == "ties":
        x = (x * 2).round()
    elif kind == "float64-ties":
        x = (x * 20).round().double()
    elif kind == "float16":
        x = x.half()
    elif kind == "constant-and-tiny":
        x[0] = 1.5
        x[1] = x[1] * 1e-42  # subnormal span: the bucket scale overflows
        x[2, :2] = -0.0
        x[2, 2:] = 0.0
    elif kind == "non-finite":
        x[1, 0, 0] = float("inf")
        x[2, 1, 1] = float("-inf")
        x[3, 0, 1] = float("nan")
    elif kind == "inf-span":
        x[1, 0, 0], x[1, 0, 1] = 3e38, -3e38  # finite values, infinite max - min
    lam = torch.rand(b, generator=g)
    lam[:4] = torch.tensor([0.0, 1.0, 0.5, 1.0 / (size[0] * size[1])])
    mask, area = lmix.mixing.masks.top_mask(x, lam)
    assert torch.equal(mask, _stable_sort_top(x, lam))
    assert torch.equal(area, mask.float().mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("size", [(32, 32), (7, 10), (16, 9), (33, 31)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("k", [0.0, 1.0])
@pytest.mark.parametrize("n", [5, 300], ids=["few", "many"])  # many rows: the CPU's transposed order
def test_fourier_noise_is_the_spec_formula_bit_for_bit(size, k, n):
    """Published runs depend on the exact noise: it is the plain formula, computed in this order."""
    h, w = size
    ref_gen = gen(21)
    parts = torch.randn((n, h, w // 2 + 1, 2), generator=ref_gen)
    z = torch.view_as_complex(parts).clone()
    flip = (-torch.arange(h)) % h
    cols = [0, w // 2] if w % 2 == 0 else [0]
    for c in cols:
        col = z[:, :, c].clone()
        z[:, :, c] = (col + col[:, flip].conj()) * (1.0 / math.sqrt(2.0))
    expected = torch.fft.irfft2(z * emphasis_filter(size, 3.0, k), s=size)
    g = gen(21)
    got = fourier_noise(n, size, decay=3.0, k=k, generator=g)
    assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=ref_gen))  # same consumption


def test_top_mask_selection_with_int32_bucket_ids():
    """Above 2**15 buckets in all (here 300 rows of 128) the bucket ids are int32: same mask as the sort."""
    g = gen(12)
    x = (torch.randn(300, 32, 32, generator=g) * 4).round()  # many ties
    lam = torch.rand(300, generator=g)
    mask, _ = lmix.mixing.masks.top_mask(x, lam)
    assert torch.equal(mask, _stable_sort_top(x, lam))


def _sort_top(values: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, L) values, (B,) counts -> (B, L) bool: the first n of a stable descending sort."""
    order = torch.argsort(values, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(values.shape[1]).expand_as(order).contiguous())
    return ranks < n[:, None]


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(min_value=1, max_value=40),
    length=st.integers(min_value=2, max_value=600),
    buckets=st.integers(min_value=1, max_value=3000),
    kind=st.sampled_from(["noise", "levels", "constant", "signed-zeros", "tiny", "huge", "non-finite"]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_radix_selection_is_the_stable_sort_for_any_bucket_count(b, length, buckets, kind, dtype, seed):
    """The CPU selections give the stable sort's mask, bool or float, whatever the number of buckets
    (the count only changes the speed; 40 rows of 3000 need int32 ids), ties and NaN included."""
    g = gen(seed)
    x = torch.randn(b, length, generator=g, dtype=torch.float64)
    if kind == "levels":
        x = (x * 2).round()  # many ties
    elif kind == "constant":
        x[: (b + 1) // 2] = 1.5
    elif kind == "signed-zeros":
        x = torch.where(x > 0.5, 1.0, torch.where(x > 0, 0.0, -0.0))
    elif kind == "tiny":
        x = x * 1e-42 if dtype != torch.float16 else x * 1e-6
    elif kind == "huge":
        x = x * (1e300 if dtype == torch.float64 else 1e37 if dtype == torch.float32 else 1e4)
    elif kind == "non-finite":
        spots = torch.randint(0, x.numel(), (3,), generator=g)
        x.view(-1)[spots] = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=x.dtype)
    x = x.to(dtype)
    n = torch.randint(0, length + 1, (b,), generator=g)
    n[0] = length if b > 1 else n[0]
    expected = _sort_top(x, n)
    saved = core._bucket_count
    core._selection_plan.cache_clear()
    core._bucket_count = lambda rows, values: buckets
    try:
        as_bool = core._top_by_threshold(x, n)
        as_float = core._top_by_threshold(x, n, torch.float32, n.to(torch.float32))
    finally:
        core._bucket_count = saved
        core._selection_plan.cache_clear()
    assert torch.equal(as_bool, expected)
    assert as_float.dtype == torch.float32 and torch.equal(as_float, expected.float())
    # The selection row by row (torch.kthvalue), taken for a few long rows: the same masks.
    assert torch.equal(core._top_by_rows(x, n), expected)
    assert torch.equal(core._top_by_rows(x, n, torch.float32), expected.float())


def test_row_selection_sorts_rows_with_a_nan():
    """kthvalue ranks NaN above everything, as the sort does, but the comparison never keeps a NaN:
    with two equal values below it, the count of kept values still matches (the sort's mask keeps
    the NaN and one of them), so rows with a non-finite value always take the sort."""
    x = torch.tensor([[float("nan"), 5.0, 5.0, 1.0], [float("inf"), 5.0, 5.0, -float("inf")]])
    n = torch.tensor([2, 2])
    assert torch.equal(core._top_by_rows(x, n), _sort_top(x, n))


CASES = [((32, 32), 128), ((33, 31), 70), ((6, 6, 6), 40), ((50,), 90)]


@pytest.mark.parametrize("scratch_bytes", [0, 300_000, None], ids=["none", "some", "default"])
def test_reused_scratch_memory_changes_no_bit_and_is_never_returned(monkeypatch, scratch_bytes):
    """Temporaries live in per-thread memory reused from call to call (up to SCRATCH_BYTES): the
    masks are those of fresh memory, and a later call never overwrites an earlier result."""
    lam = {size: torch.rand(b, generator=gen(b)) for size, b in CASES}
    expected = {
        size: (
            core._fourier_top_masks(lam[size], size, decay=3.0, k=1.0, generator=gen(7), max_soft=0.0, as_float=False)
        )
        for size, _ in CASES
    }
    monkeypatch.setattr(core, "_scratch_store", core._ScratchStore())  # nothing reused from earlier tests
    if scratch_bytes is not None:
        monkeypatch.setattr(core, "SCRATCH_BYTES", scratch_bytes)
    first = {size: lmix.fourier_masks(lam[size], size, k=1.0, generator=gen(7)) for size, _ in CASES}
    noise = fourier_noise(128, (32, 32), k=1.0, generator=gen(8))
    kept = {size: m.clone() for size, m in first.items()}, noise.clone()
    for size, _ in CASES:  # the bool masks, the float ones, noise and selection again: no result moves
        masks, areas = core.fourier_top_masks(lam[size], size, decay=3.0, k=1.0, generator=gen(7))
        assert torch.equal(masks, expected[size][0]) and torch.equal(areas, expected[size][1])
        assert torch.equal(first[size], expected[size][0].float())
        core.top_mask(fourier_noise(len(lam[size]), size, k=1.0, generator=gen(9)), lam[size])
    assert all(torch.equal(first[size], kept[0][size]) for size, _ in CASES)
    assert torch.equal(noise, kept[1])


@pytest.mark.parametrize("mode", ["inference", "no_grad"])
def test_scratch_memory_first_made_under_inference_mode_serves_later_calls(monkeypatch, mode):
    """Masks made first under torch.inference_mode() (or no_grad), then outside it: the reused
    memory stays writable, and the masks are the same."""
    monkeypatch.setattr(core, "_scratch_store", core._ScratchStore())
    context = torch.inference_mode() if mode == "inference" else torch.no_grad()
    with context:
        inside = {size: lmix.fourier_masks(torch.full((b,), 0.4), size, generator=gen(5)) for size, b in CASES}
    for size, b in CASES:
        assert torch.equal(lmix.fourier_masks(torch.full((b,), 0.4), size, generator=gen(5)), inside[size])
        core.top_mask(torch.randn(b, *size, generator=gen(6)), torch.full((b,), 0.4))


def test_masks_made_in_threads_at_once_equal_the_serial_ones():
    """Each thread has its own scratch memory: masks made at the same time in several threads are
    bit for bit the masks made one after the other."""
    lam = {size: torch.rand(b, generator=gen(b + 1)) for size, b in CASES}
    expected = {size: lmix.fourier_masks(lam[size], size, k=1.0, generator=gen(3)) for size, _ in CASES}
    start = threading.Barrier(len(CASES))
    wrong: list[tuple[int, ...]] = []

    def work(size: tuple[int, ...]) -> None:
        start.wait()
        for _ in range(6):
            if not torch.equal(lmix.fourier_masks(lam[size], size, k=1.0, generator=gen(3)), expected[size]):
                wrong.append(size)

    threads = [threading.Thread(target=work, args=(size,)) for size, _ in CASES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
