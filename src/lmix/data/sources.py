"""Find and read each data set's files into uint8 tensors, through torchvision's dataset classes.

Root conventions (``--data-root DIR``; default ``$LMIX_DATA_ROOT`` or ``./data``). ``DIR`` may be the
data set's own folder or a common parent that holds it under its conventional name:

* cifar10: ``cifar-10-batches-py/``; parent name ``cifar10`` (e.g. ``--data-root /data`` holding
  ``cifar10/``, or ``--data-root /data/cifar10``).
* cifar100: ``cifar-100-python/``; parent name ``cifar100``.
* fashion_mnist: ``FashionMNIST/raw/`` with the four idx files; parent name ``fashion-mnist``
  (``/data/fashion-mnist``).
* svhn: ``train_32x32.mat``, ``test_32x32.mat`` (``extra_32x32.mat`` for ``svhn_extra``); parent name ``svhn``.
* tiny_imagenet: the ``tiny-imagenet-200`` folder itself (``train/<wnid>/images/*.JPEG``,
  ``val/images/``, ``val/val_annotations.txt``) or its parent.
* imagefolder: ``train/<class>/<image>`` and ``val/<class>/<image>`` (or ``test/``); parent name ``imagefolder``.
* digits: nothing (bundled with scikit-learn; a fixed stratified 80/20 split, seed 0).
* osuleaf, arrowhead: nothing (time series bundled with sktime, the ``timeseries`` extra; the
  archive's own split; ``lmix.data.timeseries``).

Image files that cannot be read (empty, truncated, not an image, or over Pillow's size limit of
``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179M pixels) raise :class:`DataFileError` naming the
file. An image between ``MAX_IMAGE_PIXELS`` (about 89M pixels) and that limit is read: Pillow warns
(``DecompressionBombWarning``, once per size and process) and lmix leaves the process's warning
filters as they are; such a file is the user's own data, it decodes, and the warning says why it
is slow. Read into memory, every file is decoded anyway, so all of them are checked and named at
once, before training starts. Streamed, a file is decoded when a DataLoader worker
reaches it: a large folder is not read through once more before every start, and the error names
the file when its batch comes (``StreamingLoader``).

``--download`` (CIFAR, Fashion-MNIST, SVHN) lets torchvision fetch the files into ``DIR`` (or into
``$LMIX_DATA_ROOT/<subdir>`` or ``./data/<subdir>`` without ``--data-root``, ``subdir`` being the parent name above). torchvision verifies the md5 sums of the CIFAR and SVHN
files; a failed check is reported like missing data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes, make_dataset
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from lmix.data.checks import check_flag
from lmix.data.cpus import available_cpus
from lmix.data.info import DataFileError, DataNotFoundError, DatasetInfo, dataset_info
from lmix.data.timeseries import TIMESERIES_DATASETS, read_timeseries
from lmix.errors import LmixValueError

__all__ = [
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "TensorData",
    "default_data_root",
    "default_image_size",
    "file_samples",
    "fit_size",
    "load_image_files",
    "load_tensors",
    "read_image",
    "resolve_root",
    "torchvision_dataset",
]

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class TensorData:
    """A whole split in memory.

    Attributes:
        images: uint8 ``(N, C, H, W)``; for the time-series sets float32 ``(N, C, L)``.
        labels: int64 ``(N,)``.
        info: the data set's :class:`DatasetInfo` (``num_classes``/``image_size`` filled in).
        classes: class names, index = label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.numel())


def default_data_root() -> Path:
    """``$LMIX_DATA_ROOT`` if set, else ``./data``."""
    return Path(os.environ.get("LMIX_DATA_ROOT", "data"))


def _present(name: str, path: Path, *, train: bool, svhn_extra: bool) -> bool:
    if name == "cifar10":
        return (path / "cifar-10-batches-py").is_dir()
    if name == "cifar100":
        return (path / "cifar-100-python").is_dir()
    if name == "fashion_mnist":
        return (path / "FashionMNIST").is_dir()
    if name == "svhn":
        if not train:
            files = ["test_32x32.mat"]
        else:
            files = ["train_32x32.mat", "extra_32x32.mat"] if svhn_extra else ["train_32x32.mat"]
        return all((path / f).is_file() for f in files)
    if name == "tiny_imagenet":
        return (path / "train").is_dir() and (path / "val" / "val_annotations.txt").is_file()
    if name == "imagefolder":
        return (path / "train").is_dir() and ((path / "val").is_dir() or (path / "test").is_dir())
    return True  # digits, time series: bundled with a package


def _flags(info: DatasetInfo) -> str:
    if info.downloadable:
        return f"pass --data-root DIR (the folder holding {info.layout}, or its parent holding {info.subdir}/) or --download to fetch it"
    return f"pass --data-root DIR (the folder holding {info.layout}, or its parent holding {info.subdir}/); {info.name} cannot be downloaded by lmix"


def resolve_root(
    name: str, root: str | os.PathLike | None, *, download: bool = False, train: bool = True, svhn_extra: bool = False
) -> Path:
    """The folder that holds data set ``name``'s files (see the module docstring).

    Looks in ``root`` itself, then in ``root/<subdir>``. When neither holds the data and ``download``
    is set, returns where torchvision should download to.

    Raises:
        DataNotFoundError: the data is in neither place and cannot or may not be downloaded.
    """
    info = dataset_info(name)
    base = Path(root).expanduser() if root is not None else default_data_root()
    candidates = [base, base / info.subdir]
    for path in candidates:
        if _present(name, path, train=train, svhn_extra=svhn_extra):
            return path
    if download and info.downloadable:
        return base if root is not None else base / info.subdir
    raise DataNotFoundError(f"{name}: data not found in {base} (nor in {base / info.subdir}); {_flags(info)}")


def torchvision_dataset(name: str, cls, path: Path, *, download: bool, **kwargs):
    """Construct a torchvision dataset; its not-found/corrupted RuntimeError becomes DataNotFoundError."""
    info = dataset_info(name)
    try:
        return cls(str(path), download=download, **kwargs)
    except RuntimeError as err:
        text = str(err)
        if "not found" not in text.lower() and "corrupted" not in text.lower():
            raise
        raise DataNotFoundError(
            f"{name}: files in {path} are missing or failed torchvision's integrity check; {_flags(info)}"
        ) from err
    except OSError as err:
        if not download:
            raise
        raise DataNotFoundError(f"{name}: download into {path} failed ({err}); {_flags(info)}") from err


def _check_split_flags(name: str, *, train: object, download: object, svhn_extra: object) -> None:
    for flag, value in (("train", train), ("download", download), ("svhn_extra", svhn_extra)):
        check_flag(value, name=flag)
    if svhn_extra and name != "svhn":
        raise LmixValueError(f"svhn_extra only applies to the svhn dataset, not {name!r}")


def load_tensors(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    train: bool,
    download: bool = False,
    svhn_extra: bool = False,
    image_size: tuple[int, int] | None = None,
) -> TensorData:
    """Read one split of data set ``name`` into memory as uint8 tensors.

    Args:
        name: one of ``lmix.data.list_datasets()``.
        root: data root (module docstring); ``None``: ``$LMIX_DATA_ROOT`` or ``./data``.
        train: training split (True) or test split (False; Tiny-ImageNet: ``val``).
        download: let torchvision download CIFAR, Fashion-MNIST or SVHN when missing.
        svhn_extra: SVHN only: append the 531,131 ``extra`` images to the training split.
        image_size: tiny_imagenet/imagefolder only: ``(H, W)`` every image is brought to (shorter side
            resized, then centre-cropped, only where an image differs). Default: 64x64 for
            Tiny-ImageNet, the size of the first training image for an ImageFolder.

    Returns:
        :class:`TensorData` with images uint8 ``(N, C, H, W)`` (time series: float32 ``(N, C, L)``)
        and labels int64 ``(N,)``.

    Raises:
        DataNotFoundError: the files are missing or corrupted (one line naming root and flags).
    """
    info = dataset_info(name)
    _check_split_flags(name, train=train, download=download, svhn_extra=svhn_extra)
    if image_size is not None and name not in ("tiny_imagenet", "imagefolder"):
        raise LmixValueError(f"image_size only applies to tiny_imagenet and imagefolder, not {name!r}")
    if name == "digits":
        return _load_digits(info, train=train)
    if name in TIMESERIES_DATASETS:
        values, labels, classes = read_timeseries(name, train=train)
        return TensorData(images=values, labels=labels, info=info, classes=classes)
    path = resolve_root(name, root, download=download, train=train, svhn_extra=svhn_extra)
    if name in ("cifar10", "cifar100"):
        from torchvision.datasets import CIFAR10, CIFAR100

        ds = torchvision_dataset(name, CIFAR10 if name == "cifar10" else CIFAR100, path, download=download, train=train)
        # .data is an (N, H, W, C) view of the pickles' (N, C, H, W) rows: transposing back is free.
        images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        labels = torch.as_tensor(ds.targets, dtype=torch.long)
        classes = tuple(ds.classes)
    elif name == "fashion_mnist":
        from torchvision.datasets import FashionMNIST

        ds = torchvision_dataset(name, FashionMNIST, path, download=download, train=train)
        images = ds.data.to(torch.uint8).unsqueeze(1).contiguous()
        labels = ds.targets.to(torch.long)
        classes = tuple(ds.classes)
    elif name == "svhn":
        from torchvision.datasets import SVHN

        splits = ["train", "extra"] if (train and svhn_extra) else ["train" if train else "test"]
        parts = [torchvision_dataset(name, SVHN, path, download=download, split=s) for s in splits]
        images = torch.cat([torch.from_numpy(np.ascontiguousarray(p.data)) for p in parts])  # (N, 3, 32, 32)
        labels = torch.cat([torch.as_tensor(p.labels, dtype=torch.long) for p in parts])  # torchvision maps 10 -> 0
        classes = tuple(str(d) for d in range(10))
    else:  # tiny_imagenet, imagefolder
        samples, classes_list = file_samples(name, path, train=train)
        size = image_size or default_image_size(name, path)
        images = load_image_files([p for p, _ in samples], size=size)
        labels = torch.as_tensor([c for _, c in samples], dtype=torch.long)
        classes = tuple(classes_list)
        info = replace(info, num_classes=len(classes), image_size=tuple(size))
    return TensorData(images=images, labels=labels, info=info, classes=classes)


def _load_digits(info: DatasetInfo, *, train: bool) -> TensorData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Values 0..16 -> 0..255 so that digits goes through the same uint8 pipeline as every other set.
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    target = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(target)), test_size=DIGITS_TEST_FRACTION, stratify=target, random_state=DIGITS_SPLIT_SEED
    )
    idx = np.sort(train_idx if train else test_idx)
    images = torch.from_numpy(pixels[idx]).unsqueeze(1).contiguous()
    labels = torch.from_numpy(target[idx])
    return TensorData(images=images, labels=labels, info=info, classes=tuple(str(d) for d in range(10)))


def file_samples(name: str, path: Path, *, train: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """(image path, class index) pairs and class names of a folder data set, via torchvision's helpers.

    Tiny-ImageNet: classes are the sorted wnids of ``train/`` (torchvision ImageFolder order); the
    validation labels come from ``val/val_annotations.txt``. ImageFolder: the classes of ``train/``;
    ``val/`` (or ``test/``) is mapped with the same class indices, so a class missing there keeps
    its index.
    """
    info = dataset_info(name)
    path = Path(path)
    if name == "tiny_imagenet":
        classes, class_to_idx = find_classes(path / "train")
        if train:
            return make_dataset(path / "train", class_to_idx, extensions=IMG_EXTENSIONS), classes
        samples = []
        ann = path / "val" / "val_annotations.txt"
        for lineno, line in enumerate(ann.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in class_to_idx:
                raise DataNotFoundError(
                    f"{name}: {ann} line {lineno} is not '<file>\\t<wnid of train/>...'; {_flags(info)}"
                )
            samples.append((str(path / "val" / "images" / fields[0]), class_to_idx[fields[1]]))
        return samples, classes
    if name == "imagefolder":
        classes, class_to_idx = find_classes(path / "train")
        if train:
            return make_dataset(path / "train", class_to_idx, extensions=IMG_EXTENSIONS), classes
        split = path / "val" if (path / "val").is_dir() else path / "test"
        return make_dataset(split, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True), classes
    raise LmixValueError(f"{name!r} is not a folder dataset (tiny_imagenet, imagefolder)")


def default_image_size(name: str, path: Path) -> tuple[int, int]:
    """``(H, W)`` a folder data set's images are fitted to unless told: its info's size, else the first image's."""
    info = dataset_info(name)
    if info.image_size is not None:
        return info.image_size
    # The first training image fixes the size for both splits.
    first, _ = file_samples(name, path, train=True)[0][0]
    with read_image(first) as img:
        width, height = img.size
    return height, width


def read_image(path: str) -> Any:
    """An image file decoded to an RGB PIL image, as torchvision's ``default_loader`` reads it.

    Raises:
        DataFileError: the file is empty, truncated, not an image PIL can identify, over Pillow's
            size limit, or cannot be opened (one line naming it).
    """
    try:
        return default_loader(path)
    # A decoder may raise anything on a damaged file (OSError, SyntaxError, zlib.error, ...).
    except Exception as err:  # noqa: BLE001
        raise DataFileError(path, _read_problem(path, err)) from None


def _read_problem(path: str, err: Exception) -> str:
    """What is wrong with a file PIL could not read, in a few words."""
    try:
        if os.path.getsize(path) == 0:
            return "an empty file, 0 bytes"
    except OSError:
        pass
    if isinstance(err, UnidentifiedImageError):
        return "not an image file PIL can identify"
    if isinstance(err, Image.DecompressionBombError):
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{pixels.group(1)} pixels" if pixels else "too many pixels"
        return (
            f"{size}, over the {2 * Image.MAX_IMAGE_PIXELS} that Pillow decodes (its guard against "
            "decompression bombs); shrink it below that"
        )
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def fit_size(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bring a ``(C, H, W)`` image to ``size``: shorter side resized (antialiased), then centre crop.

    Images already of that size are returned unchanged.
    """
    h, w = int(size[0]), int(size[1])
    if tuple(image.shape[-2:]) == (h, w):
        return image
    scale = max(h / image.shape[-2], w / image.shape[-1])
    resized = TF.resize(
        image, [max(h, round(image.shape[-2] * scale)), max(w, round(image.shape[-1] * scale))], antialias=True
    )
    return TF.center_crop(resized, [h, w])


def _read_rgb(path: str, size: Sequence[int]) -> torch.Tensor:
    # PIL via torchvision's default_loader, as the DataLoader path does, so both give identical pixels.
    with read_image(path) as img:
        return fit_size(TF.pil_to_tensor(img), size)


def load_image_files(paths: Sequence[str], *, size: Sequence[int], workers: int | None = None) -> torch.Tensor:
    """Decode image files (RGB) into one uint8 ``(N, 3, H, W)`` tensor, in parallel threads.

    Args:
        paths: image files.
        size: ``(H, W)``; other sizes are fitted with :func:`fit_size`.
        workers: decoding threads (default: the CPUs this process may use, at most 16).

    Raises:
        DataFileError: files that cannot be read; every file is tried first, so the error names
            all of them (the first in ``paths`` order, and the others).
    """
    h, w = int(size[0]), int(size[1])
    out = torch.empty((len(paths), 3, h, w), dtype=torch.uint8)
    if workers is None:
        workers = min(16, available_cpus())

    def work(i: int) -> DataFileError | None:
        try:
            out[i] = _read_rgb(paths[i], (h, w))
        except DataFileError as err:
            return err
        return None

    failed: list[DataFileError] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while decoding
        for err in tqdm(
            pool.map(work, range(len(paths))),
            total=len(paths),
            desc="decoding images",
            disable=len(paths) < 5000 or None,
            leave=False,
        ):
            if err is not None:
                failed.append(err)
    if failed:
        raise DataFileError(failed[0].path, failed[0].problem, others=tuple(e.path for e in failed[1:]))
    return out
