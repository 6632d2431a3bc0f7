"""Fourier masks (FMix / LMix) and box masks (CutMix / Cutout), vectorised over the batch, for 1, 2
or 3 spatial axes (sequences (L,), images (H, W), volumes (D, H, W)).

The mask of docs/method.md ("The LMix mask, step by step"), steps 3-8, in 2-D:

* ``f[u, v] = sqrt(fy[u]^2 + fx[v]^2)`` with ``fftfreq(H)``, ``rfftfreq(W)``;
* ``H_lp = (f_min / max(f, f_min)) ** decay`` with ``f_min = 1 / max(H, W)``;
* ``H_hp = 1 - H_lp``;
* ``G = irfft2((1 + k * H_hp) * H_lp * Z)``;
* the ``round(lam * H * W)`` largest pixels of ``G`` are 1.

In N-D the radial frequency runs over every axis (``fftfreq`` on all but the last, ``rfftfreq``
on the last), ``f_min = 1 / max(size)``, and ``irfftn`` makes the grey image.

Isotropy: a complex field drawn independently in every bin of the half spectrum is not
Hermitian on its self-conjugate planes, the last-axis bins ``0`` (and ``n/2`` for an even last
side); ``irfftn`` silently keeps only their Hermitian part, which halves the power there and
biases the masks towards structure along the last axis. We project those planes onto their
Hermitian part over the other axes (index ``-u mod n`` on each of them jointly) scaled by
``sqrt(2)``, which gives exactly the statistics of the real part of a full complex field
(every frequency bin with the same expected power), at the cost of one cheap gather. In 2-D
the planes are the columns ``fx = 0`` and ``fx = W/2``; in 1-D they are the bins 0 and ``L/2``,
which become real (``sqrt(2) Re z``).

Soft masks (``max_soft > 0``, the FMix reference's ``binarise_mask``): around the threshold the
mask ramps linearly from 1 to 0 over ``2 * soft`` pixels (``soft_top_mask``); its mean stays
exactly ``round(lam * N) / N``.

On the CPU the same bits come from cheaper routes: the top-n threshold by a selection instead
of a sort (``_nth_largest``, or ``torch.kthvalue`` row by row for a few rows), the 2-D spectrum
transposed before ``irfft2`` (``_grey_2d_cpu``), and temporaries below ``SCRATCH_BYTES`` in
memory each thread keeps and reuses (``_scratch``: a few MB per thread at most).
"""

from __future__ import annotations

import functools
import math
import threading
from typing import NamedTuple

import torch

from lmix._checks import is_integer
from lmix.errors import LmixValueError
from lmix.mixing.validation import check_decay, check_k, check_lam, check_max_soft, check_size

__all__ = [
    "frequency_magnitude",
    "lowpass_filter",
    "emphasis_filter",
    "fourier_noise",
    "fourier_top_masks",
    "fourier_masks",
    "binarise_top",
    "top_mask",
    "soft_top_mask",
    "sharpen",
    "box_masks",
    "boxes",
    "cutmix_sides",
]


def frequency_magnitude(size: tuple[int, ...], *, device: torch.device | None = None) -> torch.Tensor:
    """(*size[:-1], size[-1]//2+1) float32 radial frequency in cycles per pixel.

    ``sqrt(fy^2 + fx^2)`` in 2-D (``fftfreq(H)``, ``rfftfreq(W)``); in N-D the squares of
    ``fftfreq`` on every axis but the last and ``rfftfreq`` on the last, summed in axis order.
    """
    d = len(size)
    squares = None
    for axis, n in enumerate(size):
        freq = torch.fft.rfftfreq if axis == d - 1 else torch.fft.fftfreq
        f = freq(n, device=device, dtype=torch.float32).view([-1 if a == axis else 1 for a in range(d)])
        squares = f**2 if squares is None else squares + f**2
    return torch.sqrt(squares)


def lowpass_filter(size: tuple[int, ...], decay: float, *, device: torch.device | None = None) -> torch.Tensor:
    """(*size[:-1], size[-1]//2+1) low-pass transfer ``(f_min / max(f, f_min)) ** decay``, ``f_min = 1 / max(size)``:
    1 at DC, in (0, 1]."""
    f_min = 1.0 / max(size)
    f = frequency_magnitude(size, device=device)
    return (f_min / f.clamp_min(f_min)) ** decay


def emphasis_filter(
    size: tuple[int, ...], decay: float, k: float, *, device: torch.device | None = None
) -> torch.Tensor:
    """(*size[:-1], size[-1]//2+1) LMix transfer ``(1 + k * H_hp) * H_lp`` (eq. 5); ``k = 0`` is FMix's ``H_lp``."""
    h_lp = lowpass_filter(size, decay, device=device)
    return (1.0 + k * (1.0 - h_lp)) * h_lp


@functools.lru_cache(maxsize=32)
def _spectral_constants(
    size: tuple[int, ...], decay: float, k: float, device: str
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None]:
    """The emphasis filter, per axis but the last the index ``-u mod n``, and the filter transposed
    (contiguous; 2-D only, else None), cached per size and device.

    Recomputing them is a dozen small kernels per call, a large share of the cost of one
    small mask (per-batch mode). Shared tensors: never modify them in place.
    """
    filt = emphasis_filter(size, decay, k, device=torch.device(device))
    flips = tuple((-torch.arange(n, device=device)) % n for n in size[:-1])
    return filt, flips, filt.T.contiguous() if len(size) == 2 else None


@functools.lru_cache(maxsize=32)
def _plane_index(shape: tuple[int, int, int], flip: torch.Tensor) -> torch.Tensor:
    """``flip`` expanded to ``shape`` (a gather index), cached. Shared: never modify it in place."""
    return flip.expand(shape)


#: Largest temporary (bytes) that ``_scratch`` keeps for reuse; larger ones are allocated afresh
#: (measured: at 224x224 reused buffers of 1 MB and more were slower than fresh ones, which the
#: allocator hands back still in cache, and page faults did not occur).
SCRATCH_BYTES = 3 << 18


class _ScratchStore(threading.local):
    """Per-thread scratch memory: one uint8 buffer per slot, and the views handed out on it."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.views: dict[tuple, torch.Tensor] = {}


_scratch_store = _ScratchStore()


def _scratch(slot: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """An uninitialised tensor on memory that this thread reuses on every call with the same ``slot`` (CPU).

    Freshly allocated temporaries of a few hundred KB are mapped and page-faulted in again on
    every call whenever the C allocator has returned them to the system in between, which it
    does or not depending on the process's allocation history: that cost more than the rest of
    a 32x32 mask. One buffer per slot and thread (at most ``SCRATCH_BYTES``; larger tensors,
    and tensors on other devices, are allocated afresh), so calls from other threads never
    share memory. The tensor must not outlive the caller's use of the slot: never return it,
    and never use overlapping parts of a slot for two live tensors (``_scratch_views``).
    """
    return _scratch_views(slot, ((shape, dtype),), device)[0]


def _scratch_views(
    slot: str,
    specs: tuple[tuple[tuple[int, ...], torch.dtype], ...],
    device: torch.device | None = None,
    offset: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Views ``(shape, dtype)`` of one piece of ``_scratch`` memory, all of the same byte size, at
    ``offset`` bytes (a multiple of 64) into the slot. Cached: no view operations on later calls."""
    nbytes = math.prod(specs[0][0]) * specs[0][1].itemsize
    if device is not None and device.type != "cpu":
        buf = torch.empty(nbytes, dtype=torch.uint8, device=device)
        return tuple(buf.view(dtype).view(shape) for shape, dtype in specs)
    store = _scratch_store
    key = (slot, offset, specs)
    views = store.views.get(key)
    if views is not None:
        return views
    end = offset + nbytes
    if end > SCRATCH_BYTES:
        buf = torch.empty(nbytes, dtype=torch.uint8)
        return tuple(buf.view(dtype).view(shape) for shape, dtype in specs)
    # Normal tensors even when first made under torch.inference_mode(): a later call outside it
    # may not write into inference tensors or views made in that mode.
    with torch.inference_mode(False):
        buf = store.buffers.get(slot)
        if buf is None or buf.numel() < end:
            buf = store.buffers[slot] = torch.empty(end, dtype=torch.uint8)
            store.views = {k: v for k, v in store.views.items() if k[0] != slot}  # those were on the old buffer
        if len(store.views) > 64:
            store.views.clear()
        views = store.views[key] = tuple(buf[offset:end].view(dtype).view(shape) for shape, dtype in specs)
    return views


def _hermitian_planes(z: torch.Tensor, size: tuple[int, ...], flips: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Make the self-conjugate planes of a half spectrum (B, *size[:-1], n//2+1) Hermitian, in place.

    The planes are the last-axis bins 0 and n/2 (even n) or bin 0 (odd n); Hermitian over the
    other axes jointly: ``Z[-u, -v] = conj(Z[u, v])``. ``z`` must be a fresh tensor owned by the
    caller (it is modified and returned). ``flips`` holds ``(-arange(n)) % n`` for every axis but
    the last (``_spectral_constants``).
    """
    width = size[-1]
    # Bins 0 and n/2 (even n) or bin 0 (odd n) of the last axis, as a view: n//2 + 1 bins, step n/2.
    zc = z[..., 0 :: width // 2] if width % 2 == 0 else z[..., :1]
    # (zc + conj(zc[flipped])) / sqrt(2), in place on one gathered copy: the same operations
    # (complex addition commutes exactly), fewer temporaries.
    t = zc
    for axis, flip in enumerate(flips, start=1):
        t = torch.index_select(t, axis, flip)
    t = t.conj_physical_() if flips else t.conj_physical()
    torch.mul(t.add_(zc), 1.0 / math.sqrt(2.0), out=zc)
    return z


def _check_count(n: object) -> int:
    if not is_integer(n) or n < 0:
        raise LmixValueError(f"n must be a non-negative integer (number of images), got {n!r}")
    return int(n)


def _spectra(
    n: int, size: tuple[int, ...], generator: torch.Generator | None, device: torch.device | None
) -> torch.Tensor:
    """(n, *size[:-1], size[-1]//2+1) complex64 standard normal half spectra (drawn with ``generator``
    on its device, in one call: the numbers must not depend on how the masks are grouped later), on
    the output device."""
    if generator is None:
        generator = torch.Generator(device=device or "cpu")
        generator.seed()
    gdev = generator.device
    # Real and imaginary parts are independent N(0, 1): one randn call of twice the size.
    shape = (n, *size[:-1], size[-1] // 2 + 1, 2)
    if gdev.type == "cpu":
        # The same draws into reused memory (the caller consumes them before its next call).
        parts = torch.randn(shape, generator=generator, out=_scratch("noise", shape, torch.float32))
    else:
        parts = torch.randn(shape, generator=generator, device=gdev, dtype=torch.float32)
    out_dev = torch.device(device) if device is not None else gdev
    return torch.view_as_complex(parts if out_dev == gdev else parts.to(out_dev))


def _grey(z: torch.Tensor, size: tuple[int, ...], decay: float, k: float) -> torch.Tensor:
    """(m, *size) grey images from (m, *size[:-1], size[-1]//2+1) normal half spectra (``z`` is modified in place)."""
    filt, flips, filt_t = _spectral_constants(size, decay, k, str(z.device))
    # Many short columns (small images, large groups): the transposed order pays for its copy.
    if len(size) == 2 and z.device.type == "cpu" and z.shape[0] * z.shape[1] >= 2048:
        return _grey_2d_cpu(z, size, filt_t, flips[0])
    z = _hermitian_planes(z, size, flips).mul_(filt)
    if len(size) == 2:
        return torch.fft.irfft2(z, s=size)
    if len(size) == 1:
        return torch.fft.irfft(z, n=size[0])
    return torch.fft.irfftn(z, s=size, dim=(-3, -2, -1))


def _grey_2d_cpu(z: torch.Tensor, size: tuple[int, ...], filt_t: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``_grey`` in 2-D on the CPU: the same operations on every element, the same bits, less copying.

    ``irfft2`` transforms the columns first and, with the rows contiguous, copies the spectrum
    into column-major order for it. Making that copy here instead, before the Hermitian fix and
    the filter, spares ``irfft2`` its copy and turns the fix's strided columns into contiguous
    rows. The column transforms then see the very same contiguous data (same bits).

    Args:
        z: (m, H, W//2+1) complex64 normal half spectra.
        filt_t: (W//2+1, H) the transposed emphasis filter, contiguous.
        flip: (H,) int64 ``(-arange(H)) % H``.
    """
    width = size[-1]
    zt = _scratch("spectrum", (z.shape[0], z.shape[2], z.shape[1]), z.dtype).copy_(z.transpose(1, 2))
    # Columns 0 and W/2 of z (its self-conjugate planes) are rows of zt: the operations of
    # _hermitian_planes on them.
    zc = zt[:, 0 :: width // 2] if width % 2 == 0 else zt[:, :1]
    t = torch.gather(zc, 2, _plane_index(tuple(zc.shape), flip)).conj_physical_()
    torch.mul(t.add_(zc), 1.0 / math.sqrt(2.0), out=zc)
    return torch.fft.irfft2(zt.mul_(filt_t).transpose(1, 2), s=size)


def fourier_noise(
    n: int,
    size: tuple[int, ...],
    *,
    decay: float = 3.0,
    k: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(n, *size) float32 grey-scale images ``G`` with spectrum ``(1 + k H_hp) H_lp`` (docs/method.md).

    ``size`` is (L,), (H, W) or (D, H, W), every side >= 2. The complex noise is drawn with
    ``generator`` on its device and the result is returned on ``device`` (default: the
    generator's device).
    """
    size = check_size(size)
    decay = check_decay(decay)
    k = check_k(k, name="k")
    z = _spectra(_check_count(n), size, generator, device)
    return _grey(z, size, decay, k)


#: Pixels per group of masks made at once on the CPU (spectrum, grey image, selection): the
#: temporaries of a group stay small enough to be reused by the allocator instead of being
#: mapped and page-faulted in afresh for every batch, which cost more than the FFT at 224x224.
MASK_CHUNK = 1 << 18


def fourier_top_masks(
    lam: torch.Tensor,
    size: tuple[int, ...],
    *,
    decay: float,
    k: float,
    generator: torch.Generator | None,
    max_soft: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``top_mask(fourier_noise(len(lam), size, ...), lam)``, the same bits, made in groups on the CPU.

    Args:
        lam: (B,) floating target areas in [0, 1], on the device of the masks.
        size: (L,), (H, W) or (D, H, W).
        max_soft: 0 for binary masks; above, ``soft_top_mask``'s soft edges (same noise).

    Returns:
        ((B, 1, *size) masks: bool, or float32 weights in [0, 1] when ``max_soft > 0``; (B,) float32
        exact areas ``round(lam * N) / N``, N = the number of pixels), on ``lam``'s device.
    """
    return _fourier_top_masks(lam, size, decay=decay, k=k, generator=generator, max_soft=max_soft, as_float=False)


def _fourier_top_masks(
    lam: torch.Tensor,
    size: tuple[int, ...],
    *,
    decay: float,
    k: float,
    generator: torch.Generator | None,
    max_soft: float,
    as_float: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``fourier_top_masks``; with ``as_float``, binary masks come as float32 0/1 (the float32 form
    of the same masks, made directly: cheaper than a bool mask and a conversion)."""
    b = lam.shape[0]
    z = _spectra(b, size, generator, lam.device)
    numel = math.prod(size)
    step = b if lam.device.type != "cpu" else max(1, MASK_CHUNK // numel)
    dtype = torch.float32 if as_float or max_soft > 0 else torch.bool

    def select(grey: torch.Tensor, part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _top_mask(grey, part, dtype) if max_soft == 0 else soft_top_mask(grey, part, max_soft)

    if step >= b:
        return select(_grey(z, size, decay, k), lam)
    masks = torch.empty((b, 1, *size), dtype=dtype, device=lam.device)
    areas = torch.empty(b, dtype=torch.float32, device=lam.device)
    for start in range(0, b, step):
        stop = min(b, start + step)
        masks[start:stop], areas[start:stop] = select(_grey(z[start:stop], size, decay, k), lam[start:stop])
    return masks, areas


def _candidates(values: torch.Tensor, inside: torch.Tensor, words: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    """``values[inside]`` (row-major order) for a sparse (B, L) mask ``inside``, scanning it 8 bytes at a time.

    ``torch.masked_select`` scans every element of the mask; reading the bool mask as int64
    words first locates the few words that hold a candidate, so the element-wise scan only
    runs over those. Same result as ``values[inside]``. ``words``: ``inside`` viewed as (N/8,)
    int64 and as (N/8, 8) bool, if the caller has them (else they are made here).
    """
    if not words:
        count = inside.numel()
        word = next(((t, s) for t, s in ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2)) if count % s == 0), None)
        if word is None:
            return torch.masked_select(values, inside)
        itype, width = word
        words = (inside.view(-1).view(itype), inside.view(-1, width))
    flat_words, rows = words
    # Flat index of every word that holds a candidate, in row-major order.
    hit = flat_words.nonzero().view(-1)
    return torch.masked_select(values.view(-1, rows.shape[1]).index_select(0, hit), rows.index_select(0, hit))


def _sort_within_rows(
    cand: torch.Tensor, rows: torch.Tensor, rows_hi: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """(M,) values grouped by row, ``counts[i]`` of them in row i -> the order that sorts them ascending within each row.

    float32: one sort of the int64 keys ``row << 32 | order-preserving bits of the value``
    (``rows_hi`` is ``rows << 32``; -0.0 sorts below +0.0, which only matters among equal
    values). Other dtypes: a sort by value, then a stable sort by row.
    """
    if cand.dtype == torch.float32:
        bits = cand.view(torch.int32)
        # Negative floats order backwards as integers: flip all bits but the sign.
        key = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64)
        key += torch.repeat_interleave(rows_hi, counts, output_size=cand.numel())
        return torch.sort(key).indices
    order = torch.sort(cand).indices
    rows = torch.repeat_interleave(rows, counts, output_size=cand.numel()).index_select(0, order)
    return order.index_select(0, torch.argsort(rows, stable=True))


class _Plan(NamedTuple):
    """Shape-dependent constants of ``_nth_largest`` (see ``_selection_plan``)."""

    nb: int
    itype: torch.dtype
    rows: torch.Tensor
    rows_hi: torch.Tensor
    base_i: torch.Tensor
    bucket_specs: tuple
    flag_specs: tuple
    flag_offset: int


@functools.lru_cache(maxsize=32)
def _selection_plan(b: int, length: int, device: str) -> _Plan:
    """The bucket count and id type, per-row constants and scratch layout of ``_nth_largest``, cached
    (each small op costs a microsecond or more on CPU). Shared tensors: never modify them in place.

    Per-row constants: (B,) int64 row ids, (B,) int64 ``row << 32``, and the (B, 1) first bucket id
    of each row ``row * nb`` in the id type.
    """
    nb = _bucket_count(b, length)
    # The narrowest integer that holds every bucket id: converting to it, comparing it and
    # counting it are cheaper on CPU.
    itype = torch.int16 if b * nb < 2**15 else torch.int32 if b * nb < 2**31 else torch.int64
    rows = torch.arange(b, device=device)
    base = (rows * nb)[:, None]
    count = b * length
    flag_specs = (((b, length), torch.uint8), ((b, length), torch.bool))
    if count % 8 == 0:  # the flags as int64 words too (_candidates)
        flag_specs += (((count // 8,), torch.int64), ((count // 8, 8), torch.bool))
    return _Plan(
        nb=nb,
        itype=itype,
        rows=rows,
        rows_hi=rows << 32,
        base_i=base.to(itype),
        bucket_specs=(((b, length), itype), ((count,), itype)),
        flag_specs=flag_specs,
        flag_offset=-(-count * itype.itemsize // 64) * 64,
    )


def _bucket_count(b: int, length: int) -> int:
    """Buckets per row of ``_nth_largest`` (any count gives the same result; this one is the fastest measured).

    Finer buckets leave fewer candidates to sort, at the price of a longer histogram; int16
    bucket ids (``b * nb < 2**15``) are converted, compared and counted faster than int32 ones,
    so a count that keeps them int16 wins unless it is much coarser.
    """
    nb = min(max(16, length // 4), 8192)
    if b * nb >= 2**15:
        nb16 = (2**15 - 1) // b
        nb = nb16 if nb16 >= max(16, length // 16) else max(16, min(4096, length // 8))
    return nb


def _nth_largest(
    values: torch.Tensor, n: torch.Tensor, vmin: torch.Tensor, span: torch.Tensor, scratch: torch.Tensor | None = None
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
        scratch: a (B, L) tensor of ``values.dtype`` to work in (its contents are destroyed), or
            None for this thread's scratch memory.

    Returns:
        ((B, 1) thresholds of ``values.dtype``, the (B, L) floating scratch, which the caller may
        overwrite).
    """
    b, length = values.shape
    device = values.device
    plan = _selection_plan(b, length, str(device))
    nb, itype = plan.nb, plan.itype
    if scratch is None or scratch.dtype != values.dtype:
        scratch = _scratch("select", (b, length), values.dtype, device)
    # Per-row quantities stay (B, 1) where they can: fewer reshaping operations.
    # Values above the threshold's bucket or in it, at most. (torch.rsub and reciprocal: the
    # reflected operators ``int - tensor`` and ``float / tensor`` go through Python wrappers.)
    above = torch.rsub(n.clamp(1, length)[:, None], length)
    # nb - 0.5: the row maximum lands below nb despite rounding. A constant row (or a span so
    # small that the scale overflows) gets scale 0: one bucket.
    scale = span.reciprocal().mul_(nb - 0.5).nan_to_num_(nan=0.0, posinf=0.0)
    # Bucket row * nb + floor((v - vmin) * scale): monotone in v within a row (each rounding
    # is), in [row * nb, row * nb + nb). In place on the (B, L) scratch (a broadcast addcmul is
    # several times slower on CPU); the row's base is added to the integer ids, half the bytes
    # of the floats. The ids and the candidate flags go where _grey_2d_cpu's transposed
    # spectrum was: memory touched moments ago.
    bucket, bucket_flat = _scratch_views("spectrum", plan.bucket_specs, device)
    bucket.copy_(torch.sub(values, vmin, out=scratch).mul_(scale)).add_(plan.base_i)
    hist = torch.bincount(bucket_flat, minlength=b * nb).view(b, nb)
    below_or_in = hist.cumsum(1)  # values in buckets <= j, per row, ascending
    # The bucket holding the rank-th largest: the first whose running count passes L - rank.
    top = torch.searchsorted(below_or_in, above, right=True)  # (B, 1)
    n_inside = hist.gather(1, top).view(b)
    # The threshold is the j-th largest of its bucket (the values above it are the others).
    j = below_or_in.gather(1, top).sub_(above).view(b)
    flags, inside, *words = _scratch_views("spectrum", plan.flag_specs, device, plan.flag_offset)
    torch.eq(bucket, top.to(itype).add_(plan.base_i), out=flags)  # into uint8: CPU kernels writing bool are slow
    cand = _candidates(values, inside, tuple(words))  # grouped by row
    order = _sort_within_rows(cand, plan.rows, plan.rows_hi, n_inside)
    # Row i's candidates ascend in cand[order[ends[i] - n_inside[i] : ends[i]]]: the threshold
    # is the j-th from the end.
    threshold = cand.index_select(0, order.index_select(0, torch.cumsum(n_inside, 0).sub_(j)))
    return threshold.masked_fill_(n == 0, float("inf"))[:, None], scratch


def _top_by_sort(flat: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, L) values, (B,) counts -> (B, L) bool, True on the ``n`` largest (stable sort ties)."""
    b, length = flat.shape
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    rank_is_kept = torch.arange(length, device=flat.device)[None, :] < n[:, None]
    out = torch.empty((b, length), dtype=torch.bool, device=flat.device)
    out.scatter_(1, order, rank_is_kept)
    return out


def _top_by_rows(flat: torch.Tensor, n: torch.Tensor, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Same result as ``_top_by_sort`` for a few long rows: keep the values >= each row's n-th largest.

    ``torch.kthvalue`` finds the threshold without sorting the row (a 64x64 row: 7 times faster
    than the stable sort); a row where more than n values reach it (ties) or with a non-finite
    value is done by ``_top_by_sort``. ``dtype``: bool, or float32 for 0/1 floats.
    """
    b, length = flat.shape
    values = flat.detach() if flat.requires_grad else flat
    out = torch.empty((b, length), dtype=dtype, device=flat.device)
    for i, count in enumerate(n.tolist()):
        row, kept = values[i], out[i]
        if count == 0:
            kept.zero_()
            continue
        threshold = torch.kthvalue(row, length - count + 1).values
        torch.ge(row, threshold, out=kept)
        # A finite sum: no NaN (which kthvalue and the sort order differently) and no infinity.
        if int(kept.sum()) != count or not math.isfinite(float(row.sum())):
            kept.copy_(_top_by_sort(flat[i : i + 1], n[i : i + 1])[0])
    return out


def _uses_rows(b: int, length: int) -> bool:
    """Whether ``_top_by_rows`` is the fastest CPU selection: a few rows of 512 values or more
    (measured: about 10 us + 2.5 ns per value and row, against ~100 us for ``_top_by_threshold``
    and a stable sort that grows faster than linearly)."""
    return length >= 512 and b * (10 + length / 400) <= 80


def _top_by_threshold(
    flat: torch.Tensor, n: torch.Tensor, dtype: torch.dtype = torch.bool, n_float: torch.Tensor | None = None
) -> torch.Tensor:
    """Same result as ``_top_by_sort``: keep the values >= each row's n-th largest.

    Rows where that keeps more than ``n`` values (ties at the threshold) and rows with a NaN or
    an infinity are done by ``_top_by_sort``, so the output is identical to the sort's, ties
    included. ``dtype``: bool, or float32 for 0/1 floats. ``n_float``: ``n`` as float32, if the
    caller has it.
    """
    values = flat.detach() if flat.requires_grad else flat
    if values.dtype not in (torch.float32, torch.float64):
        values = values.to(torch.float32)  # exact for float16/bfloat16: same order
    values = values.contiguous()
    vmin = values.amin(1, keepdim=True)
    span = values.amax(1, keepdim=True) - vmin
    # A row's max - min is finite exactly when all its values are finite; one sum checks
    # every row at once (it can overflow only when spans are huge: then check row by row).
    finite = None if math.isfinite(float(span.sum())) else torch.isfinite(span[:, 0])
    if finite is not None and not bool(finite.all()):
        out = torch.empty(values.shape, dtype=dtype, device=values.device)
        out[~finite] = _top_by_sort(flat[~finite], n[~finite]).to(dtype)
        if bool(finite.any()):
            out[finite] = _top_by_threshold(flat[finite], n[finite], dtype)
        return out
    # values >= threshold as 1.0/0.0 (a bool mask from the float one: comparisons that write
    # bool are several times slower on CPU, the same bits). For float masks, the output itself
    # is the selection's scratch until the comparison overwrites it.
    out = None if dtype == torch.bool else torch.empty(values.shape, dtype=dtype, device=values.device)
    threshold, scratch = _nth_largest(values, n, vmin, span, out)
    ones = torch.ge(values, threshold, out=scratch if out is None else out)
    # More than n values >= the threshold: ties at it, which a threshold cannot split. (A float32
    # sum of ones is exact below 2**24 values.)
    kept = ones.sum(1) if ones.shape[1] < 2**24 else ones.sum(1, dtype=torch.float64)
    out = ones.to(torch.bool) if out is None else out
    if not torch.equal(kept, n if n_float is None or n_float.dtype != kept.dtype else n_float):
        tied = kept != n
        out[tied] = _top_by_sort(flat[tied], n[tied]).to(dtype)
    return out


def _counts(lam: torch.Tensor, numel: int, device: torch.device) -> torch.Tensor:
    """(B,) int64 ``round(lam * numel)`` (``torch.round``: half to even), computed in float64."""
    return (lam.to(torch.float64) * numel).round_().to(device=device, dtype=torch.int64)


def top_mask(grey: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample top-n selection: (B, *size) values, (B,) lam -> ((B, 1, *size) bool, (B,) float32 area).

    Exactly ``n = round(lam * N)`` True per sample (N = the number of pixels; ``torch.round``:
    half to even), placed on the largest values of ``grey``; among values equal to the
    threshold, the first in raster order are kept (the order of a stable descending sort).
    ``area = n / N``, which equals the float32 mean of the mask bit for bit.

    On CPU the threshold is found by selection instead of a full ``torch.argsort``, which
    dominated the cost of LMix masks; the result is the same, bit for bit.
    """
    return _top_mask(grey, lam, torch.bool)


def _top_mask(grey: torch.Tensor, lam: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``top_mask`` with (B, 1, *size) masks of ``dtype``: bool, or float32 0/1."""
    b, size = grey.shape[0], tuple(grey.shape[1:])
    numel = math.prod(size)
    n = _counts(lam, numel, grey.device)
    n_float = n.to(torch.float32)
    flat = grey.reshape(b, numel)
    # Below ~4096 values in all, the fixed cost of the selection outweighs sorting, unless the
    # rows are long enough for a selection row by row.
    if grey.device.type == "cpu" and _uses_rows(b, numel):
        out = _top_by_rows(flat, n, dtype)
    elif grey.device.type == "cpu" and b * numel > 4096:
        out = _top_by_threshold(flat, n, dtype, n_float)
    else:
        out = _top_by_sort(flat, n)
        out = out if dtype == torch.bool else _as_float(out)
    return out.reshape(b, 1, *size), n_float / numel


def soft_top_mask(grey: torch.Tensor, lam: torch.Tensor, max_soft: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample soft masks: (B, *size) values, (B,) lam -> ((B, 1, *size) float32 weights, (B,) float32 area).

    The FMix reference's ``binarise_mask`` with ``round`` for its random ``ceil``/``floor``: rank
    the pixels by value (stable descending sort, as ``top_mask``), ``n = round(lam * N)``,
    ``soft = floor(N * min(max_soft, lam, 1 - lam))``; ranks below ``n - soft`` get 1, the
    ``2 * soft`` ranks from ``n - soft`` on get ``linspace(1, 0, 2 * soft)``, the rest 0. The
    ramp's ends are exactly 1 and 0, so ``2 * soft - 2`` pixels are strictly between (none for
    ``soft <= 1``: then the mask is ``top_mask``'s). Rank ``n - soft + j`` gets ``t / (2 soft - 1)``
    with ``t = 2 soft - 1 - j``, computed as ``1 - (2 soft - 1 - t) / (2 soft - 1)`` below one half
    (exact in float32), so weights at ``t`` and ``2 soft - 1 - t`` sum to exactly 1: the weights
    sum to exactly ``n``, and ``area = n / N`` (as ``top_mask``'s) is the mask's exact mean. No
    weight is 1/2, and the pixels above 1/2 are exactly ``top_mask``'s n pixels.

    Args:
        grey: (B, *size) values.
        lam: (B,) floating target areas in [0, 1].
        max_soft: in [0, 0.5].
    """
    b, size = grey.shape[0], tuple(grey.shape[1:])
    numel = math.prod(size)
    n = _counts(lam, numel, grey.device)
    lam64 = lam.to(device=grey.device, dtype=torch.float64)
    eff = torch.minimum(lam64, 1.0 - lam64).clamp_max_(max_soft)
    soft = (eff * numel).floor_().to(torch.int64)
    order = torch.argsort(grey.reshape(b, numel), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(numel, device=grey.device).expand(b, numel))
    denom = (2 * soft - 1).clamp_min_(1)[:, None]
    # t = n + soft - 1 - rank: 2 soft - 1 at the ramp's first pixel, 0 at its last.
    t = torch.minimum((n + soft - 1)[:, None] - rank, denom).clamp_min_(0)
    high = t.to(torch.float32) / denom.to(torch.float32)
    low = 1.0 - (denom - t).to(torch.float32) / denom.to(torch.float32)
    weights = torch.where(t >= soft[:, None], high, low)
    weights = torch.where((soft == 0)[:, None], (rank < n[:, None]).to(torch.float32), weights)
    return weights.reshape(b, 1, *size), n.to(torch.float32) / numel


def binarise_top(grey: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Per-sample top-n binarisation: (B, *size) values, (B,) lam -> (B, 1, *size) float32 masks of 0 and 1.

    The float form of ``top_mask``: exactly ``round(lam * N)`` ones per sample.
    """
    return _as_float(top_mask(grey, lam)[0])


def _as_float(mask: torch.Tensor) -> torch.Tensor:
    """A float32 copy of a contiguous bool (or float) mask. Through uint8: CPU casts from bool are slow."""
    return mask.view(torch.uint8).to(torch.float32) if mask.dtype == torch.bool else mask.to(torch.float32)


def fourier_masks(
    lam: torch.Tensor,
    size: tuple[int, ...] | list[int],
    *,
    decay: float = 3.0,
    k: float = 0.0,
    max_soft: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LMix masks (docs/method.md, mask steps 3-8); ``k = 0`` gives FMix masks.

    Args:
        lam: (B,) floating tensor of target areas in [0, 1].
        size: (L,), (H, W) or (D, H, W), every side >= 2.
        decay: low-pass exponent delta >= 0 (larger: smoother masks).
        k: high-frequency emphasis >= 0 (0: FMix).
        max_soft: soft edges, in [0, 0.5] (0: binary masks; see ``soft_top_mask``).
        generator: source of all randomness; noise is drawn on its device. ``None`` uses a
            freshly, non-deterministically seeded generator (the global RNG is never used).

    Returns:
        (B, 1, *size) float32 tensor on ``lam``'s device: 0s and 1s, exactly ``round(lam[i] * N)``
        ones in mask ``i`` (N pixels); with ``max_soft > 0``, weights in [0, 1] summing to exactly
        ``round(lam[i] * N)``.
    """
    lam = check_lam(lam)
    check_decay(decay)
    check_k(k, name="k")
    max_soft = check_max_soft(max_soft)
    size = check_size(size)
    if generator is None:
        generator = torch.Generator(device=lam.device)
        generator.seed()
    return _fourier_top_masks(lam, size, decay=decay, k=k, generator=generator, max_soft=max_soft, as_float=True)[0]


def sharpen(images: torch.Tensor, *, decay: float, k: float) -> torch.Tensor:
    """Apply the emphasis ``1 + k * H_hp`` to every channel in the frequency domain (docs/method.md, mask step 10).

    Args:
        images: (B, C, L), (B, C, H, W) or (B, C, D, H, W) floating or integer tensor (integers are
            rounded back); the filter runs over the spatial axes (all after the first two).

    Returns:
        Tensor of the same shape and dtype; the DC component (image mean) is unchanged.
    """
    size = tuple(images.shape[2:])
    gain = 1.0 + k * (1.0 - lowpass_filter(size, decay, device=images.device))
    x = images.to(torch.float32)
    if len(size) == 2:
        out = torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=size)
    else:
        dims = tuple(range(-len(size), 0))
        out = torch.fft.irfftn(torch.fft.rfftn(x, dim=dims) * gain, s=size, dim=dims)
    if not images.is_floating_point():  # uint8 images: round and clip to the dtype's range
        info = torch.iinfo(images.dtype)
        out = out.round_().clamp_(info.min, info.max)
    return out.to(images.dtype)


def cutmix_sides(lam: torch.Tensor, size: tuple[int, ...]) -> list[torch.Tensor]:
    """The CutMix paper's box sides for kept shares ``lam``: ``int(n * (1 - lam) ** (1 / d))`` on each axis.

    The side ratio's d-th power is ``1 - lam``, so the box holds that share of the elements before
    clipping; ``sqrt`` in 2-D (the 2-D CutMix's bits) and no root in 1-D.

    Args:
        lam: (B,) floating shares in [0, 1].
        size: (L,), (H, W) or (D, H, W).

    Returns:
        Per spatial axis, (B,) int64 box sides on ``lam``'s device.
    """
    d = len(size)
    cut = 1.0 - lam.double()
    ratio = torch.sqrt(cut) if d == 2 else cut if d == 1 else cut ** (1.0 / d)
    return [(side * ratio).long() for side in size]


def boxes(
    centres: tuple[torch.Tensor, ...], sides: tuple[torch.Tensor, ...], size: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks that are 0 inside axis-aligned boxes (segments, rectangles, cuboids) clipped at the border, 1 elsewhere.

    On every axis the box spans ``[c - s // 2, c - s // 2 + s)``, clipped to ``[0, n)``.

    Args:
        centres: per spatial axis, (B,) int64 box centres (may lie anywhere).
        sides: per spatial axis, (B,) int64 box sides before clipping.
        size: (L,), (H, W) or (D, H, W).

    Returns:
        ((B, 1, *size) float32 masks, (B,) float32 share of ones: ``1 - clipped volume / N``).
    """
    d = len(size)
    inside, volume = None, None
    for axis, (centre, side, n) in enumerate(zip(centres, sides, size, strict=True)):
        start = (centre - side // 2).clamp(0, n)
        stop = (centre - side // 2 + side).clamp(0, n)
        index = torch.arange(n, device=centre.device)
        in_axis = (index[None, :] >= start[:, None]) & (index[None, :] < stop[:, None])  # (B, n)
        in_axis = in_axis.view(-1, *(n if a == axis else 1 for a in range(d)))
        inside = in_axis if inside is None else inside & in_axis
        volume = stop - start if volume is None else volume * (stop - start)
    keep = (~inside).to(torch.float32).unsqueeze(1)
    numel = math.prod(size)
    # One rounding (integer count / pixels), so that lam equals the mask's mean bit for bit.
    return keep, (numel - volume).to(torch.float32) / float(numel)


def box_masks(
    centre_y: torch.Tensor,
    centre_x: torch.Tensor,
    box_h: torch.Tensor,
    box_w: torch.Tensor,
    size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D ``boxes``: masks that are 0 inside axis-aligned boxes clipped at the border, 1 elsewhere.

    Args:
        centre_y, centre_x: (B,) int64 box centres (may lie anywhere in the image).
        box_h, box_w: (B,) int64 box sizes before clipping.
        size: (H, W).

    Returns:
        ((B, 1, H, W) float32 masks, (B,) float32 share of ones: ``1 - clipped area / (H W)``).
    """
    return boxes((centre_y, centre_x), (box_h, box_w), tuple(size))
