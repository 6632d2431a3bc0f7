"""``build_loaders``: the trainer's one entry point to the data."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from lmix._checks import is_integer
from lmix.data.checks import check_flag, check_index, check_loader_args
from lmix.data.cpus import available_cpus
from lmix.data.info import DatasetInfo, dataset_info
from lmix.data.loaders import DeviceLoader, FileDataset, StreamingLoader
from lmix.data.sources import default_image_size, file_samples, load_tensors, resolve_root, torchvision_dataset
from lmix.data.subset import stratified_subset
from lmix.errors import LmixValueError

__all__ = [
    "build_loaders",
    "check_in_memory",
    "IN_MEMORY_BUDGET_ENV",
    "DEFAULT_IN_MEMORY_BUDGET",
    "in_memory_budget",
    "decoded_size",
]

Loader = DeviceLoader | StreamingLoader
FOLDER_DATASETS = ("tiny_imagenet", "imagefolder")

# An ImageFolder whose decoded uint8 images (both splits) fit in this many bytes is read into
# memory once and served like the built-in data sets: 2 GiB holds 50,000 32x32 RGB images (154 MB)
# 14 times over and a Tiny-ImageNet-sized set (1.2 GB, in memory by default too), and still fits beside the
# model on any training GPU or in a laptop's RAM.
DEFAULT_IN_MEMORY_BUDGET = 2 * 1024**3
IN_MEMORY_BUDGET_ENV = "LMIX_IN_MEMORY_MAX_GB"


def in_memory_budget() -> int:
    """Bytes an ImageFolder may take decoded to be kept in memory: ``$LMIX_IN_MEMORY_MAX_GB`` (GiB) or 2 GiB."""
    text = os.environ.get(IN_MEMORY_BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_IN_MEMORY_BUDGET
    try:
        gib = float(text)
    except ValueError:
        gib = -1.0
    if not gib >= 0:  # also NaN
        raise LmixValueError(f"{IN_MEMORY_BUDGET_ENV} must be a number of GiB >= 0 (e.g. 4 or 0.5), got {text!r}")
    return int(gib * 1024**3)


def decoded_size(name: str, *, root: Any, image_size: tuple[int, int] | None) -> int:
    """Bytes of a folder data set's two splits decoded to uint8 ``(N, 3, H, W)`` (files are listed, not read)."""
    path = resolve_root(name, root, train=True)
    n = sum(len(file_samples(name, path, train=t)[0]) for t in (True, False))
    h, w = image_size or default_image_size(name, path)
    return n * 3 * int(h) * int(w)


@dataclass(frozen=True)
class _Request:
    """What both kinds of loaders are built from (``build_loaders``' arguments, checked)."""

    name: str
    root: str | os.PathLike | None
    download: bool
    batch_size: int
    test_batch_size: int
    device: torch.device | str
    seed: int
    rank: int
    world_size: int
    train_subset: int | None
    svhn_extra: bool
    augment: bool
    crop_padding: int | None
    flip: bool | None
    image_size: tuple[int, int] | None

    def with_overrides(self, info: DatasetInfo) -> DatasetInfo:
        """``info`` with the requested ``crop_padding`` and ``flip`` where they are set."""
        if self.crop_padding is not None:
            if not is_integer(self.crop_padding) or self.crop_padding < 0:
                raise LmixValueError(f"crop_padding must be an integer >= 0, got {self.crop_padding!r}")
            info = replace(info, crop_padding=int(self.crop_padding))
        if self.flip is not None:
            check_flag(self.flip, name="flip", optional=True)
            info = replace(info, flip=self.flip)
        return info

    def loader_args(self) -> dict[str, Any]:
        return {"device": self.device, "seed": self.seed, "rank": self.rank, "world_size": self.world_size}


def build_loaders(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    batch_size: int,
    device: torch.device | str,
    seed: int,
    train_subset: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    in_memory: bool | None = None,
    svhn_extra: bool = False,
    test_batch_size: int | None = None,
    augment: bool = True,
    crop_padding: int | None = None,
    flip: bool | None = None,
    image_size: tuple[int, int] | None = None,
    num_workers: int | None = None,
    memory_budget: int | None = None,
) -> tuple[Loader, Loader, DatasetInfo]:
    """Train and test loaders for data set ``name``, and its info with ``num_classes`` filled in.

    Args:
        name: one of ``lmix.data.list_datasets()``.
        root: data root (``--data-root``; see ``lmix.data.sources``). ``None``: ``$LMIX_DATA_ROOT`` or ``./data``.
        download: let torchvision download missing CIFAR / Fashion-MNIST / SVHN files.
        batch_size: training batch size per rank.
        device: training device; batches arrive there.
        seed: seeds the subset, the order (per epoch) and the augmentation (per epoch and rank).
        train_subset: keep only this many training samples, class-stratified (``stratified_subset``).
        rank: this process's index among ``world_size`` (its shard of the data).
        world_size: the number of processes sharing the data.
        in_memory: uint8 tensors on ``device`` (:class:`DeviceLoader`) or a torchvision DataLoader
            (:class:`StreamingLoader`). Default: ``info.in_memory``; for ``imagefolder``: in memory
            when both splits decoded take at most ``memory_budget`` bytes (the images are then
            decoded once, in parallel threads).
        svhn_extra: SVHN: add the ``extra`` split to training.
        test_batch_size: test batch size (default: ``batch_size``).
        augment: random crop and flip for training (False: none).
        crop_padding: override ``info.crop_padding`` (0 disables the crop).
        flip: override ``info.flip``.
        image_size: tiny_imagenet / imagefolder: ``(H, W)`` every image is fitted to.
        num_workers: DataLoader workers of the streaming path (default: min(8, CPUs); never more
            than the CPUs this process may use, ``available_cpus()``).
        memory_budget: bytes for the ``imagefolder`` decision above (default:
            ``$LMIX_IN_MEMORY_MAX_GB`` GiB, else 2 GiB).

    Returns:
        ``(train_loader, test_loader, info)``. Both loaders have ``set_epoch``, ``__len__``
        (batches), ``num_samples`` (this rank's samples per epoch), ``dataset_size``,
        ``state_dict``/``load_state_dict`` and yield float32 ``(B, C, H, W)`` (time series:
        ``(B, C, L)``) and int64 ``(B,)``.
    """
    info = dataset_info(name)
    check_flag(in_memory, name="in_memory", optional=True)
    check_in_memory(name, in_memory)
    if train_subset is not None and (not is_integer(train_subset) or train_subset < 1):
        raise LmixValueError(f"train_subset must be None or an integer >= 1, got {train_subset!r}")
    if image_size is not None and name not in FOLDER_DATASETS:
        raise LmixValueError(f"image_size only applies to tiny_imagenet and imagefolder, not {name!r}")
    # Fail on bad arguments before spending time on reading the data.
    batch_size, seed, rank, world_size = check_loader_args(
        batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, train=True
    )
    request = _Request(
        name=name,
        root=root,
        download=download,
        batch_size=batch_size,
        test_batch_size=check_index(
            batch_size if test_batch_size is None else test_batch_size, name="test_batch_size", low=1
        ),
        device=device,
        seed=seed,
        rank=rank,
        world_size=world_size,
        train_subset=None if train_subset is None else int(train_subset),
        svhn_extra=svhn_extra,
        augment=augment,
        crop_padding=crop_padding,
        flip=flip,
        image_size=image_size,
    )
    request.with_overrides(info)
    if memory_budget is not None:
        check_index(memory_budget, name="memory_budget", low=0)
    if in_memory is None:
        in_memory = _fits_in_memory(request, info, memory_budget)
    if in_memory:
        return _device_loaders(request)
    return _streaming_loaders(request, num_workers)


def check_in_memory(name: str, in_memory: bool | None) -> None:
    """Refuse ``in_memory=False`` for a data set that is always kept in memory (a time series); reads no data.

    Raises:
        LmixValueError: naming the data set.
    """
    if in_memory is False and dataset_info(name).spatial_dims == 1:
        raise LmixValueError(f"{name} is a time-series data set, always kept in memory: in_memory=False does not apply")


def _fits_in_memory(request: _Request, info: DatasetInfo, memory_budget: int | None) -> bool:
    """The data set's default; an ImageFolder is decided by size: small sets are decoded once, then served from memory."""
    if request.name != "imagefolder":
        return info.in_memory
    budget = in_memory_budget() if memory_budget is None else memory_budget
    return decoded_size(request.name, root=request.root, image_size=request.image_size) <= budget


def _device_loaders(request: _Request) -> tuple[Loader, Loader, DatasetInfo]:
    """Both splits read into uint8 tensors on the training device (:class:`DeviceLoader`)."""
    name, root, download = request.name, request.root, request.download
    train = load_tensors(
        name, root=root, train=True, download=download, svhn_extra=request.svhn_extra, image_size=request.image_size
    )
    # The test split is fitted to the training split's size (an ImageFolder's comes from its first image).
    test = load_tensors(
        name,
        root=root,
        train=False,
        download=download,
        image_size=train.info.image_size if name in FOLDER_DATASETS else None,
    )
    info = request.with_overrides(train.info)
    images, labels = train.images, train.labels
    if request.train_subset is not None:
        idx = stratified_subset(labels, request.train_subset, seed=request.seed)
        images, labels = images[idx], labels[idx]
    common = request.loader_args()
    train_loader = DeviceLoader(
        images, labels, info=info, batch_size=request.batch_size, train=True, augment=request.augment, **common
    )
    test_loader = DeviceLoader(
        test.images, test.labels, info=info, batch_size=request.test_batch_size, train=False, **common
    )
    return train_loader, test_loader, info


def _streaming_loaders(request: _Request, num_workers: int | None) -> tuple[Loader, Loader, DatasetInfo]:
    """torchvision datasets read by DataLoader workers (:class:`StreamingLoader`)."""
    if num_workers is None:
        num_workers = min(8, available_cpus())
    num_workers = check_index(num_workers, name="num_workers", low=0)
    num_workers = min(num_workers, available_cpus())  # more workers than CPUs only compete for them
    split = dict(name=request.name, root=request.root, download=request.download)
    base_train, train_labels, info = _streaming_split(
        **split, train=True, svhn_extra=request.svhn_extra, image_size=request.image_size
    )
    base_test, _, _ = _streaming_split(**split, train=False, svhn_extra=False, image_size=info.image_size)
    info = request.with_overrides(info)
    if request.train_subset is not None:
        base_train = Subset(
            base_train, stratified_subset(train_labels, request.train_subset, seed=request.seed).tolist()
        )
    common = {**request.loader_args(), "info": info, "num_workers": num_workers}
    train_loader = StreamingLoader(
        base_train, batch_size=request.batch_size, train=True, augment=request.augment, **common
    )
    test_loader = StreamingLoader(base_test, batch_size=request.test_batch_size, train=False, **common)
    return train_loader, test_loader, info


def _streaming_split(
    name: str, *, root: Any, download: bool, train: bool, svhn_extra: bool, image_size: tuple[int, int] | None
) -> tuple[Dataset, torch.Tensor, DatasetInfo]:
    """An untransformed dataset of (image, label) for one split, its labels and its info."""
    info = dataset_info(name)
    if name == "digits":
        data = load_tensors(name, train=train)
        return TensorDataset(data.images, data.labels), data.labels, info
    path = resolve_root(name, root, download=download, train=train, svhn_extra=svhn_extra)
    if name in FOLDER_DATASETS:
        samples, classes = file_samples(name, path, train=train)
        size = image_size or default_image_size(name, path)
        ds = FileDataset(samples)
        return (
            ds,
            torch.as_tensor(ds.targets, dtype=torch.long),
            replace(info, num_classes=len(classes), image_size=tuple(size)),
        )
    from torchvision.datasets import CIFAR10, CIFAR100, SVHN, FashionMNIST

    if name == "svhn":
        splits = ["train", "extra"] if (train and svhn_extra) else ["train" if train else "test"]
        parts = [torchvision_dataset(name, SVHN, path, download=download, split=s) for s in splits]
        labels = torch.cat([torch.as_tensor(p.labels, dtype=torch.long) for p in parts])
        return torch.utils.data.ConcatDataset(parts), labels, info
    cls = {"cifar10": CIFAR10, "cifar100": CIFAR100, "fashion_mnist": FashionMNIST}[name]
    ds = torchvision_dataset(name, cls, path, download=download, train=train)
    return ds, torch.as_tensor(ds.targets, dtype=torch.long), info
