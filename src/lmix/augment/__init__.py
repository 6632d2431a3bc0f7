"""Batched, device-side augmentation: random crop with zero padding, horizontal flip, normalisation.

Every function works on a whole batch of images ``(B, C, H, W)`` or sequences ``(B, C, L)`` (for
which the crop is a random shift along L with zero fill and the flip is time reversal) with tensor
ops only (no per-sample Python), and all randomness comes from an explicit ``torch.Generator``,
drawn on the generator's device.
The ``*_at`` / ``*_where`` variants apply pre-drawn parameters, so a loader can draw a whole
epoch's parameters at once and stay reproducible batch by batch.
"""

from lmix.augment.ops import (
    crop_at,
    crop_flip_at,
    flip_where,
    normalize,
    normalize_with,
    random_crop,
    random_hflip,
    sample_crop_offsets,
    sample_flips,
)

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
