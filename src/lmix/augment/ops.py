"""Crop, flip and normalise a batch of images ``(B, C, H, W)`` or sequences ``(B, C, L)`` on its device.

See the package docstring. A sequence's "crop" is a random shift along L with zero fill, and its
"flip" is time reversal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lmix._checks import check_probability, is_integer
from lmix.errors import LmixTypeError, LmixValueError

__all__ = [
    "crop_at",
    "crop_flip_at",
    "flip_where",
    "normalize",
    "normalize_with",
    "random_crop",
    "random_hflip",
    "sample_crop_offsets",
    "sample_flips",
]


_SHAPES = "(B, C, H, W) images or (B, C, L) sequences"


def _check_batch(images: object) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise LmixTypeError(f"images must be a torch.Tensor of shape {_SHAPES}, got {type(images).__name__}")
    if images.ndim not in (3, 4):
        raise LmixValueError(f"images must have shape {_SHAPES}, got shape {tuple(images.shape)}")
    return images


def _check_spatial_dims(spatial_dims: object) -> int:
    if not is_integer(spatial_dims) or spatial_dims not in (1, 2):
        raise LmixValueError(f"spatial_dims must be 1 (sequences) or 2 (images), got {spatial_dims!r}")
    return int(spatial_dims)


def _check_padding(padding: object) -> int:
    if not is_integer(padding) or padding < 0:
        raise LmixValueError(f"padding must be an integer >= 0, got {padding!r}")
    return int(padding)


def _check_generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise LmixTypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def sample_crop_offsets(n: int, padding: int, *, generator: torch.Generator, spatial_dims: int = 2) -> torch.Tensor:
    """Draw per-sample crop offsets for :func:`crop_at`.

    Args:
        n: number of samples.
        padding: zero padding on each side; offsets lie in ``[0, 2 * padding]``.
        generator: source of randomness; the offsets are drawn on its device.
        spatial_dims: 2 for images (a row and a column offset), 1 for sequences (a shift along L).

    Returns:
        int64 ``(n, spatial_dims)``: (row, column) or (position,) offset into the padded sample, on
        the generator's device.
    """
    padding = _check_padding(padding)
    generator = _check_generator(generator)
    spatial_dims = _check_spatial_dims(spatial_dims)
    return torch.randint(0, 2 * padding + 1, (n, spatial_dims), generator=generator, device=generator.device)


def sample_flips(n: int, *, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Draw per-sample flip decisions for :func:`flip_where`: bool ``(n,)``, True with probability ``p``."""
    p = check_probability(p, name="p")
    generator = _check_generator(generator)
    return torch.rand(n, generator=generator, device=generator.device) < p


def crop_at(images: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad every image by ``padding`` on each side and cut the original size at per-sample offsets.

    Offset ``(padding, padding)`` returns the image unchanged; ``(0, 0)`` shifts its content down and
    right by ``padding`` pixels, filling with zeros. A sequence ``(B, C, L)`` takes one offset per
    sample: ``(0,)`` delays it by ``padding`` steps. One batched gather, no per-sample Python.

    Args:
        images: ``(B, C, H, W)`` or ``(B, C, L)``, any dtype.
        offsets: int ``(B, 2)`` (row, column), or ``(B, 1)`` for sequences, in ``[0, 2 * padding]``.
        padding: zero padding on each side.

    Returns:
        The shape, dtype and device of ``images``.
    """
    return crop_flip_at(images, offsets=offsets, flips=None, padding=padding)


def crop_flip_at(
    images: torch.Tensor, *, offsets: torch.Tensor | None, flips: torch.Tensor | None, padding: int
) -> torch.Tensor:
    """:func:`crop_at` followed by :func:`flip_where`, fused into a single gather.

    A flipped crop reads the padded sample's last axis backwards, so both steps are one index
    computation; this is the loaders' hot path.

    Args:
        images: ``(B, C, H, W)`` or ``(B, C, L)``, any dtype.
        offsets: int ``(B, 2)`` (images) or ``(B, 1)`` (sequences) in ``[0, 2 * padding]``, or
            ``None`` for no crop.
        flips: bool ``(B,)``, or ``None`` for no flip.
        padding: zero padding on each side (ignored without ``offsets``).

    Returns:
        The shape, dtype and device of ``images``.
    """
    images = _check_batch(images)
    padding = _check_padding(padding)
    b, c = images.shape[:2]
    spatial = images.shape[2:]
    dims = len(spatial)
    dev = images.device
    if offsets is not None and offsets.shape != (b, dims):
        raise LmixValueError(f"offsets must have shape (B, {dims}) = ({b}, {dims}), got {tuple(offsets.shape)}")
    if flips is not None and flips.shape != (b,):
        raise LmixValueError(f"flips must have shape (B,) = ({b},), got {tuple(flips.shape)}")
    if offsets is None or padding == 0:
        return images.clone() if flips is None else flip_where(images, flips)
    offsets = offsets.to(device=dev, dtype=torch.long)
    padded = F.pad(images, (padding, padding) * dims)  # zeros: black in pixel space
    w = spatial[-1]
    ar_w = torch.arange(w, device=dev)
    cols = ar_w.expand(b, w) if flips is None else torch.where(flips.to(dev, torch.bool).view(b, 1), ar_w.flip(0), ar_w)
    cols = cols + offsets[:, -1:]  # (B, W) position along the padded last axis
    if dims == 1:
        return padded.gather(2, cols.view(b, 1, w).expand(b, c, w))
    h = spatial[0]
    rows = torch.arange(h, device=dev) + offsets[:, 0:1]  # (B, H)
    flat = (rows.unsqueeze(2) * (w + 2 * padding) + cols.unsqueeze(1)).view(b, 1, h * w).expand(b, c, h * w)
    return padded.view(b, c, -1).gather(2, flat).view(b, c, h, w)


def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images (reverse the sequences in time) whose ``mask`` entry is True.

    Args:
        images: ``(B, C, H, W)`` or ``(B, C, L)``, any dtype.
        mask: bool ``(B,)``.

    Returns:
        The shape, dtype and device of ``images``.
    """
    images = _check_batch(images)
    if mask.shape != (images.shape[0],):
        raise LmixValueError(f"mask must have shape (B,) = ({images.shape[0]},), got {tuple(mask.shape)}")
    mask = mask.to(device=images.device, dtype=torch.bool)
    return torch.where(mask.view(-1, *([1] * (images.ndim - 1))), images.flip(-1), images)


def random_crop(images: torch.Tensor, padding: int, *, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding (torchvision ``RandomCrop(size, padding)``), one offset per sample.

    Args:
        images: ``(B, C, H, W)``, or ``(B, C, L)`` (a random shift by up to ``padding`` steps).
        padding: zero padding on each side.
        generator: source of randomness, drawn on its own device.

    Returns:
        The shape, dtype and device of ``images``.
    """
    images = _check_batch(images)
    offsets = sample_crop_offsets(images.shape[0], padding, generator=generator, spatial_dims=images.ndim - 2)
    return crop_at(images, offsets, padding)


def random_hflip(images: torch.Tensor, *, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right (reverse each sequence) with probability ``p``, drawn on the generator's device."""
    images = _check_batch(images)
    return flip_where(images, sample_flips(images.shape[0], generator=generator, p=p))


def normalize(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *, spatial_dims: int = 2
) -> torch.Tensor:
    """Per-channel normalisation to float32: ``(x - mean) / std``.

    uint8 input is first scaled to [0, 1] (divided by 255); float input is taken as it is (images in
    [0, 1], sequences in their own units, the units of ``mean`` and ``std``). For images the
    operations are the same, in the same order, as torchvision's ``ToDtype(float32, scale=True)``
    followed by ``Normalize``, so both data paths give bit-identical tensors.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)``; with ``spatial_dims=1``, ``(B, C, L)`` or ``(C, L)``.
            uint8 or floating point.
        mean: C per-channel means (images: on the [0, 1] scale).
        std: C per-channel standard deviations (> 0), in the units of ``mean``.
        spatial_dims: 2 for images, 1 for sequences.

    Returns:
        float32 tensor of the same shape, on the same device.
    """
    spatial_dims = _check_spatial_dims(spatial_dims)
    if not isinstance(images, torch.Tensor) or images.ndim not in (spatial_dims + 1, spatial_dims + 2):
        shapes = "(B, C, H, W) or (C, H, W)" if spatial_dims == 2 else "(B, C, L) or (C, L)"
        raise LmixValueError(f"images must be a tensor of shape {shapes}")
    c = images.shape[-spatial_dims - 1]
    # Validate on Python floats: checking device tensors would force a host sync on every batch.
    mean_f, std_f = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean_f) != c or len(std_f) != c:
        raise LmixValueError(f"mean and std must have one entry per channel ({c}), got {len(mean_f)} and {len(std_f)}")
    if not all(math.isfinite(m) for m in mean_f) or not all(math.isfinite(s) and s > 0 for s in std_f):
        raise LmixValueError(f"std must be finite and > 0 and mean finite, got mean={mean_f}, std={std_f}")
    mean_t = torch.tensor(mean_f, dtype=torch.float32, device=images.device)
    std_t = torch.tensor(std_f, dtype=torch.float32, device=images.device)
    return normalize_with(images, mean_t, std_t, spatial_dims=spatial_dims)


def normalize_with(
    images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, spatial_dims: int = 2
) -> torch.Tensor:
    """:func:`normalize` with ``mean`` and ``std`` already float32 ``(C,)`` tensors on the images' device.

    No validation and no host-device copy: for loaders that call it on every batch.
    """
    if images.dtype == torch.uint8:
        out = images.to(torch.float32).mul_(1.0 / 255)
    elif images.is_floating_point():
        out = images.to(torch.float32, copy=True)
    else:
        raise LmixTypeError(f"images must be uint8 or floating point, got {images.dtype}")
    shape = (-1,) + (1,) * spatial_dims
    return out.sub_(mean.view(shape)).div_(std.view(shape))
