"""Class-stratified subsets for small-scale runs (``--train-subset N``)."""

from __future__ import annotations

import torch

from lmix._checks import is_integer
from lmix.data.seeding import STREAM_SUBSET, generator
from lmix.errors import LmixTypeError, LmixValueError

__all__ = ["stratified_subset"]


def stratified_subset(labels: torch.Tensor, n: int, *, seed: int) -> torch.Tensor:
    """Pick ``n`` sample indices whose class proportions match those of ``labels``.

    Each class gets ``floor(n * count_c / N)`` samples; the remaining ones go to the classes with the
    largest remainders (ties: lower class index first). Within a class the samples are a uniformly
    random choice. Deterministic for ``(labels, n, seed)``.

    Args:
        labels: int ``(N,)`` class labels (>= 0).
        n: subset size, ``1 <= n <= N``.
        seed: integer seed.

    Returns:
        int64 ``(n,)`` sorted indices into ``labels`` (on the CPU).
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise LmixValueError("labels must be a 1-D integer tensor of class labels")
    total = labels.numel()
    if not is_integer(n) or not 1 <= n <= total:
        raise LmixValueError(f"subset size must be an integer in [1, {total}] (the number of samples), got {n!r}")
    if not is_integer(seed):
        raise LmixTypeError(f"seed must be an integer, got {seed!r}")
    n, seed = int(n), int(seed)
    labels = labels.detach().to("cpu", torch.long)
    if n == total:
        return torch.arange(total)
    if bool((labels < 0).any()):
        raise LmixValueError("labels must be >= 0")
    counts = torch.bincount(labels)
    exact = counts.double() * n / total
    quota = exact.floor().long()
    short = n - int(quota.sum())
    if short > 0:
        # Largest remainder first; stable sort keeps the lower class index first among equals.
        order = torch.sort(exact - quota.double(), descending=True, stable=True).indices
        quota[order[:short]] += 1
    gen = generator(seed, STREAM_SUBSET)
    picked = []
    for cls in torch.nonzero(quota).flatten().tolist():
        members = torch.nonzero(labels == cls).flatten()
        choice = torch.randperm(members.numel(), generator=gen)[: int(quota[cls])]
        picked.append(members[choice])
    return torch.sort(torch.cat(picked)).values
