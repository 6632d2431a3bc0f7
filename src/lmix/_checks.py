"""Type and range predicates and checks shared by every layer (a leaf module: imports nothing of lmix's
but its errors).

``bool`` is an ``int`` to Python; a hyperparameter never is, so every predicate here refuses it.
``numbers.Integral`` / ``numbers.Real`` also admit numpy scalars (values read from a config or a
sweep often are).
"""

from __future__ import annotations

import math
import numbers

from lmix.errors import LmixTypeError, LmixValueError

__all__ = ["is_integer", "is_real", "is_finite_real", "check_int", "check_probability"]


def is_integer(value: object) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number (int, float or numpy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_real(value: object) -> bool:
    """Whether ``value`` is a finite real number, not a bool."""
    return is_real(value) and math.isfinite(float(value))  # type: ignore[arg-type]


def check_int(value: object, *, name: str, minimum: int | None = None) -> int:
    """``value`` as an int if it is an integer (not a bool) ``>= minimum``.

    Raises:
        LmixTypeError: not an integer.
        LmixValueError: below ``minimum``.
    """
    bound = "" if minimum is None else f" >= {minimum}"
    if not is_integer(value):
        raise LmixTypeError(f"{name} must be an integer{bound}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:  # type: ignore[operator]
        raise LmixValueError(f"{name} must be an integer{bound}, got {value}")
    return int(value)  # type: ignore[call-overload]


def check_probability(value: object, *, name: str, allow_one: bool = True) -> float:
    """``value`` as a float if it is a number in [0, 1] (``allow_one=False``: [0, 1)).

    Mixing probabilities may be 1 (always mix); a dropout rate may not (it would drop everything).

    Raises:
        LmixValueError: not a finite number in the allowed range.
    """
    interval = "[0, 1]" if allow_one else "[0, 1)"
    ok = is_finite_real(value) and 0.0 <= float(value) and (float(value) <= 1.0 if allow_one else float(value) < 1.0)  # type: ignore[arg-type]
    if not ok:
        raise LmixValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)  # type: ignore[arg-type]
