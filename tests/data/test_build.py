"""build_loaders: the trainer's entry point, both data paths, subsets and overrides."""

from __future__ import annotations

import pytest
import torch
from torchvision.datasets import CIFAR10

import lmix.data as D
from lmix.augment import normalize
from tests.data import fakes


def _all(loader, epoch=0):
    loader.set_epoch(epoch)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_digits_default_in_memory():
    train, test, info = D.build_loaders("digits", batch_size=64, device="cpu", seed=0)
    assert isinstance(train, D.DeviceLoader) and isinstance(test, D.DeviceLoader)
    assert info.num_classes == 10 and info.in_channels == 1 and info.image_size == (8, 8)
    assert len(train) == 1437 // 64 and train.num_samples == 22 * 64 and test.num_samples == 360 and len(test) == 6
    x, y = next(iter(train))
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert _all(test)[1].numel() == 360


def test_train_subset_is_stratified_and_seeded():
    train, test, _ = D.build_loaders(
        "digits", batch_size=10, device="cpu", seed=3, train_subset=100, test_batch_size=50
    )
    assert train.dataset_size == 100 and len(test) == 8 and test.dataset_size == 360
    counts = torch.bincount(train.labels, minlength=10)
    assert int(counts.min()) >= 9 and int(counts.max()) <= 11
    again, _, _ = D.build_loaders("digits", batch_size=10, device="cpu", seed=3, train_subset=100)
    assert torch.equal(again.images, train.images)
    other, _, _ = D.build_loaders("digits", batch_size=10, device="cpu", seed=4, train_subset=100)
    assert not torch.equal(other.images, train.images)
    with pytest.raises(ValueError, match="train_subset must be None or an integer >= 1"):
        D.build_loaders("digits", batch_size=10, device="cpu", seed=3, train_subset=0)
    with pytest.raises(ValueError, match=r"subset size must be an integer in \[1, 1437\]"):
        D.build_loaders("digits", batch_size=10, device="cpu", seed=3, train_subset=5000)


def test_overrides_and_no_augment():
    train, _, info = D.build_loaders("digits", batch_size=8, device="cpu", seed=0, crop_padding=0, flip=True)
    assert info.crop_padding == 0 and info.flip is True and train.info == info
    plain, _, info = D.build_loaders("digits", batch_size=8, device="cpu", seed=0, augment=False, train_subset=16)
    plain.set_epoch(1)
    x, _ = _all(plain, 1)
    assert torch.equal(x, normalize(plain.images[plain.epoch_indices()], info.mean, info.std))
    with pytest.raises(ValueError, match="crop_padding must be an integer >= 0"):
        D.build_loaders("digits", batch_size=8, device="cpu", seed=0, crop_padding=-1)
    with pytest.raises(ValueError, match="image_size only applies"):
        D.build_loaders("digits", batch_size=8, device="cpu", seed=0, image_size=(4, 4))
    with pytest.raises(ValueError, match="unknown dataset"):
        D.build_loaders("mnist", batch_size=8, device="cpu", seed=0)
    # Bad numbers are reported before any data is read (this root does not exist).
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        D.build_loaders("cifar10", root="/nonexistent", batch_size=0, device="cpu", seed=0)
    with pytest.raises(ValueError, match="test_batch_size must be an integer >= 1"):
        D.build_loaders("cifar10", root="/nonexistent", batch_size=2, test_batch_size=-1, device="cpu", seed=0)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\]"):
        D.build_loaders("cifar10", root="/nonexistent", batch_size=2, rank=2, world_size=2, device="cpu", seed=0)


def test_cifar10_both_paths_agree_on_test_data(tmp_path, monkeypatch):
    fakes.write_cifar10(tmp_path / "cifar10", per_batch=6)
    fakes.patch_cifar_md5(monkeypatch, CIFAR10, tmp_path / "cifar10")
    kw = dict(root=tmp_path, batch_size=4, device="cpu", seed=1, train_subset=20)
    dtrain, dtest, dinfo = D.build_loaders("cifar10", **kw)
    strain, stest, sinfo = D.build_loaders("cifar10", in_memory=False, num_workers=0, **kw)
    assert isinstance(strain, D.StreamingLoader) and dinfo == sinfo
    assert len(dtrain) == len(strain) == 5 and dtrain.num_samples == strain.num_samples == 20
    xd, yd = _all(dtest)
    xs, ys = _all(stest)
    assert torch.equal(xd, xs) and torch.equal(yd, ys)
    # Same stratified subset on both paths.
    assert sorted(_all(dtrain, 2)[1].tolist()) == sorted(_all(strain, 2)[1].tolist())


def test_missing_data_through_build_loaders(tmp_path):
    with pytest.raises(D.DataNotFoundError, match="--data-root DIR"):
        D.build_loaders("fashion_mnist", root=tmp_path, batch_size=4, device="cpu", seed=0)
    with pytest.raises(D.DataNotFoundError, match="--data-root DIR"):
        D.build_loaders("cifar10", root=tmp_path, batch_size=4, device="cpu", seed=0, in_memory=False)


@pytest.mark.parametrize("name", ["tiny_imagenet", "imagefolder"])
def test_folder_datasets_both_paths(tmp_path, name):
    if name == "tiny_imagenet":
        fakes.write_tiny_imagenet(tmp_path)
    else:
        fakes.write_imagefolder(tmp_path)
    kw = dict(root=tmp_path, batch_size=2, device="cpu", seed=0)
    dtrain, dtest, dinfo = D.build_loaders(name, in_memory=True, **kw)
    strain, stest, sinfo = D.build_loaders(name, in_memory=False, num_workers=0, **kw)
    assert isinstance(dtrain, D.DeviceLoader) and isinstance(strain, D.StreamingLoader)
    assert dinfo == sinfo and dinfo.num_classes == 3
    assert dinfo.image_size == ((64, 64) if name == "tiny_imagenet" else (12, 10))
    xd, yd = _all(dtest)
    xs, ys = _all(stest)
    assert torch.equal(xd, xs) and torch.equal(yd, ys)
    x, y = next(iter(strain))
    assert x.shape == (2, 3, *dinfo.image_size) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dtrain) == len(strain) == 4
    resized = D.build_loaders(name, image_size=(16, 16), in_memory=False, num_workers=0, **kw)
    assert next(iter(resized[1]))[0].shape == (2, 3, 16, 16) and resized[2].image_size == (16, 16)
