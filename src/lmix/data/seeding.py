"""Derive independent, reproducible seeds from (seed, epoch, rank, ...) tuples.

A loader never carries random state from one epoch to the next: every epoch's order and
augmentation come from generators seeded by :func:`derive_seed`, so epoch ``e`` of a resumed run
is bit-identical to epoch ``e`` of an uninterrupted one.
"""

from __future__ import annotations

import torch

from lmix._seeds import derive_seed

__all__ = ["STREAM_AUGMENT", "STREAM_ORDER", "STREAM_SAMPLE", "STREAM_SUBSET", "derive_seed", "generator"]

# Stream tags keep the seeds of different uses apart even for equal (seed, epoch, rank).
STREAM_ORDER = 0x4F52  # per-epoch sample order (identical on every rank)
STREAM_AUGMENT = 0x4147  # per-epoch batched crop/flip parameters (per rank)
STREAM_SAMPLE = 0x534D  # per-sample transforms of the DataLoader path
STREAM_SUBSET = 0x5353  # stratified subsets


def generator(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``derive_seed(*parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g
