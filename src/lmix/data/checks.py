"""Argument checks shared by the data modules, on top of :mod:`lmix._checks`."""

from __future__ import annotations

from lmix._checks import is_integer
from lmix.errors import LmixTypeError, LmixValueError

__all__ = ["check_index", "check_flag", "check_loader_args"]


def check_index(value: object, *, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) in ``[low, high]`` (``high`` None: no bound).

    Raises:
        LmixValueError: not an integer, or out of range.
    """
    if not is_integer(value) or value < low or (high is not None and value > high):  # type: ignore[operator]
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise LmixValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_flag(value: object, *, name: str, optional: bool = False) -> None:
    """Refuse anything but True or False (and None when ``optional``).

    Raises:
        LmixTypeError: anything else.
    """
    if not isinstance(value, bool) and not (optional and value is None):
        allowed = "True, False or None" if optional else "True or False"
        raise LmixTypeError(f"{name} must be {allowed}, got {value!r}")


def check_loader_args(
    *, batch_size: object, seed: object, rank: object, world_size: object, train: object
) -> tuple[int, int, int, int]:
    """Check the arguments every loader takes; returns ``(batch_size, seed, rank, world_size)`` as ints."""
    batch_size = check_index(batch_size, name="batch_size", low=1)
    world_size = check_index(world_size, name="world_size", low=1)
    rank = check_index(rank, name="rank", low=0, high=world_size - 1)
    if not is_integer(seed):
        raise LmixTypeError(f"seed must be an integer, got {seed!r}")
    check_flag(train, name="train")
    return batch_size, int(seed), rank, world_size  # type: ignore[call-overload]
