"""Eps lists as users write them: ``0,1,2,4,8`` (1/255 units) or ``0,0.01,0.03`` (fractions)."""

from __future__ import annotations

import math

from lmix.errors import LmixTypeError, LmixValueError

__all__ = ["parse_eps"]


def parse_eps(text: str, *, units: str = "auto") -> tuple[list[float], list[float]]:
    """Parse a comma-separated eps list such as ``"0,1,2,4,8"`` or ``"0,0.01,0.03"``.

    Units rule:
        * ``units="255"``: values are in 1/255 of the pixel range (``8`` means ``8/255``).
        * ``units="float"``: values are fractions of the [0, 1] pixel range.
        * ``units="auto"`` (default): fractions if every value is < 1 and at least one is written
          with a decimal point or an exponent (``0,0.01,0.03``); otherwise 1/255 units
          (``0,1,2,4,8`` and also ``0,0.5,1,2``, since 1 and 2 are not < 1).

    Returns:
        ``(eps, eps_255)``: fractions of the [0, 1] range and the same values in 1/255 units.

    Raises:
        ValueError: empty list, unparsable or negative value, NaN/inf, eps above the pixel range,
            or an unknown ``units``.
    """
    if units not in ("auto", "255", "float"):
        raise LmixValueError(f"eps units must be auto, 255 or float, got {units!r}")
    if not isinstance(text, str):
        raise LmixTypeError(f"eps must be given as text such as '0,1,2,4,8', got {type(text).__name__}")
    tokens = [t.strip() for t in text.split(",")]
    if not text.strip() or any(t == "" for t in tokens):
        raise LmixValueError(f"eps list {text!r} must be comma-separated numbers such as 0,1,2,4,8 (no empty entries)")
    values = []
    for token in tokens:
        try:
            v = float(token)
        except ValueError:
            raise LmixValueError(f"eps value {token!r} in {text!r} is not a number; use e.g. 0,1,2,4,8") from None
        if not math.isfinite(v) or v < 0:
            raise LmixValueError(f"eps value {token!r} in {text!r} must be a finite number >= 0")
        values.append(v)
    if units == "auto":
        written_as_float = any(("." in t or "e" in t.lower()) for t in tokens)
        units = "float" if written_as_float and all(v < 1 for v in values) else "255"
    if units == "float":
        eps = values
        eps_255 = [round(v * 255, 10) for v in values]
    else:
        eps = [v / 255 for v in values]
        eps_255 = values
    too_big = [t for t, e in zip(tokens, eps) if e > 1]
    if too_big:
        unit_name = "1/255 units" if units == "255" else "fractions of the [0, 1] range"
        raise LmixValueError(
            f"eps value(s) {', '.join(too_big)} exceed the pixel range ({unit_name}: at most "
            f"{'255' if units == '255' else '1'})"
        )
    return eps, eps_255
