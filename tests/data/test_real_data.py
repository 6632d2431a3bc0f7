"""Smoke test on real copies of the data sets in ``$LMIX_SHARED_DATA`` (default: ``shared/data`` beside the
repository), skipped where they are absent.

Only the test splits are read, to stay fast; torchvision still verifies all CIFAR-10 md5 sums.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import lmix.data as D

SHARED = Path(os.environ.get("LMIX_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


@pytest.mark.skipif(not (SHARED / "cifar10" / "cifar-10-batches-py").is_dir(), reason=f"no real CIFAR-10 in {SHARED}")
def test_real_cifar10_test_split():
    data = D.load_tensors("cifar10", root=SHARED, train=False)  # parent folder convention
    assert data.images.shape == (10000, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(data.labels).tolist() == [1000] * 10 and data.classes[6] == "frog"
    mean = data.images.double().mean(dim=(0, 2, 3)) / 255
    torch.testing.assert_close(mean, torch.tensor(data.info.mean, dtype=torch.double), atol=0.01, rtol=0)


@pytest.mark.skipif(
    not (SHARED / "fashion-mnist" / "FashionMNIST" / "raw").is_dir(), reason=f"no real Fashion-MNIST in {SHARED}"
)
def test_real_fashion_mnist_test_split():
    data = D.load_tensors("fashion_mnist", root=SHARED / "fashion-mnist", train=False)
    assert data.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    assert abs(data.images.double().mean().item() / 255 - 0.2868) < 1e-3  # README: test mean 0.2868
