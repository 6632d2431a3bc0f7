"""What lmix knows about each data set: shape, classes, normalisation and the paper's augmentation."""

from __future__ import annotations

from dataclasses import dataclass

from lmix.errors import LmixValueError

__all__ = ["DataFileError", "DataNotFoundError", "DatasetInfo", "dataset_info", "list_datasets"]


class DataNotFoundError(FileNotFoundError):
    """The data set's files are not where lmix looked. ``str(err)`` is one line: data set, root, flags."""


class DataFileError(LmixValueError):
    """A data set's file that is there but cannot be read: empty, truncated, not an image.

    ``str(err)`` is one line naming the file, what is wrong with it and what to do (remove it or
    replace it with a good copy).

    Attributes:
        path: the first such file.
        problem: what is wrong with it (``"an empty file"``, ``"OSError: image file is truncated"``).
        others: the other unreadable files found in the same pass (reading a whole split).
    """

    def __init__(self, path: str, problem: str, *, others: tuple[str, ...] = ()) -> None:
        self.path = str(path)
        self.problem = problem
        self.others = tuple(others)
        if not others:
            message = f"image file {self.path!r} cannot be read ({problem}): remove it or replace it with a good copy"
        else:
            shown = ", ".join(repr(o) for o in others[:3]) + (", ..." if len(others) > 3 else "")
            message = (
                f"{len(others) + 1} image files cannot be read: {self.path!r} ({problem}), {shown}; "
                "remove them or replace them with good copies"
            )
        super().__init__(message)


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a data set.

    Attributes:
        name: registry name (``lmix.data.list_datasets()``).
        num_classes: number of classes (``None`` for ``imagefolder`` until loaded).
        in_channels: C of the ``(C, H, W)`` images (or ``(C, L)`` sequences).
        image_size: ``(H, W)`` (``None`` for ``imagefolder`` until loaded); ``(L,)`` for a
            time-series set, whose samples are sequences of length L.
        mean: per-channel mean of the training images on the [0, 1] scale (time series: in the
            data's own units).
        std: per-channel standard deviation on the [0, 1] scale (time series: the data's units).
        crop_padding: zero padding of the training random crop (0: no crop); for sequences a
            random shift by up to this many steps.
        flip: whether training images are mirrored left-right (sequences reversed in time) with
            probability 0.5.
        in_memory: default data path: a uint8 tensor on the training device (True) or a
            torchvision DataLoader that decodes files on the fly (False). Time series are always
            in memory, as float32 tensors.
        subdir: conventional folder name under a common data directory (``--data-root DIR`` may
            point at the data set's own folder or at a parent holding ``subdir``).
        layout: the files expected inside the data set's folder (for messages and docs).
        downloadable: whether ``--download`` can fetch it (through torchvision).
    """

    name: str
    num_classes: int | None
    in_channels: int
    image_size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    flip: bool
    in_memory: bool
    subdir: str
    layout: str
    downloadable: bool

    @property
    def spatial_dims(self) -> int:
        """2 for images ``(C, H, W)``, 1 for sequences ``(C, L)``."""
        return 2 if self.image_size is None else len(self.image_size)


# Normalisation statistics are those of each training set, pixels / 255. CIFAR-10 and Fashion-MNIST
# were measured on the real files (tests/data/test_real_data.py checks them); digits on lmix's own train split
# (see tests/data); CIFAR-100, SVHN and Tiny-ImageNet are the widely used published values.
#
# Augmentation (the FMix protocol, docs/method.md "Deliberate differences"): random crop with 4-pixel zero padding for
# CIFAR, Fashion-MNIST and SVHN; horizontal flip for CIFAR, Tiny-ImageNet and Fashion-MNIST (the
# FMix reference code, ecs-vlc/FMix datasets.py, flips Fashion-MNIST too), never for SVHN (digits
# are not mirror symmetric). Tiny-ImageNet gets the flip only, no crop (the paper's protocol). digits
# (8x8) gets a 1-pixel crop and no flip, for the same reason as SVHN. `lmix train --crop-padding`
# and `--flip` override either.
#
# Time series (lmix.data.timeseries): float32 (N, C, L), statistics in the data's own units. The
# archive z-normalises every series, so the training split's per-channel mean is 0 and its
# standard deviation just under 1 (measured on the bundled files; tests/data/test_timeseries.py
# checks them). No augmentation by default: a flip would reverse time (a leaf's outline traced the
# other way round is another sequence), and a shift with zero fill has no established protocol
# for these sets; `--crop-padding N` shifts each series by up to N steps, `--flip true` reverses.
_INFOS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="cifar10",
            num_classes=10,
            in_channels=3,
            image_size=(32, 32),
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            crop_padding=4,
            flip=True,
            in_memory=True,
            subdir="cifar10",
            layout="cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",
            downloadable=True,
        ),
        DatasetInfo(
            name="cifar100",
            num_classes=100,
            in_channels=3,
            image_size=(32, 32),
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            crop_padding=4,
            flip=True,
            in_memory=True,
            subdir="cifar100",
            layout="cifar-100-python/ (train, test, meta)",
            downloadable=True,
        ),
        DatasetInfo(
            name="fashion_mnist",
            num_classes=10,
            in_channels=1,
            image_size=(28, 28),
            mean=(0.2860,),
            std=(0.3530,),
            crop_padding=4,
            flip=True,
            in_memory=True,
            subdir="fashion-mnist",
            layout="FashionMNIST/raw/ ({train,t10k}-{images-idx3,labels-idx1}-ubyte)",
            downloadable=True,
        ),
        DatasetInfo(
            name="svhn",
            num_classes=10,
            in_channels=3,
            image_size=(32, 32),
            mean=(0.4377, 0.4438, 0.4728),
            std=(0.1980, 0.2010, 0.1970),
            crop_padding=4,
            flip=False,
            in_memory=True,
            subdir="svhn",
            layout="train_32x32.mat, test_32x32.mat (and extra_32x32.mat for --svhn-extra)",
            downloadable=True,
        ),
        DatasetInfo(
            name="tiny_imagenet",
            num_classes=200,
            in_channels=3,
            image_size=(64, 64),
            mean=(0.4802, 0.4481, 0.3975),
            std=(0.2770, 0.2691, 0.2821),
            crop_padding=0,  # flip only: the paper's protocol for Tiny-ImageNet
            flip=True,
            in_memory=True,  # 100,000 x 3 x 64 x 64 uint8 = 1.2 GB: fits on any training GPU
            subdir="tiny-imagenet-200",
            layout="train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt",
            downloadable=False,
        ),
        DatasetInfo(
            name="imagefolder",
            num_classes=None,
            in_channels=3,
            image_size=None,
            mean=(0.485, 0.456, 0.406),  # ImageNet statistics: a neutral default for natural images
            std=(0.229, 0.224, 0.225),
            crop_padding=4,
            flip=True,
            in_memory=False,
            subdir="imagefolder",
            layout="train/<class>/<image> and val/<class>/<image> (or test/<class>/<image>)",
            downloadable=False,
        ),
        DatasetInfo(
            name="digits",
            num_classes=10,
            in_channels=1,
            image_size=(8, 8),
            mean=(0.3054,),
            std=(0.3760,),
            crop_padding=1,
            flip=False,
            in_memory=True,
            subdir="digits",
            layout="(bundled with scikit-learn, no files needed)",
            downloadable=False,
        ),
        DatasetInfo(
            name="osuleaf",
            num_classes=6,
            in_channels=1,
            image_size=(427,),
            mean=(0.0,),
            std=(0.9988,),
            crop_padding=0,
            flip=False,
            in_memory=True,
            subdir="osuleaf",
            layout="(time series bundled with sktime, the 'timeseries' extra; no files needed)",
            downloadable=False,
        ),
        DatasetInfo(
            name="arrowhead",
            num_classes=3,
            in_channels=1,
            image_size=(251,),
            mean=(0.0,),
            std=(0.9980,),
            crop_padding=0,
            flip=False,
            in_memory=True,
            subdir="arrowhead",
            layout="(time series bundled with sktime, the 'timeseries' extra; no files needed)",
            downloadable=False,
        ),
    )
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`dataset_info`, ``load_tensors`` and ``build_loaders``."""
    return list(_INFOS)


def dataset_info(name: str) -> DatasetInfo:
    """The static :class:`DatasetInfo` of data set ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return _INFOS[name]
    except (KeyError, TypeError):
        raise LmixValueError(f"unknown dataset {name!r}; choose one of: {', '.join(_INFOS)}") from None
