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


#: Names of the spatial axes of a batch with 1, 2 or 3 of them, as messages show them.
AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
#: The shape of a batch with 1, 2 or 3 spatial axes.
BATCH_SHAPES = {1: "(B, C, L)", 2: "(B, C, H, W)", 3: "(B, C, D, H, W)"}


def spatial_names(d: int) -> str:
    """``"L"``, ``"H, W"`` or ``"D, H, W"``."""
    return ", ".join(AXIS_NAMES[d])


def _either(items: Sequence[str]) -> str:
    """``"a"``, ``"a or b"``, ``"a, b or c"``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" or {items[-1]}"


def batch_shapes(ranks: Sequence[int] = (1, 2, 3)) -> str:
    """The batch shapes with ``ranks`` spatial axes, for messages: ``"(B, C, L), (B, C, H, W) or (B, C, D, H, W)"``."""
    return _either([BATCH_SHAPES[d] for d in ranks])


def short_sides(sides: tuple[int, ...]) -> str | None:
    """None if every spatial side is >= 2, else what is wrong: ``H >= 2 and W >= 2, got (H, W) = (1, 8)``."""
    if min(sides) >= 2:
        return None
    names = AXIS_NAMES[len(sides)]
    need = " and ".join(f"{n} >= 2" for n in names)
    got = f"{names[0]} = {sides[0]}" if len(sides) == 1 else f"({', '.join(names)}) = {sides}"
    return f"{need}, got {got}"


def _check_sides(sides: tuple[int, ...], *, what: str) -> None:
    """Every spatial side >= 2, with a message naming the axes (``short_sides``)."""
    problem = short_sides(sides)
    if problem is not None:
        raise LmixValueError(f"{what} must have {problem}")


def _is_sides(size: object) -> bool:
    """Whether ``size`` is a sequence (not a string) of 1, 2 or 3 integers: one side per spatial axis."""
    return (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and 1 <= len(size) <= 3
        and all(is_integer(s) for s in size)
    )


def check_size(size: object, *, name: str = "size") -> tuple[int, ...]:
    """(L,), (H, W) or (D, H, W): 1, 2 or 3 integers, each >= 2."""
    if not _is_sides(size):
        raise LmixValueError(
            f"{name} must be 1, 2 or 3 integers: (L,), a pair of integers (H, W) or (D, H, W), got {size!r}"
        )
    sides = tuple(int(s) for s in size)
    _check_sides(sides, what=name)
    return sides


def check_box_size(size: object, *, name: str) -> tuple[int, ...]:
    """A box side (an int: ``(s, s)``, a cube of side s in any number of dimensions) or 1, 2 or 3 integer sides, >= 1."""
    if is_integer(size):
        size = (size, size)
    if not _is_sides(size):
        raise LmixValueError(
            f"{name} must be an integer or 1, 2 or 3 integers (a side per spatial axis, e.g. (h, w)), got {size!r}"
        )
    if min(size) <= 0:
        raise LmixValueError(f"{name} must be > 0 in every dimension, got {tuple(size)!r}")
    return tuple(int(s) for s in size)


def box_sides(size: tuple[int, ...], d: int, *, name: str = "size") -> tuple[int, ...]:
    """The sides of a box ``size`` (``check_box_size``) in ``d`` spatial dimensions.

    A size whose sides are all equal (an int, or e.g. ``(16, 16)``) is a cube of that side in any
    number of dimensions; other sizes must give one side per spatial axis.
    """
    if all(s == size[0] for s in size):
        return (size[0],) * d
    if len(size) != d:
        raise LmixValueError(
            f"{name} {tuple(size)} gives {len(size)} sides but the images have {d} spatial axes ({spatial_names(d)}); "
            f"give {d} sides or one int"
        )
    return size


def check_max_soft(max_soft: object) -> float:
    """A number in [0, 0.5]: the share of pixels ramped on each side of a soft mask's edge."""
    if not is_finite_real(max_soft) or not 0.0 <= float(max_soft) <= 0.5:  # type: ignore[arg-type]
        raise LmixValueError(f"max_soft must be a number in [0, 0.5] (0: binary masks), got {max_soft!r}")
    return float(max_soft)  # type: ignore[arg-type]


def check_flag(value: object, *, name: str) -> bool:
    """``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise LmixTypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_lam(lam: object) -> torch.Tensor:
    """1-D floating tensor with every value in [0, 1]."""
    if not isinstance(lam, torch.Tensor):
        raise LmixTypeError(f"lam must be a 1-D torch.Tensor of values in [0, 1], got {type(lam).__name__}")
    if lam.ndim != 1:
        raise LmixValueError(f"lam must be 1-D with shape (B,), got shape {tuple(lam.shape)}")
    if not lam.is_floating_point():
        raise LmixTypeError(f"lam must be a floating-point tensor, got dtype {lam.dtype}")
    if lam.numel() and not _in_unit_interval(lam):
        bad = lam[~((lam >= 0) & (lam <= 1))][0].item()
        raise LmixValueError(f"lam values must lie in [0, 1], got {bad}")
    return lam


def _in_unit_interval(values: torch.Tensor) -> bool:
    """Whether every value of a non-empty tensor lies in [0, 1] (False with a NaN: it propagates)."""
    low, high = torch.aminmax(values)
    return float(low) >= 0 and float(high) <= 1


def check_batch(
    images: object, labels: object, *, ranks: Sequence[int] = (1, 2, 3), who: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, C, *spatial) floating with 1, 2 or 3 spatial axes (``ranks``: those allowed), each
    >= 2; labels (B,) integer on the same device. ``who`` prefixes the shape message (``"PatchUp"``)."""
    shapes = batch_shapes(ranks)
    if not isinstance(images, torch.Tensor):
        raise LmixTypeError(f"images must be a torch.Tensor of shape {shapes}, got {type(images).__name__}")
    if images.ndim - 2 not in ranks:
        prefix = f"{who}: " if who else ""
        dims = _either([str(d + 2) for d in ranks])
        raise LmixValueError(
            f"{prefix}images must have shape {shapes} ({dims} dimensions), got shape {tuple(images.shape)}"
        )
    if images.dtype not in _FLOAT_DTYPES:
        raise LmixTypeError(
            f"images must be floating point (float16, bfloat16, float32 or float64), got dtype {images.dtype}; "
            "convert uint8 images with images.float() / 255"
        )
    b = images.shape[0]
    if b < 1:
        raise LmixValueError("images must hold at least one sample, got an empty batch")
    _check_sides(tuple(images.shape[2:]), what="images")
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
    """``extras``: None or a sequence of (B, ..., *spatial) tensors on ``images``' device, whose last
    axes are the images' spatial axes ((B, ..., H, W) for (B, C, H, W) images)."""
    spatial = tuple(images.shape[2:])
    names = spatial_names(len(spatial))
    if extras is None:
        return ()
    if isinstance(extras, torch.Tensor) or not isinstance(extras, Sequence):
        raise LmixTypeError(
            f"extras must be a sequence of tensors shaped (B, ..., {names}) (e.g. [masks]), got {type(extras).__name__}"
        )
    b, d = images.shape[0], len(spatial)
    for i, t in enumerate(extras):
        if not isinstance(t, torch.Tensor):
            raise LmixTypeError(f"extras[{i}] must be a torch.Tensor shaped (B, ..., {names}), got {type(t).__name__}")
        if t.ndim < d + 1 or t.shape[0] != b or tuple(t.shape[t.ndim - d :]) != spatial:
            raise LmixValueError(
                f"extras[{i}] must have shape (B, ..., {names}) = ({b}, ..., {', '.join(map(str, spatial))}) like the "
                f"images, got {tuple(t.shape)}"
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
