"""Derive independent, reproducible seeds from (seed, epoch, rank, ...) tuples.

A loader never carries random state from one epoch to the next: every epoch's order and
augmentation come from generators seeded by :func:`derive_seed`, so epoch ``e`` of a resumed run
is bit-identical to epoch ``e`` of an uninterrupted one.
"""

from __future__ import annotations

import torch

__all__ = ["STREAM_AUGMENT", "STREAM_ORDER", "STREAM_SAMPLE", "STREAM_SUBSET", "derive_seed", "generator"]

_MASK64 = (1 << 64) - 1

# Stream tags keep the seeds of different uses apart even for equal (seed, epoch, rank).
STREAM_ORDER = 0x4F52  # per-epoch sample order (identical on every rank)
STREAM_AUGMENT = 0x4147  # per-epoch batched crop/flip parameters (per rank)
STREAM_SAMPLE = 0x534D  # per-sample transforms of the DataLoader path
STREAM_SUBSET = 0x5353  # stratified subsets


def _splitmix64(x: int) -> int:
    # SplitMix64 finaliser (Steele et al. 2014): well-mixed 64-bit outputs from sequential inputs.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every integer in ``parts`` (order matters), for ``manual_seed``."""
    h = 0x6C6D6978  # "lmix"
    for p in parts:
        if not isinstance(p, int) or isinstance(p, bool):
            raise TypeError(f"seed parts must be integers, got {p!r}")
        h = _splitmix64(h ^ (p & _MASK64))
    return h & ((1 << 63) - 1)


def generator(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``derive_seed(*parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g
