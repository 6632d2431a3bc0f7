"""load_tensors on small files in the real formats, root conventions and missing-data errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100

import lmix.data as D
from tests.data import fakes


def _check(data: D.TensorData, x: np.ndarray, y: np.ndarray) -> None:
    assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
    assert data.images.is_contiguous()
    assert torch.equal(data.images, torch.from_numpy(np.ascontiguousarray(x)))
    assert torch.equal(data.labels, torch.from_numpy(y.astype(np.int64)))


def test_registry_and_info():
    assert D.list_datasets() == [
        "cifar10",
        "cifar100",
        "fashion_mnist",
        "svhn",
        "tiny_imagenet",
        "imagefolder",
        "digits",
        "osuleaf",
        "arrowhead",
    ]
    c10 = D.dataset_info("cifar10")
    assert (c10.num_classes, c10.in_channels, c10.image_size, c10.crop_padding, c10.flip) == (10, 3, (32, 32), 4, True)
    assert c10.mean == (0.4914, 0.4822, 0.4465) and c10.std == (0.2470, 0.2435, 0.2616)
    assert D.dataset_info("fashion_mnist").mean == (0.2860,) and D.dataset_info("fashion_mnist").std == (0.3530,)
    assert D.dataset_info("svhn").flip is False and D.dataset_info("digits").crop_padding == 1
    assert D.dataset_info("imagefolder").num_classes is None
    for name in D.list_datasets():
        info = D.dataset_info(name)
        assert len(info.mean) == len(info.std) == info.in_channels
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*cifar10.*digits"):
        D.dataset_info("mnist")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c10.num_classes = 3  # type: ignore[misc]


def test_cifar10(tmp_path, monkeypatch):
    want = fakes.write_cifar10(tmp_path)
    fakes.patch_cifar_md5(monkeypatch, CIFAR10, tmp_path)
    train = D.load_tensors("cifar10", root=tmp_path, train=True)
    test = D.load_tensors("cifar10", root=tmp_path, train=False)
    _check(train, want["train_x"], want["train_y"])
    _check(test, want["test_x"], want["test_y"])
    assert train.classes == tuple(want["classes"]) and len(train) == 20
    assert train.info == D.dataset_info("cifar10")


def test_cifar10_found_under_parent_folder(tmp_path, monkeypatch):
    """--data-root may be a common parent holding cifar10/ (one data folder for every data set)."""
    want = fakes.write_cifar10(tmp_path / "cifar10")
    fakes.patch_cifar_md5(monkeypatch, CIFAR10, tmp_path / "cifar10")
    _check(D.load_tensors("cifar10", root=tmp_path, train=False), want["test_x"], want["test_y"])
    assert D.resolve_root("cifar10", tmp_path) == tmp_path / "cifar10"


def test_cifar10_default_root_from_environment(tmp_path, monkeypatch):
    want = fakes.write_cifar10(tmp_path / "cifar10")
    fakes.patch_cifar_md5(monkeypatch, CIFAR10, tmp_path / "cifar10")
    monkeypatch.setenv("LMIX_DATA_ROOT", str(tmp_path))
    _check(D.load_tensors("cifar10", train=False), want["test_x"], want["test_y"])


def test_cifar10_corrupted_file_is_reported_in_one_line(tmp_path):
    fakes.write_cifar10(tmp_path)  # md5 table not patched: torchvision's integrity check fails
    with pytest.raises(D.DataNotFoundError) as info:
        D.load_tensors("cifar10", root=tmp_path, train=True)
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path) in msg and "integrity" in msg and "--download" in msg


def test_cifar100(tmp_path, monkeypatch):
    want = fakes.write_cifar100(tmp_path)
    fakes.patch_cifar_md5(monkeypatch, CIFAR100, tmp_path)
    train = D.load_tensors("cifar100", root=tmp_path, train=True)
    _check(train, want["train_x"], want["train_y"])
    _check(D.load_tensors("cifar100", root=tmp_path, train=False), want["test_x"], want["test_y"])
    assert len(train.classes) == 100 and train.classes[7] == "class07"


def test_fashion_mnist(tmp_path):
    want = fakes.write_fashion_mnist(tmp_path / "fashion-mnist")
    for train, split in ((True, "train"), (False, "test")):
        data = D.load_tensors("fashion_mnist", root=tmp_path, train=train)
        _check(data, want[f"{split}_x"], want[f"{split}_y"])
        assert data.images.shape[1:] == (1, 28, 28)
    assert data.classes[0] == "T-shirt/top"


def test_svhn_with_and_without_extra(tmp_path, monkeypatch):
    want = fakes.write_svhn(tmp_path, monkeypatch)
    _check(D.load_tensors("svhn", root=tmp_path, train=True), want["train_x"], want["train_y"])
    _check(D.load_tensors("svhn", root=tmp_path, train=False), want["test_x"], want["test_y"])
    both = D.load_tensors("svhn", root=tmp_path, train=True, svhn_extra=True)
    _check(both, np.concatenate([want["train_x"], want["extra_x"]]), np.concatenate([want["train_y"], want["extra_y"]]))
    assert int(both.labels.max()) <= 9 and int(both.labels[0]) == 0  # label 10 means digit 0
    with pytest.raises(ValueError, match="svhn_extra only applies"):
        D.load_tensors("cifar10", root=tmp_path, train=True, svhn_extra=True)


def test_svhn_missing_extra_file(tmp_path, monkeypatch):
    fakes.write_svhn(tmp_path, monkeypatch, sizes={"train": 3, "test": 2})
    with pytest.raises(D.DataNotFoundError, match="svhn: data not found"):
        D.load_tensors("svhn", root=tmp_path, train=True, svhn_extra=True)


def _pil_rgb(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


def test_tiny_imagenet(tmp_path):
    top = fakes.write_tiny_imagenet(tmp_path)
    for root in (tmp_path, top):  # the parent or the tiny-imagenet-200 folder itself
        train = D.load_tensors("tiny_imagenet", root=root, train=True)
        assert train.images.shape == (9, 3, 64, 64) and train.classes == ("n01", "n02", "n03")  # sorted wnids
        assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert torch.equal(
            train.images[3], _pil_rgb(top / "train" / "n02" / "images" / "n02_0.JPEG")
        )  # grayscale -> RGB
        assert torch.equal(train.images[3][0], train.images[3][2])
    val = D.load_tensors("tiny_imagenet", root=tmp_path, train=False)
    # val_i is annotated with wnids[i % 3] of ("n02", "n01", "n03"), i.e. classes 1, 0, 2, 1, 0.
    assert val.labels.tolist() == [1, 0, 2, 1, 0] and val.info.num_classes == 3
    assert torch.equal(val.images[4], _pil_rgb(top / "val" / "images" / "val_4.JPEG"))


def test_tiny_imagenet_bad_annotation(tmp_path):
    top = fakes.write_tiny_imagenet(tmp_path)
    (top / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(D.DataNotFoundError, match="line 1"):
        D.load_tensors("tiny_imagenet", root=top, train=False)


def test_imagefolder_sizes_and_class_mapping(tmp_path):
    root = fakes.write_imagefolder(tmp_path)
    train = D.load_tensors("imagefolder", root=root, train=True)
    val = D.load_tensors("imagefolder", root=root, train=False)
    assert train.info.num_classes == 3 and train.info.image_size == (12, 10) and train.classes == ("cat", "dog", "emu")
    assert train.images.shape == (9, 3, 12, 10) and val.images.shape == (4, 3, 12, 10)
    assert val.labels.tolist() == [1, 1, 2, 2]  # val has no "cat": "dog" keeps index 1
    assert torch.equal(train.images[0], _pil_rgb(root / "train" / "cat" / "0.png"))
    resized = D.load_tensors("imagefolder", root=root, train=True, image_size=(6, 6))
    assert resized.images.shape == (9, 3, 6, 6) and resized.info.image_size == (6, 6)
    with pytest.raises(ValueError, match="image_size only applies"):
        D.load_tensors("digits", train=True, image_size=(6, 6))


def test_digits_needs_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train = D.load_tensors("digits", train=True)
    test = D.load_tensors("digits", train=False)
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    counts = torch.bincount(test.labels)
    assert counts.numel() == 10 and int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified 80/20
    # The documented normalisation is that of this training split.
    x = train.images.double() / 255
    assert abs(x.mean().item() - train.info.mean[0]) < 1e-4 and abs(x.std().item() - train.info.std[0]) < 1e-3
    again = D.load_tensors("digits", train=True)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fashion_mnist", "svhn", "tiny_imagenet", "imagefolder"])
def test_missing_data_is_one_line_naming_root_and_flags(tmp_path, name):
    with pytest.raises(D.DataNotFoundError) as info:
        D.load_tensors(name, root=tmp_path / "nowhere", train=True)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{name}:")
    assert str(tmp_path / "nowhere") in msg and "--data-root DIR" in msg
    if D.dataset_info(name).downloadable:
        assert "--download" in msg
    else:
        assert "cannot be downloaded" in msg


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    """--download calls torchvision's own download (replaced here by a writer: no network in tests)."""
    calls = []

    def fake_download(self):
        calls.append(self.root)
        fakes.write_cifar10(self.root)
        fakes.patch_cifar_md5(monkeypatch, CIFAR10, self.root)

    monkeypatch.setattr(CIFAR10, "download", fake_download)
    data = D.load_tensors("cifar10", root=tmp_path / "dl", train=False, download=True)
    assert calls == [str(tmp_path / "dl")] and len(data) == 6


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    def broken(self):
        raise OSError("network unreachable")

    monkeypatch.setattr(CIFAR10, "download", broken)
    with pytest.raises(D.DataNotFoundError, match="download into .* failed .*network unreachable"):
        D.load_tensors("cifar10", root=tmp_path, train=True, download=True)


def test_bad_flags():
    with pytest.raises(TypeError, match="train must be True or False"):
        D.load_tensors("digits", train="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_tensors("imagenet", train=True)
