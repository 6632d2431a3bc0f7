"""Argument checks shared by the mixing core. Every message says what was wrong and what is allowed."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmix._checks import is_finite_real, is_integer
from lmix.errors import LmixTypeError, LmixValueError

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_positive(value: object, *, name: str) -> float:
    if not is_finite_real(value) or float(value) <= 0:  # type: ignore[arg-type]
        raise LmixValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_alpha(alpha: object) -> float:
    return check_positive(alpha, name="alpha")


def check_decay(decay: object) -> float:
    if not is_finite_real(decay) or float(decay) < 0:  # type: ignore[arg-type]
        raise LmixValueError(f"decay must be a finite number >= 0, got {decay!r}")
    return float(decay)  # type: ignore[arg-type]


def check_k(k: object, *, name: str = "k") -> float:
    if not is_finite_real(k) or float(k) < 0:  # type: ignore[arg-type]
        raise LmixValueError(f"{name} must be a finite number >= 0, got {k!r}")
    return float(k)  # type: ignore[arg-type]


def check_mode(mode: object) -> str:
    if mode not in ("sample", "batch"):
        raise LmixValueError(
            f"mode must be 'sample' (one lam, partner and mask per sample) or 'batch' (one for the batch), got {mode!r}"
        )
    return str(mode)


def check_pairing(pairing: object) -> str:
    if pairing not in ("random", "no_self", "flip", "roll"):
        raise LmixValueError(
            "pairing must be 'random' (uniform permutation), 'no_self' (random cycle, no sample paired with itself), "
            f"'flip' (partner of i is B-1-i, as timm) or 'roll' (partner of i is i-1, as torchvision v2), got {pairing!r}"
        )
    return str(pairing)


def check_size(size: object, *, name: str = "size") -> tuple[int, int]:
    """(H, W) with integer H, W >= 2."""
    if not isinstance(size, Sequence) or len(size) != 2 or not all(is_integer(s) for s in size):
        raise LmixValueError(f"{name} must be a pair of integers (H, W), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h < 2 or w < 2:
        raise LmixValueError(f"{name} must have H >= 2 and W >= 2, got (H, W) = ({h}, {w})")
    return h, w


def check_box_size(size: object, *, name: str) -> tuple[int, int]:
    """A box side or (h, w) pair of integers >= 1."""
    if is_integer(size):
        size = (size, size)
    if not isinstance(size, Sequence) or len(size) != 2 or not all(is_integer(s) for s in size):
        raise LmixValueError(f"{name} must be an integer or a pair of integers (h, w), got {size!r}")
    if size[0] <= 0 or size[1] <= 0:
        raise LmixValueError(f"{name} must be > 0 in both dimensions, got {tuple(size)!r}")
    return int(size[0]), int(size[1])


def check_lam(lam: object) -> torch.Tensor:
    """1-D floating tensor with every value in [0, 1]."""
    if not isinstance(lam, torch.Tensor):
        raise LmixTypeError(f"lam must be a 1-D torch.Tensor of values in [0, 1], got {type(lam).__name__}")
    if lam.ndim != 1:
        raise LmixValueError(f"lam must be 1-D with shape (B,), got shape {tuple(lam.shape)}")
    if not lam.is_floating_point():
        raise LmixTypeError(f"lam must be a floating-point tensor, got dtype {lam.dtype}")
    if lam.numel() and not bool(((lam >= 0) & (lam <= 1)).all()):
        bad = lam[~((lam >= 0) & (lam <= 1))][0].item()
        raise LmixValueError(f"lam values must lie in [0, 1], got {bad}")
    return lam


def check_batch(images: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, C, H, W) floating with H, W >= 2; labels (B,) integer on the same device."""
    if not isinstance(images, torch.Tensor):
        raise LmixTypeError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise LmixValueError(f"images must have shape (B, C, H, W) (4 dimensions), got shape {tuple(images.shape)}")
    if images.dtype not in _FLOAT_DTYPES:
        raise LmixTypeError(
            f"images must be floating point (float16, bfloat16, float32 or float64), got dtype {images.dtype}; "
            "convert uint8 images with images.float() / 255"
        )
    b, _, h, w = images.shape
    if b < 1:
        raise LmixValueError("images must hold at least one sample, got an empty batch")
    if h < 2 or w < 2:
        raise LmixValueError(f"images must have H >= 2 and W >= 2, got (H, W) = ({h}, {w})")
    if not isinstance(labels, torch.Tensor):
        raise LmixTypeError(f"labels must be a torch.Tensor of shape (B,), got {type(labels).__name__}")
    if labels.ndim != 1:
        raise LmixValueError(f"labels must have shape (B,) = ({b},), got shape {tuple(labels.shape)}")
    if labels.shape[0] != b:
        raise LmixValueError(f"labels must have one entry per image: expected {b}, got {labels.shape[0]}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise LmixTypeError(
            f"labels must be an integer tensor (e.g. torch.int64) of class indices, got dtype {labels.dtype}"
        )
    if labels.device != images.device:
        raise LmixValueError(
            f"labels must be on the same device as images: images on {images.device}, labels on {labels.device}"
        )
    return images, labels


def check_extras(extras: object, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``extras``: None or a sequence of (B, ..., H, W) tensors on ``images``' device."""
    if extras is None:
        return ()
    if isinstance(extras, torch.Tensor) or not isinstance(extras, Sequence):
        raise LmixTypeError(
            f"extras must be a sequence of tensors shaped (B, ..., H, W) (e.g. [masks]), got {type(extras).__name__}"
        )
    b, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    for i, t in enumerate(extras):
        if not isinstance(t, torch.Tensor):
            raise LmixTypeError(f"extras[{i}] must be a torch.Tensor shaped (B, ..., H, W), got {type(t).__name__}")
        if t.ndim < 3 or t.shape[0] != b or tuple(t.shape[-2:]) != (h, w):
            raise LmixValueError(
                f"extras[{i}] must have shape (B, ..., H, W) = ({b}, ..., {h}, {w}) like the images, "
                f"got {tuple(t.shape)}"
            )
        if t.device != images.device:
            raise LmixValueError(f"extras[{i}] must be on the images' device {images.device}, got {t.device}")
    return tuple(extras)


def check_num_classes(num_classes: object) -> int:
    if not is_integer(num_classes) or num_classes < 1:  # type: ignore[operator]
        raise LmixValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return int(num_classes)  # type: ignore[call-overload]


def check_labels_in_range(labels: torch.Tensor, num_classes: int, *, name: str = "labels") -> None:
    """Eager check (reads the labels: a host-device sync off the CPU) with a precise message."""
    num_classes = check_num_classes(num_classes)
    if labels.numel() == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        bad = hi if hi >= num_classes else lo
        raise LmixValueError(f"{name} must lie in [0, {num_classes - 1}] for num_classes={num_classes}, got {bad}")
