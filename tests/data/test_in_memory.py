"""ImageFolder data that fits the memory budget is decoded once (threads) and served from memory;
the DataLoader path starts no more workers than the CPUs it may use."""

from __future__ import annotations

import os

import pytest
import torch
from torchvision.datasets.folder import default_loader
from torchvision.transforms.v2 import functional as TF

import lmix.data as D
import lmix.data.build as build
import lmix.data.loaders as loaders
import lmix.data.sources as sources
from tests.data import fakes

KW = dict(batch_size=4, device="cpu", seed=0)


@pytest.fixture
def folder(tmp_path):
    """30 training PNGs (3 classes) and 4 validation PNGs, 8x8 RGB: 34 * 3 * 8 * 8 bytes decoded."""
    return fakes.write_imagefolder(tmp_path / "imgs", per_class=10, size=(8, 8))


def _all(loader, epoch=0):
    loader.set_epoch(epoch)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_small_imagefolder_is_decoded_once_into_memory(folder):
    assert (
        D.in_memory_budget() == 2 * 1024**3
        and build.decoded_size("imagefolder", root=folder, image_size=None) == 34 * 192
    )
    train, test, info = D.build_loaders("imagefolder", root=folder, **KW)  # in_memory: decided by size
    assert isinstance(train, D.DeviceLoader) and isinstance(test, D.DeviceLoader)
    assert info.image_size == (8, 8) and info.num_classes == 3 and train.dataset_size == 30
    s_train, s_test, s_info = D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=0, **KW)
    assert isinstance(s_train, D.StreamingLoader) and s_info == info

    # the decoded pixels are the file path's: PIL through torchvision's default_loader, sample by sample
    files = s_train.dataset.base
    decoded = torch.stack([TF.pil_to_tensor(default_loader(path)) for path, _ in files.samples])
    assert torch.equal(train.images, decoded) and torch.equal(train.labels, torch.tensor(files.targets))
    x_mem, y_mem = _all(test)
    x_file, y_file = _all(s_test)
    assert torch.equal(x_mem, x_file) and torch.equal(y_mem, y_file)

    # served from memory: the files are not read again
    for path, _ in files.samples:
        os.remove(path)
    for epoch in (0, 1):
        x, y = _all(train, epoch)
        assert x.shape == (28, 3, 8, 8) and x.dtype == torch.float32  # 7 full batches of 4 (drop_last)
    with pytest.raises(D.DataFileError, match="No such file or directory"):
        next(iter(s_train))


def test_the_memory_budget_decides_and_can_be_overridden(folder, monkeypatch):
    size = build.decoded_size("imagefolder", root=folder, image_size=None)
    fits = D.build_loaders("imagefolder", root=folder, memory_budget=size, **KW)[0]
    too_big = D.build_loaders("imagefolder", root=folder, memory_budget=size - 1, num_workers=0, **KW)[0]
    assert isinstance(fits, D.DeviceLoader) and isinstance(too_big, D.StreamingLoader)
    # the fitted size counts, not the files' size
    assert build.decoded_size("imagefolder", root=folder, image_size=(16, 16)) == 4 * size
    resized = D.build_loaders(
        "imagefolder", root=folder, image_size=(16, 16), memory_budget=2 * size, num_workers=0, **KW
    )
    assert isinstance(resized[0], D.StreamingLoader)
    # an explicit in_memory wins over the budget
    assert isinstance(
        D.build_loaders("imagefolder", root=folder, in_memory=True, memory_budget=0, **KW)[0], D.DeviceLoader
    )
    assert isinstance(
        D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=0, **KW)[0], D.StreamingLoader
    )

    monkeypatch.setenv("LMIX_IN_MEMORY_MAX_GB", "0")
    assert D.in_memory_budget() == 0
    assert isinstance(D.build_loaders("imagefolder", root=folder, num_workers=0, **KW)[0], D.StreamingLoader)
    monkeypatch.setenv("LMIX_IN_MEMORY_MAX_GB", "0.5")
    assert D.in_memory_budget() == 1024**3 // 2
    assert isinstance(D.build_loaders("imagefolder", root=folder, **KW)[0], D.DeviceLoader)
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv("LMIX_IN_MEMORY_MAX_GB", bad)
        with pytest.raises(ValueError, match="LMIX_IN_MEMORY_MAX_GB must be a number of GiB >= 0"):
            D.build_loaders("imagefolder", root=folder, **KW)
    with pytest.raises(ValueError, match="memory_budget must be an integer >= 0"):
        D.build_loaders("imagefolder", root=folder, memory_budget=-1, **KW)


def test_decoding_runs_in_parallel_threads_with_the_same_result(folder, monkeypatch):
    paths = [str(p) for p in sorted((folder / "train").rglob("*.png"))]
    used = []

    class Recording(sources.ThreadPoolExecutor):
        def __init__(self, max_workers):
            used.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(sources, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(sources, "available_cpus", lambda: 3)
    parallel = sources.load_image_files(paths, size=(8, 8))
    serial = sources.load_image_files(paths, size=(8, 8), workers=1)
    assert used == [3, 1] and torch.equal(parallel, serial)


def test_dataloader_workers_are_capped_at_the_cpus_available(folder, monkeypatch):
    monkeypatch.setattr(loaders, "available_cpus", lambda: 2)
    monkeypatch.setattr(build, "available_cpus", lambda: 2)
    train, test, _ = D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=4, **KW)
    assert train.num_workers == test.num_workers == train._loader.num_workers == 2
    assert (
        D.build_loaders("imagefolder", root=folder, in_memory=False, **KW)[0].num_workers == 2
    )  # default: min(8, CPUs)
    assert D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=1, **KW)[0].num_workers == 1
    with pytest.raises(ValueError, match="num_workers must be an integer >= 0"):
        D.build_loaders("imagefolder", root=folder, in_memory=False, num_workers=-1, **KW)
