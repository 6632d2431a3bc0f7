"""Fourier masks (FMix / LMix) and box masks (CutMix / Cutout), vectorised over the batch.

The mask of docs/method.md ("The LMix mask, step by step"), steps 3-8:

* ``f[u, v] = sqrt(fy[u]^2 + fx[v]^2)`` with ``fftfreq(H)``, ``rfftfreq(W)``;
* ``H_lp = (f_min / max(f, f_min)) ** decay`` with ``f_min = 1 / max(H, W)``;
* ``H_hp = 1 - H_lp``;
* ``G = irfft2((1 + k * H_hp) * H_lp * Z)``;
* the ``round(lam * H * W)`` largest pixels of ``G`` are 1.

Isotropy: a complex field drawn independently in every bin of the half spectrum is not
Hermitian on the columns ``fx = 0`` (and ``fx = W/2`` for even W); ``irfft2`` silently keeps
only its Hermitian part there, which halves the power on those columns and biases the masks
towards vertical structure. We project those two columns onto their Hermitian part scaled by
``sqrt(2)``, which gives exactly the statistics of the real part of a full complex field
(every frequency bin with the same expected power), at the cost of one cheap gather.
"""

from __future__ import annotations

import functools
import math

import torch

from lmix._checks import is_integer
from lmix.errors import LmixValueError
from lmix.mixing.validation import check_decay, check_k, check_lam, check_size

__all__ = [
    "frequency_magnitude",
    "lowpass_filter",
    "emphasis_filter",
    "fourier_noise",
    "fourier_top_masks",
    "fourier_masks",
    "binarise_top",
    "top_mask",
    "sharpen",
    "box_masks",
]


def frequency_magnitude(size: tuple[int, int], *, device: torch.device | None = None) -> torch.Tensor:
    """(H, W//2+1) float32 radial frequency ``sqrt(fy^2 + fx^2)`` in cycles per pixel."""
    h, w = size
    fy = torch.fft.fftfreq(h, device=device, dtype=torch.float32)
    fx = torch.fft.rfftfreq(w, device=device, dtype=torch.float32)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def lowpass_filter(size: tuple[int, int], decay: float, *, device: torch.device | None = None) -> torch.Tensor:
    """(H, W//2+1) low-pass transfer ``(f_min / max(f, f_min)) ** decay``: 1 at DC, in (0, 1]."""
    f_min = 1.0 / max(size)
    f = frequency_magnitude(size, device=device)
    return (f_min / f.clamp_min(f_min)) ** decay


def emphasis_filter(
    size: tuple[int, int], decay: float, k: float, *, device: torch.device | None = None
) -> torch.Tensor:
    """(H, W//2+1) LMix transfer ``(1 + k * H_hp) * H_lp`` (eq. 5); ``k = 0`` is FMix's ``H_lp``."""
    h_lp = lowpass_filter(size, decay, device=device)
    return (1.0 + k * (1.0 - h_lp)) * h_lp


@functools.lru_cache(maxsize=32)
def _spectral_constants(
    height: int, width: int, decay: float, k: float, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (H, W//2+1) emphasis filter and the (H,) index ``-u mod H``, cached per size and device.

    Recomputing them is a dozen small kernels per call, a large share of the cost of one
    small mask (per-batch mode). Shared tensors: never modify them in place.
    """
    filt = emphasis_filter((height, width), decay, k, device=torch.device(device))
    flip = (-torch.arange(height, device=device)) % height
    return filt, flip


def _hermitian_columns(z: torch.Tensor, height: int, width: int, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Make the self-conjugate columns of a half spectrum (B, H, W//2+1) Hermitian along H, in place.

    ``z`` must be a fresh tensor owned by the caller (it is modified and returned). ``flip``
    is ``(-arange(H)) % H`` (computed when not given).
    """
    if flip is None:
        flip = (-torch.arange(height, device=z.device)) % height
    # Columns 0 and W/2 (even W) or column 0 (odd W), as a view: W//2 + 1 columns, step W/2.
    zc = z[:, :, 0 :: width // 2] if width % 2 == 0 else z[:, :, :1]
    # (zc + conj(zc[:, flip])) / sqrt(2), in place on one gathered copy: the same operations
    # (complex addition commutes exactly), fewer temporaries.
    t = torch.index_select(zc, 1, flip).conj_physical_()
    torch.mul(t.add_(zc), 1.0 / math.sqrt(2.0), out=zc)
    return z


def _check_count(n: object) -> int:
    if not is_integer(n) or n < 0:
        raise LmixValueError(f"n must be a non-negative integer (number of images), got {n!r}")
    return int(n)


def _spectra(
    n: int, size: tuple[int, int], generator: torch.Generator | None, device: torch.device | None
) -> tuple[torch.Tensor, torch.device]:
    """(n, H, W//2+1) complex64 standard normal half spectra (drawn with ``generator`` on its device,
    in one call: the numbers must not depend on how the masks are grouped later), on the output device."""
    h, w = size
    if generator is None:
        generator = torch.Generator(device=device or "cpu")
        generator.seed()
    gdev = generator.device
    # Real and imaginary parts are independent N(0, 1): one randn call of twice the size.
    parts = torch.randn((n, h, w // 2 + 1, 2), generator=generator, device=gdev, dtype=torch.float32)
    out_dev = torch.device(device) if device is not None else gdev
    return torch.view_as_complex(parts.to(out_dev)), out_dev


def _grey(z: torch.Tensor, size: tuple[int, int], decay: float, k: float) -> torch.Tensor:
    """(m, H, W) grey images from (m, H, W//2+1) normal half spectra (``z`` is modified in place)."""
    h, w = size
    filt, flip = _spectral_constants(h, w, decay, k, str(z.device))
    z = _hermitian_columns(z, h, w, flip)
    return torch.fft.irfft2(z.mul_(filt), s=(h, w))


def fourier_noise(
    n: int,
    size: tuple[int, int],
    *,
    decay: float = 3.0,
    k: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(n, H, W) float32 grey-scale images ``G`` with spectrum ``(1 + k H_hp) H_lp`` (docs/method.md).

    The complex noise is drawn with ``generator`` on its device and the result is returned on
    ``device`` (default: the generator's device).
    """
    size = check_size(size)
    decay = check_decay(decay)
    k = check_k(k, name="k")
    z, _ = _spectra(_check_count(n), size, generator, device)
    return _grey(z, size, decay, k)


#: Pixels per group of masks made at once on the CPU (spectrum, grey image, selection): the
#: temporaries of a group stay small enough to be reused by the allocator instead of being
#: mapped and page-faulted in afresh for every batch, which cost more than the FFT at 224x224.
MASK_CHUNK = 1 << 18


def fourier_top_masks(
    lam: torch.Tensor,
    size: tuple[int, int],
    *,
    decay: float,
    k: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``top_mask(fourier_noise(len(lam), size, ...), lam)``, the same bits, made in groups on the CPU.

    Args:
        lam: (B,) floating target areas in [0, 1], on the device of the masks.

    Returns:
        ((B, 1, H, W) bool masks, (B,) float32 exact areas), on ``lam``'s device.
    """
    b = lam.shape[0]
    z, _ = _spectra(b, size, generator, lam.device)
    h, w = size
    step = b if lam.device.type != "cpu" else max(1, MASK_CHUNK // (h * w))
    if step >= b:
        return top_mask(_grey(z, size, decay, k), lam)
    masks = torch.empty((b, 1, h, w), dtype=torch.bool, device=lam.device)
    areas = torch.empty(b, dtype=torch.float32, device=lam.device)
    for start in range(0, b, step):
        stop = min(b, start + step)
        masks[start:stop], areas[start:stop] = top_mask(_grey(z[start:stop], size, decay, k), lam[start:stop])
    return masks, areas


def _candidates(values: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """``values[inside]`` (row-major order) for a sparse (B, L) mask ``inside``, scanning it 8 bytes at a time.

    ``torch.masked_select`` scans every element of the mask; reading the bool mask as int64
    words first locates the few words that hold a candidate, so the element-wise scan only
    runs over those. Same result as ``values[inside]``.
    """
    length = values.shape[1]
    word = next(((t, s) for t, s in ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2)) if length % s == 0), None)
    if word is None:
        return torch.masked_select(values, inside)
    itype, width = word
    # Flat index of every word that holds a candidate, in row-major order.
    hit = inside.view(itype).view(-1).nonzero().view(-1)
    return torch.masked_select(values.view(-1, width).index_select(0, hit), inside.view(-1, width).index_select(0, hit))


def _sort_within_rows(
    cand: torch.Tensor, rows: torch.Tensor, rows_hi: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """(M,) values grouped by row, ``counts[i]`` of them in row i -> the values ascending within each row.

    float32: one sort of the int64 keys ``row << 32 | order-preserving bits of the value``
    (``rows_hi`` is ``rows << 32``; -0.0 sorts below +0.0, which only matters among equal
    values). Other dtypes: a sort by value, then a stable sort by row.
    """
    if cand.dtype == torch.float32:
        bits = cand.view(torch.int32)
        # Negative floats order backwards as integers: flip all bits but the sign.
        key = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64)
        key += torch.repeat_interleave(rows_hi, counts)
        return cand[torch.sort(key).indices]
    cand, order = torch.sort(cand)
    return cand[torch.argsort(torch.repeat_interleave(rows, counts)[order], stable=True)]


@functools.lru_cache(maxsize=32)
def _row_constants(
    b: int, nb: int, dtype: torch.dtype, itype: torch.dtype, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row constants of the radix selection, cached (each small op costs microseconds on CPU).

    Returns (B,) int64 row ids, (B,) int64 ``row << 32``, and the (B, 1) first bucket id of each
    row ``row * nb`` as ``dtype`` and as ``itype``. Shared tensors: never modify them in place.
    """
    rows = torch.arange(b, device=device)
    base = (rows * nb)[:, None]
    return rows, rows << 32, base.to(dtype), base.to(itype)


def _nth_largest(
    values: torch.Tensor, n: torch.Tensor, vmin: torch.Tensor, span: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``n[i]``-th largest value of each row of ``values`` (``+inf`` where ``n[i] == 0``).

    Only the threshold is needed, not an ordering, and a full ``torch.sort`` of every row
    dominated the cost of LMix masks on CPU. A one-level radix selection instead: each row's
    values are binned into equal-width buckets between its min and max (a monotone map, so a
    higher bucket never holds a smaller value), a per-row histogram locates the bucket holding
    the threshold, and only that bucket's few values are sorted. Pure torch, any device; few
    operations, since at 32x32 their fixed costs are a large share of the total.

    Args:
        values: (B, L) float32 or float64 tensor, contiguous, finite.
        n: (B,) int64 ranks in [0, L].
        vmin: (B, 1) row minima of ``values``.
        span: (B, 1) row maxima minus ``vmin``.

    Returns:
        ((B,) thresholds of ``values.dtype``, (B,) bool: True where more than ``n[i]`` values
        may be ``>=`` the threshold, i.e. ties at it that a threshold alone cannot split).
    """
    b, length = values.shape
    nb = max(16, min(4096, length // 8))
    dtype = values.dtype
    if dtype == torch.float32 and b * nb >= 2**22:
        # Bucket ids are computed in floating point below: beyond 2**22 float32 cannot hold
        # them to within a quarter. float64 holds every float32 exactly (same order).
        values, vmin, span = values.double(), vmin.double(), span.double()
    # The narrowest integer that holds every bucket id: converting to it, comparing it and
    # counting it are cheaper on CPU.
    itype = torch.int16 if b * nb < 2**15 else torch.int32 if b * nb < 2**31 else torch.int64
    rows, rows_hi, base_f, base_i = _row_constants(b, nb, values.dtype, itype, str(values.device))
    rank = n.clamp(1, length)
    # nb - 0.5: the row maximum lands below nb despite rounding. A constant row (or a span so
    # small that the scale overflows) gets scale 0: one bucket.
    scale = torch.nan_to_num_((nb - 0.5) / span, nan=0.0, posinf=0.0)
    # Bucket row * nb + floor((v - vmin) * scale): monotone in v within a row (each rounding
    # is), in [row * nb, row * nb + nb) as the base is an exact integer of the float type.
    bucket = torch.addcmul(base_f, values - vmin, scale).to(itype)
    hist = torch.bincount(bucket.view(-1), minlength=b * nb).view(b, nb)
    below_or_in = hist.cumsum(1)  # values in buckets <= j, per row, ascending
    # The bucket holding the rank-th largest: the first whose running count passes L - rank.
    top = torch.searchsorted(below_or_in, (length - rank)[:, None], right=True)  # (B, 1)
    n_inside = hist.gather(1, top).view(b)
    # The threshold is the j-th largest of its bucket (the values above it are the others).
    j = (rank - length) + below_or_in.gather(1, top).view(b)
    cand = _candidates(values, bucket == top.to(itype).add_(base_i))  # grouped by row
    cand = _sort_within_rows(cand, rows, rows_hi, n_inside)
    # Row i's candidates ascend in cand[ends[i] - n_inside[i] : ends[i]]. Every value in a
    # higher bucket is larger, every value in a lower one smaller, so more than n values
    # reach the threshold exactly when the candidate just below it is equal to it.
    pos = torch.cumsum(n_inside, 0).sub_(j)
    out = cand[pos]
    tied = (j < n_inside) & (cand[(pos - 1).clamp_min_(0)] == out)
    return out.masked_fill_(n == 0, float("inf")).to(dtype), tied


def _top_by_sort(flat: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, L) values, (B,) counts -> (B, L) bool, True on the ``n`` largest (stable sort ties)."""
    b, length = flat.shape
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    rank_is_kept = torch.arange(length, device=flat.device)[None, :] < n[:, None]
    out = torch.empty((b, length), dtype=torch.bool, device=flat.device)
    out.scatter_(1, order, rank_is_kept)
    return out


def _top_by_threshold(flat: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Same result as ``_top_by_sort``: keep the values >= each row's n-th largest.

    Rows where that would keep more than ``n`` values (ties at the threshold) and rows with
    a NaN or an infinity are done by ``_top_by_sort``, so the output is identical to the
    sort's, ties included.
    """
    values = flat.detach()
    if values.dtype not in (torch.float32, torch.float64):
        values = values.to(torch.float32)  # exact for float16/bfloat16: same order
    values = values.contiguous()
    vmin = values.amin(1, keepdim=True)
    span = values.amax(1, keepdim=True) - vmin
    # A row's max - min is finite exactly when all its values are finite; one sum checks
    # every row at once (it can overflow only when spans are huge: then check row by row).
    finite = None if math.isfinite(float(span.sum())) else torch.isfinite(span[:, 0])
    if finite is not None and not bool(finite.all()):
        out = torch.empty(values.shape, dtype=torch.bool, device=values.device)
        out[~finite] = _top_by_sort(flat[~finite], n[~finite])
        if bool(finite.any()):
            out[finite] = _top_by_threshold(flat[finite], n[finite])
        return out
    threshold, tied = _nth_largest(values, n, vmin, span)
    out = values >= threshold[:, None]
    if bool(tied.any()):
        out[tied] = _top_by_sort(flat[tied], n[tied])
    return out


def top_mask(grey: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample top-n selection: (B, H, W) values, (B,) lam -> ((B, 1, H, W) bool, (B,) float32 area).

    Exactly ``n = round(lam * H * W)`` True per sample (``torch.round``: half to even), placed on
    the largest values of ``grey``; among values equal to the threshold, the first in raster
    order are kept (the order of a stable descending sort). ``area = n / (H W)``, which equals
    the float32 mean of the mask bit for bit.

    On CPU the threshold is found by selection instead of a full ``torch.argsort``, which
    dominated the cost of LMix masks; the result is the same, bit for bit.
    """
    b, h, w = grey.shape
    n = (lam.to(torch.float64) * (h * w)).round_().to(device=grey.device, dtype=torch.int64)
    flat = grey.reshape(b, h * w)
    # Below ~4096 values in all, the fixed cost of the selection outweighs sorting.
    if grey.device.type == "cpu" and b * h * w > 4096:
        out = _top_by_threshold(flat, n)
    else:
        out = _top_by_sort(flat, n)
    return out.reshape(b, 1, h, w), n.to(torch.float32) / (h * w)


def binarise_top(grey: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Per-sample top-n binarisation: (B, H, W) values, (B,) lam -> (B, 1, H, W) float32 masks of 0 and 1.

    The float form of ``top_mask``: exactly ``round(lam * H * W)`` ones per sample.
    """
    return top_mask(grey, lam)[0].to(torch.float32)


def fourier_masks(
    lam: torch.Tensor,
    size: tuple[int, int] | list[int],
    *,
    decay: float = 3.0,
    k: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Binary LMix masks (docs/method.md, mask steps 3-8); ``k = 0`` gives FMix masks.

    Args:
        lam: (B,) floating tensor of target areas in [0, 1].
        size: (H, W), both >= 2.
        decay: low-pass exponent delta >= 0 (larger: smoother masks).
        k: high-frequency emphasis >= 0 (0: FMix).
        generator: source of all randomness; noise is drawn on its device. ``None`` uses a
            freshly, non-deterministically seeded generator (the global RNG is never used).

    Returns:
        (B, 1, H, W) float32 tensor of 0s and 1s on ``lam``'s device, with exactly
        ``round(lam[i] * H * W)`` ones in mask ``i``.
    """
    lam = check_lam(lam)
    check_decay(decay)
    check_k(k, name="k")
    h, w = check_size(size)
    if generator is None:
        generator = torch.Generator(device=lam.device)
        generator.seed()
    return fourier_top_masks(lam, (h, w), decay=decay, k=k, generator=generator)[0].to(torch.float32)


def sharpen(images: torch.Tensor, *, decay: float, k: float) -> torch.Tensor:
    """Apply the emphasis ``1 + k * H_hp`` to every channel in the frequency domain (docs/method.md, mask step 10).

    Args:
        images: (B, C, H, W) floating or integer tensor (integers are rounded back).

    Returns:
        Tensor of the same shape and dtype; the DC component (image mean) is unchanged.
    """
    h, w = images.shape[-2:]
    gain = 1.0 + k * (1.0 - lowpass_filter((h, w), decay, device=images.device))
    spec = torch.fft.rfft2(images.to(torch.float32)) * gain
    out = torch.fft.irfft2(spec, s=(h, w))
    if not images.is_floating_point():  # uint8 images: round and clip to the dtype's range
        info = torch.iinfo(images.dtype)
        out = out.round_().clamp_(info.min, info.max)
    return out.to(images.dtype)


def box_masks(
    centre_y: torch.Tensor,
    centre_x: torch.Tensor,
    box_h: torch.Tensor,
    box_w: torch.Tensor,
    size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks that are 0 inside axis-aligned boxes clipped at the border, 1 elsewhere.

    Args:
        centre_y, centre_x: (B,) int64 box centres (may lie anywhere in the image).
        box_h, box_w: (B,) int64 box sizes before clipping.
        size: (H, W).

    Returns:
        ((B, 1, H, W) float32 masks, (B,) float32 share of ones: ``1 - clipped area / (H W)``).
    """
    h, w = size
    y1 = (centre_y - box_h // 2).clamp(0, h)
    y2 = (centre_y - box_h // 2 + box_h).clamp(0, h)
    x1 = (centre_x - box_w // 2).clamp(0, w)
    x2 = (centre_x - box_w // 2 + box_w).clamp(0, w)
    rows = torch.arange(h, device=centre_y.device)
    cols = torch.arange(w, device=centre_y.device)
    in_rows = (rows[None, :] >= y1[:, None]) & (rows[None, :] < y2[:, None])  # (B, H)
    in_cols = (cols[None, :] >= x1[:, None]) & (cols[None, :] < x2[:, None])  # (B, W)
    inside = in_rows[:, :, None] & in_cols[:, None, :]
    keep = (~inside).to(torch.float32).unsqueeze(1)
    kept = (h * w - (y2 - y1) * (x2 - x1)).to(torch.float32)
    # One rounding (integer count / pixels), so that lam equals the mask's mean bit for bit.
    return keep, kept / float(h * w)
