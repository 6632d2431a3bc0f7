"""Time-series classification data sets that sktime ships inside its wheel (no download, no files).

* osuleaf: OSULeaf of the UCR archive: outlines of leaves of 6 tree species read as one closed
  contour each, 1 channel, length 427; 200 training and 242 test series.
* arrowhead: ArrowHead: outlines of projectile points (arrow heads) of 3 types, 1 channel,
  length 251; 36 training and 175 test series.

Both come with the archive's own TRAIN/TEST split and each series z-normalised (mean 0, standard
deviation 1 over its own length). They are read with sktime's loaders (the ``timeseries`` extra),
as float32 ``(N, C, L)`` tensors: the sequence counterpart of the image sets' uint8 ``(N, C, H, W)``.
"""

from __future__ import annotations

import torch

from lmix._extras import install_hint
from lmix.errors import LmixError, LmixValueError

__all__ = ["TIMESERIES_DATASETS", "MissingTimeseriesExtraError", "read_timeseries"]

# lmix's name -> the name of sktime's loader (sktime.datasets), which reads the files in its wheel.
TIMESERIES_DATASETS: dict[str, str] = {"osuleaf": "load_osuleaf", "arrowhead": "load_arrow_head"}


class MissingTimeseriesExtraError(LmixError, ModuleNotFoundError):
    """sktime, which ships the time-series data sets, is not installed; the message names the extra."""


def _sktime_loader(name: str):
    try:
        import sktime.datasets as sk
    except ModuleNotFoundError as err:
        missing = (err.name or "sktime").split(".")[0]
        raise MissingTimeseriesExtraError(
            f"the {name} data set needs the 'timeseries' extra (no module named {missing!r}): "
            f"{install_hint('timeseries')}",
            name=missing,
        ) from None
    return getattr(sk, TIMESERIES_DATASETS[name])


def _class_order(values: list[str]) -> list[str]:
    """Class names in label order: numerically where every name is an integer, else as strings."""
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def read_timeseries(name: str, *, train: bool) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """One split of time-series data set ``name`` (one of :data:`TIMESERIES_DATASETS`).

    Class indices follow the training split's class names (integers in numeric order), so both
    splits share them.

    Returns:
        ``(values, labels, classes)``: float32 ``(N, C, L)``, int64 ``(N,)`` and the class names
        (index = label).

    Raises:
        MissingTimeseriesExtraError: sktime is not installed.
        LmixValueError: an unknown name, or a test label that the training split lacks.
    """
    if name not in TIMESERIES_DATASETS:
        raise LmixValueError(f"{name!r} is not a time-series data set; choose one of: {', '.join(TIMESERIES_DATASETS)}")
    load = _sktime_loader(name)
    x_train, y_train = load(split="train", return_type="numpy3D")
    classes = _class_order([str(v) for v in set(y_train.tolist())])
    if train:
        x, y = x_train, y_train
    else:
        x, y = load(split="test", return_type="numpy3D")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in y.tolist()} - set(index))
    if unknown:
        raise LmixValueError(f"{name}: the test split has classes {unknown} that the training split lacks")
    values = torch.as_tensor(x, dtype=torch.float32).contiguous()
    labels = torch.as_tensor([index[str(v)] for v in y.tolist()], dtype=torch.long)
    return values, labels, tuple(classes)
