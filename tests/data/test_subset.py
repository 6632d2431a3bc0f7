"""stratified_subset: class proportions, determinism, validation."""

from __future__ import annotations

import pytest
import torch

from lmix.data import stratified_subset


def _labels(counts: list[int]) -> torch.Tensor:
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]


def test_exact_proportions_when_divisible():
    labels = _labels([100, 50, 250])
    idx = stratified_subset(labels, 80, seed=0)
    assert idx.dtype == torch.int64 and idx.numel() == 80
    assert torch.bincount(labels[idx], minlength=3).tolist() == [20, 10, 50]


def test_largest_remainder_and_properties():
    labels = _labels([7, 5, 3, 1])  # 16 samples; 10 of them: quotas 4.375, 3.125, 1.875, 0.625
    idx = stratified_subset(labels, 10, seed=3)
    assert torch.bincount(labels[idx], minlength=4).tolist() == [4, 3, 2, 1]
    assert torch.equal(idx, torch.sort(idx).values) and idx.unique().numel() == 10
    assert int(idx.max()) < labels.numel()


def test_deterministic_for_seed_and_differs_across_seeds():
    labels = _labels([300, 300, 300])
    a = stratified_subset(labels, 90, seed=1)
    assert torch.equal(a, stratified_subset(labels, 90, seed=1))
    assert not torch.equal(a, stratified_subset(labels, 90, seed=2))


def test_full_size_and_errors():
    labels = _labels([3, 3])
    assert torch.equal(stratified_subset(labels, 6, seed=0), torch.arange(6))
    for bad in (0, 7, 2.5, True):
        with pytest.raises(ValueError, match=r"subset size must be an integer in \[1, 6\]"):
            stratified_subset(labels, bad, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D integer tensor"):
        stratified_subset(labels.float(), 2, seed=0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        stratified_subset(labels, 2, seed="x")  # type: ignore[arg-type]
