"""``attack_run``: the FGSM curve of a run folder written by ``lmix train``, on its test split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from lmix._checks import is_integer
from lmix.errors import LmixValueError
from lmix.experiments.attack.fgsm import Normalized, check_eps, fgsm_accuracy
from lmix.experiments.records import check_run_dir, read_checkpoint, trained_model

__all__ = ["attack_run"]

_AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def attack_run(
    run_dir: str | os.PathLike,
    eps: Sequence[float],
    *,
    eps_255: Sequence[float] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    amp: str = "run",
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """FGSM accuracy curve of a trained run on its data set's test split.

    Args:
        run_dir: a folder written by ``lmix train``.
        eps: fractions of the [0, 1] range (see :func:`lmix.experiments.attack.parse_eps`).
        eps_255: the same in 1/255 units (default: ``eps * 255``), recorded as given.
        batch_size: attack batch size (default: the run's batch size, the trainer's test batch).
        device: auto, cpu, cuda or cuda:N.
        amp: 'run' (the run's mixed precision as the trainer uses it on this device), none, bf16, fp16.
        data_root: where the data set lives (default: the run's ``data_root``).
        download: let torchvision download a missing data set.
        limit: attack only the first ``limit`` test images.
        progress: show a tqdm bar.

    Returns:
        The record that :func:`lmix.experiments.records.write_fgsm` saves: ``eps`` (fractions),
        ``eps_255``, ``acc`` (percent, the units of ``final_acc``), ``recorded_acc`` (the
        checkpoint's last test accuracy), ``num_images``, ``limit``, ``epoch`` and the run's identity.
    """
    from lmix.data import load_tensors

    path = check_run_dir(run_dir)
    eps, eps_255 = _checked_eps(eps, eps_255)
    _check_optional_count(limit, "limit")
    _check_optional_count(batch_size, "batch size")
    config, ckpt = read_checkpoint(path)
    check_attackable(path, config.dataset)
    dev, amp_dtype, memory_format = _placement(config, device, amp)
    data = load_tensors(
        config.dataset, root=data_root if data_root is not None else config.data_root, train=False, download=download
    )
    model = trained_model(ckpt, config, data.info, path).to(dev).to(memory_format=memory_format)
    images, labels = data.images, data.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    acc = fgsm_accuracy(
        Normalized(model, data.info.mean, data.info.std),
        images,
        labels,
        eps,
        batch_size=batch_size or config.batch_size,
        device=dev,
        amp_dtype=amp_dtype,
        memory_format=memory_format,
        progress=progress,
    )
    record = {"attack": "fgsm", "eps": eps, "eps_255": eps_255, "acc": acc, "accuracy_units": "percent"}
    return record | _provenance(config, ckpt, dev, amp_dtype, num_images=int(labels.shape[0]), limit=limit)


def check_attackable(run_dir: str | os.PathLike, dataset: str) -> None:
    """LmixValueError (one line naming the run) unless FGSM applies to ``dataset``: images, whose
    pixels have the [0, 1] range that eps is a step in (not time series)."""
    from lmix.data import dataset_info

    if dataset_info(dataset).spatial_dims != 2:
        raise LmixValueError(
            f"{run_dir}: FGSM's eps is a step in the [0, 1] range of image pixels; "
            f"{dataset} holds time series, which it does not apply to"
        )


def _checked_eps(eps: Sequence[float], eps_255: Sequence[float] | None) -> tuple[list[float], list[float]]:
    """eps as fractions (each in [0, 1], at least one) and in 1/255 units (default: ``eps * 255``)."""
    fractions = [check_eps(e) for e in eps]
    if not fractions:
        raise LmixValueError("at least one eps is needed")
    in_255 = [round(e * 255, 10) for e in fractions] if eps_255 is None else [float(v) for v in eps_255]
    if len(in_255) != len(fractions):
        raise LmixValueError(f"eps_255 must have one value per eps ({len(fractions)}), got {len(in_255)}")
    return fractions, in_255


def _check_optional_count(value: int | None, what: str) -> None:
    if value is not None and (not is_integer(value) or value < 1):
        raise LmixValueError(f"{what} must be an integer >= 1, got {value!r}")


def _placement(config: Any, device: str, amp: str) -> tuple[torch.device, torch.dtype | None, torch.memory_format]:
    """The device, autocast dtype and memory format the run's model is attacked with."""
    from lmix.experiments.train.distributed import DistEnv
    from lmix.experiments.train.trainer import resolve_device

    dev = resolve_device(device, DistEnv())
    channels_last = config.channels_last if config.channels_last is not None else dev.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return dev, _resolve_amp(amp, config, dev), memory_format


def _resolve_amp(amp: str, config: Any, device: torch.device) -> torch.dtype | None:
    """'run': the run's own setting as the trainer resolves it on ``device``; else none/bf16/fp16."""
    if amp == "run":
        amp = config.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    if amp not in _AMP:
        raise LmixValueError(f"amp must be run, none, bf16 or fp16, got {amp!r}")
    return _AMP[amp]


def _provenance(
    config: Any,
    ckpt: dict[str, Any],
    dev: torch.device,
    amp_dtype: torch.dtype | None,
    *,
    num_images: int,
    limit: int | None,
) -> dict[str, Any]:
    """What the curve was computed from and how: the weights' epoch, the run's identity, device and precision."""
    history = ckpt.get("history") or []
    return {
        "recorded_acc": history[-1].get("test_acc") if history else None,
        "epoch": int(ckpt.get("epoch", 0)),
        "num_images": num_images,
        "limit": limit,
        "dataset": config.dataset,
        "model": config.model,
        "method": config.method,
        "seed": config.seed,
        "device": str(dev),
        "amp": "none" if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
    }
