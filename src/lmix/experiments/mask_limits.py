"""What one ``lmix masks`` study may ask for, and why a study is too large (torch-free: the CLI's help states it).

A study beyond these limits is refused before anything is drawn. What they allow, measured with
``benchmarks/bench_masks.py`` on the project's shared 2-core CPU (docs/masks.md, "Limits"): a
peak memory of 2.3-3.4 GB at the limits (0.8 GB of it torch and matplotlib: about 15-21 bytes
per mask element drawn at once) and at most 203 s (ten configurations of six 4082x4082 masks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "MAX_N",
    "MAX_CONFIGURATIONS",
    "MAX_SIDE",
    "MAX_AT_ONCE",
    "MAX_IN_ALL",
    "EXAMPLE_MASKS",
    "configurations",
    "limit_problem",
]

MAX_N = 100_000  # masks per configuration: the study keeps every mask's statistics
MAX_CONFIGURATIONS = 32  # rows: the figures draw a line, a legend entry or a row of examples for each
MAX_SIDE = 1 << 17  # the radial spectrum (kept, written and drawn per configuration) has max(size) / 2 + 1 radii
MAX_AT_ONCE = 100_000_000  # mask elements drawn at once: the peak memory
MAX_IN_ALL = 1_000_000_000  # mask elements drawn in all: the time
EXAMPLE_MASKS = 6  # masks per configuration in the example figure (images and sequences; one volume)


def configurations(ks: Sequence[float], lams: Sequence[float]) -> int:
    """The rows of a study: CutMix, FMix (k = 0, always included) and LMix at each other k, per lam."""
    return (len({0.0, *(float(k) for k in ks)}) + 1) * len({float(x) for x in lams})


def _at_once(size: Sequence[int], n: int) -> int:
    """Mask elements drawn at once: the ``n`` masks of a configuration, or the example figure's (one mask in 3-D)."""
    return max(n, EXAMPLE_MASKS if len(size) < 3 else 1) * math.prod(size)


def limit_problem(size: Sequence[int], n: int, rows: int, *, size_name: str = "size", n_name: str = "n") -> str | None:
    """Why a study of ``rows`` configurations of ``n`` masks of ``size`` is too large to run; None if it is not.

    The limits: ``n`` at most ``MAX_N``; at most ``MAX_CONFIGURATIONS`` rows; every side at most
    ``MAX_SIDE``; at most ``MAX_AT_ONCE`` mask elements drawn at once (the ``n`` masks of one
    configuration, or the ``EXAMPLE_MASKS`` of the example figure, one in 3-D) and
    ``MAX_IN_ALL`` in all (that, times ``rows``). The message names the arguments by
    ``size_name`` and ``n_name`` and says what is allowed.
    """
    numel = math.prod(size)
    shown = f"{size_name} {' '.join(map(str, size))}"
    if n > MAX_N:
        return f"{n_name} must be at most {MAX_N:,} (masks per configuration), got {n:,}"
    if rows > MAX_CONFIGURATIONS:
        return (
            f"at most {MAX_CONFIGURATIONS} configurations (CutMix, FMix and each LMix k, for each lam), "
            f"got {rows}: fewer k or lam values"
        )
    if max(size) > MAX_SIDE:
        return f"{shown}: every side must be at most {MAX_SIDE:,}, got {max(size):,}"
    at_once = _at_once(size, n)
    if at_once <= MAX_AT_ONCE and rows * at_once <= MAX_IN_ALL:
        return None
    least = max(2, EXAMPLE_MASKS if len(size) < 3 else 1)  # the fewest masks drawn at once (n >= 2)
    most = min(MAX_N, MAX_AT_ONCE // numel, MAX_IN_ALL // (rows * numel))  # the largest n that fits
    if at_once > MAX_AT_ONCE:
        what = (
            f"{shown} with {n_name} {n} draws {at_once:,} mask elements at once ({numel:,} per mask); "
            f"at most {MAX_AT_ONCE:,}"
        )
    else:
        what = (
            f"{rows} configurations of {n_name} {n} masks of {shown} draw {rows * at_once:,} mask elements "
            f"in all; at most {MAX_IN_ALL:,}"
        )
    if most >= least:
        allowed = f"{n_name} at most {most:,} with this size and {rows} configurations"
    elif least * numel > MAX_AT_ONCE:
        allowed = f"at most {MAX_AT_ONCE // least:,} elements per mask" + (
            f" (the example figure draws {least} masks at once)" if least > 2 else ""
        )
    else:
        allowed = "fewer configurations (k or lam values) or a smaller size"
    return f"{what}: {allowed}"
