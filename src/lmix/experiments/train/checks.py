"""The checks and building blocks that ``lmix train`` applies to a run before training, shared with the
readers of run records (:mod:`lmix.experiments.records`), which judge a record by the same rules.

The trainer and the readers both import this module; it imports neither, so that they need not
import each other for the rules (an import cycle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from lmix._checks import is_finite_real, is_integer
from lmix.errors import LmixValueError
from lmix.experiments.train.config import TrainConfig
from lmix.experiments.train.mixer_config import mixer_from_config

__all__ = [
    "RunError",
    "CHECKPOINT_FORMAT",
    "autocast_dtype",
    "build_model",
    "check_input_kind",
    "load_checkpoint",
]

CHECKPOINT_FORMAT = 1


# The kinds of data a model or a method takes, by their number of spatial axes.
_KINDS = {1: "sequences (B, C, L)", 2: "images (B, C, H, W)", 3: "volumes (B, C, D, H, W)"}


class RunError(LmixValueError):
    """A user-fixable problem with the run (out dir, checkpoint): one line, exit code 2."""


def build_model(config: TrainConfig, info: Any) -> nn.Module:
    from lmix.models import create_model

    _check_model_input(config.model, getattr(info, "spatial_dims", 2), config.dataset)
    kwargs: dict[str, Any] = {} if config.width is None else {"width": config.width}
    if config.model_layout is not None:
        kwargs["layout"] = config.model_layout
    return create_model(config.model, num_classes=info.num_classes, in_channels=info.in_channels, **kwargs)


def _check_model_input(model: str, spatial_dims: int, dataset: str) -> None:
    """Refuse an image model on sequences and a sequence model on images (one line naming the ones that fit)."""
    from lmix.models import list_models

    fitting = list_models(spatial_dims=spatial_dims)
    if model in fitting or model not in list_models():  # an unknown name gets create_model's own message
        return
    raise LmixValueError(
        f"model {model!r} takes {_KINDS[3 - spatial_dims]} but data set {dataset!r} holds {_KINDS[spatial_dims]}; "
        f"use one of: {', '.join(fitting)}"
    )


def check_input_kind(config: TrainConfig) -> None:
    """The model, the method and ``channels_last`` fit the data set's kind (images or sequences), and
    the crop padding and the box size its sample size where its info gives that size; checked before
    any data is read, without reading any file (an ImageFolder's size is checked by :func:`train`).

    Raises:
        LmixValueError: an image model on sequences, a sequence model on images, a method that does
            not take the data's kind (PatchUp mixes 2-D feature maps: images only), ``channels_last``
            on sequences, or a crop padding or box too large for the samples (one line naming what fits).
    """
    from lmix.data import dataset_info

    info = dataset_info(config.dataset)
    spatial_dims = info.spatial_dims
    _check_model_input(config.model, spatial_dims, config.dataset)
    _check_method_input(config.method, spatial_dims, config.dataset)
    if spatial_dims != 2 and config.channels_last:
        raise LmixValueError(f"channels_last applies to images (B, C, H, W); {config.dataset} holds sequences")
    if info.image_size is not None:
        _check_sizes(config, tuple(int(s) for s in info.image_size))


def _check_method_input(method: str, spatial_dims: int, dataset: str) -> None:
    """Refuse a method (or a part of a combination such as patchup+mixup) that does not take the data's kind."""
    from lmix.mixing.registry import list_mixers, mixer_class

    parts = [part.strip() for part in method.split("+")]
    if not all(part in list_mixers() for part in parts):
        return  # an unknown name gets create_mixer's own message
    for part in parts:
        ranks = mixer_class(part).spatial_ranks
        if spatial_dims not in ranks:
            fitting = [m for m in list_mixers() if spatial_dims in mixer_class(m).spatial_ranks]
            takes = " and ".join(_KINDS[d] for d in ranks)
            whose = f"method {method!r}: {part!r}" if part != method else f"method {method!r}"
            raise LmixValueError(
                f"{whose} takes {takes} but data set {dataset!r} holds {_KINDS[spatial_dims]}; "
                f"use one of: {', '.join(fitting)}"
            )


def _check_sizes(config: TrainConfig, size: tuple[int, ...]) -> None:
    """Refuse a crop padding or a CutMix/Cutout box too large for samples of ``size`` (``(H, W)`` or ``(L,)``).

    The padding must be less than the side, so that every random crop holds part of the sample; the
    box at most the side. An unset box is the method's default (Cutout's 16), checked as the mixer
    will be built. A run without augmentation does not crop: its padding is not checked.
    """
    side = min(size)
    shape = "x".join(str(s) for s in size)
    samples = f"sequences of length {shape}" if len(size) == 1 else f"{shape} images"
    if config.augment and config.crop_padding is not None and config.crop_padding >= side:
        raise LmixValueError(
            f"crop_padding {config.crop_padding} is too large for the {samples} of {config.dataset}: give "
            f"--crop-padding a padding in [0, {side - 1}] (less than the side: every crop holds part of the sample)"
        )
    for part, box in _box_sides(config):
        if box > side:
            whose = "" if config.box_size is not None else f" ({part}'s default)"
            raise LmixValueError(
                f"box_size {box}{whose} is larger than the {samples} of {config.dataset}: "
                f"give --box-size a side in [1, {side}]"
            )


def _box_sides(config: TrainConfig) -> list[tuple[str, int]]:
    """``(method, largest box side)`` of each part of the run's mixer that has a fixed box (Cutout,
    CutMix with ``box_size``), as the mixer is built: an unset ``box_size`` is the method's default."""
    hparams = mixer_from_config(config).hparams()
    parts = hparams["mixers"] if "mixers" in hparams else [{**hparams, "name": config.method}]
    sides = []
    for part in parts:
        size = part.get("size")
        if size is not None:
            sides.append((part["name"], max(size) if isinstance(size, list) else int(size)))
    return sides


def load_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; a corrupt or truncated file is a one-line RunError."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling/zip failure means the same thing here
        raise RunError(
            f"checkpoint {str(path)!r} is corrupt or truncated ({type(err).__name__}); "
            "remove it to start over or choose another --out"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "config" not in ckpt:
        raise RunError(f"checkpoint {str(path)!r} is not an lmix checkpoint (format {CHECKPOINT_FORMAT})")
    bad = _bad_checkpoint_entry(ckpt)
    if bad:
        raise RunError(f"checkpoint {str(path)!r} is damaged: {bad}; remove it to start over or choose another --out")
    return ckpt


# The entries a resume reads, and what each must be.
_CHECKPOINT_ENTRIES: dict[str, tuple[str, Any]] = {
    "config": ("a mapping", lambda v: isinstance(v, dict)),
    "epoch": ("an integer >= 0", lambda v: is_integer(v) and v >= 0),
    "best_epoch": ("an integer >= 0", lambda v: is_integer(v) and v >= 0),
    "train_images": ("an integer >= 0", lambda v: is_integer(v) and v >= 0),
    "best_acc": ("a finite number", is_finite_real),
    "train_seconds": ("a finite number", is_finite_real),
    "history": ("a list", lambda v: isinstance(v, list)),
    "rng": ("a list", lambda v: isinstance(v, list)),
}


def _bad_checkpoint_entry(ckpt: dict[str, Any]) -> str | None:
    """What is wrong with the first entry a resume would misread, or None (entries absent: old files)."""
    for key, (what, ok) in _CHECKPOINT_ENTRIES.items():
        if key in ckpt and not ok(ckpt[key]):
            return f"{key} must be {what}, got {type(ckpt[key]).__name__}"
    return None


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``config.amp`` on ``device`` (``auto``: bf16 on CUDA, none elsewhere)."""
    amp = config.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
