"""Seed derivation by SplitMix64 (Steele et al. 2014): one 63-bit seed from a tuple of integers.

Two formulas live here, and both stay as they are: published run records depend on the exact
seeds each one gives.

* :func:`derive_seed` seeds the data streams (stratified subsets, batch order, augmentation;
  ``lmix.data.seeding``): salted with ``"lmix"``, low 63 bits kept, integer parts only.
* :func:`derive_mixer_seed` seeds a mixer's derived streams (DataLoader workers, forks, DDP
  ranks; ``lmix.mixing``): unsalted, high 63 bits kept.
"""

from __future__ import annotations

from lmix.errors import LmixTypeError

__all__ = ["splitmix64", "derive_seed", "derive_mixer_seed"]

_MASK64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """One step of SplitMix64: a bijective, well-mixing map of 64-bit integers."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(*parts: int) -> int:
    """The data streams' seed in [0, 2**63): depends on every integer of ``parts``, order included."""
    h = 0x6C6D6978  # "lmix"
    for p in parts:
        if not isinstance(p, int) or isinstance(p, bool):  # Python ints only: numpy ints wrap silently
            raise LmixTypeError(f"seed parts must be integers, got {p!r}")
        h = splitmix64(h ^ (p & _MASK64))
    return h & ((1 << 63) - 1)


def derive_mixer_seed(*parts: int) -> int:
    """A mixer's derived seed in [0, 2**63): depends on every integer of ``parts``, order included."""
    h = 0
    for part in parts:
        h = splitmix64(h ^ (int(part) & _MASK64))
    return h >> 1
