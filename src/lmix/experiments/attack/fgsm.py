"""FGSM robustness (the paper's Fig. 5): attack a trained run's model in pixel space.

The attack works on images in the [0, 1] pixel range; the data set's normalisation happens
inside the model (:class:`Normalized`), so ``eps`` is a fraction of that range (``8 / 255`` is
the usual "eps 8"). One FGSM step (Goodfellow et al., 2015, SPEC section 3)::

    x_adv = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)

with the model in eval mode. :func:`fgsm_accuracy` computes the input gradient once per batch
and reuses it for every eps (the gradient does not depend on eps), so a curve costs one
forward-backward plus one forward per eps. :func:`attack_run` attacks a run directory written
by ``lmix train`` and :func:`plot_fgsm` draws the curves (``lmix attack`` is the command).

eps = 0 gives exactly the clean accuracy the trainer records: the pixel path converts uint8
images with the same float32 operations as ``lmix.data`` (``u8 * (1/255)``, then
``(x - mean) / std``), so the model sees bit-identical inputs, and an eps of 0 leaves the
images untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmix.errors import LmixTypeError, LmixValueError

__all__ = [
    "Normalized",
    "fgsm",
    "fgsm_accuracy",
    "parse_eps",
    "attack_run",
    "load_run_model",
    "read_fgsm",
    "write_fgsm",
    "plot_fgsm",
    "FGSM_JSON",
    "FGSM_PNG",
]

FGSM_JSON = "fgsm.json"
FGSM_PNG = "fgsm.png"
_AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Normalized(nn.Module):
    """Wrap a model that expects normalised images so that it takes pixel-space images in [0, 1].

    Args:
        model: maps normalised images ``(B, C, H, W)`` to logits ``(B, K)``.
        mean: per-channel mean on the [0, 1] scale, length C.
        std: per-channel standard deviation on the [0, 1] scale, length C, all > 0.

    ``forward(x)``: ``x`` float ``(B, C, H, W)`` in [0, 1] -> ``model((x - mean) / std)``.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise LmixTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise LmixValueError(
                f"mean and std must be non-empty with one value per channel, got {len(mean_t)} and {len(std_t)}"
            )
        if (
            not bool(torch.isfinite(mean_t).all())
            or not bool((std_t > 0).all())
            or not bool(torch.isfinite(std_t).all())
        ):
            raise LmixValueError(
                f"mean must be finite and std finite and > 0, got mean {mean_t.tolist()}, std {std_t.tolist()}"
            )
        self.model = model
        # Not persistent: the wrapped model's state_dict stays the trainer's.
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise LmixValueError(f"expected images (B, {self.mean.shape[1]}, H, W), got shape {tuple(x.shape)}")
        # The same two float32 operations as lmix.augment.normalize_with: identical inputs to the model.
        return self.model((x - self.mean) / self.std)


# ---------------------------------------------------------------------------------------------
# the attack
# ---------------------------------------------------------------------------------------------
def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 <= eps <= 1:
        raise LmixValueError(f"eps must be a number in [0, 1] (a fraction of the pixel range), got {eps!r}")
    return float(eps)


def _check_batch(images: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise LmixValueError(f"images must be a tensor of shape (B, C, H, W), got {_shape(images)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],) or labels.is_floating_point():
        raise LmixValueError(f"labels must be an integer tensor of shape ({images.shape[0]},), got {_shape(labels)}")
    return images, labels


def _shape(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_pixels(images: torch.Tensor) -> None:
    if not images.is_floating_point():
        raise LmixTypeError(f"images must be floating point in [0, 1] (or uint8 where accepted), got {images.dtype}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise LmixValueError(
            f"images must lie in the pixel range [0, 1], got values in [{images.min().item():.4g}, "
            f"{images.max().item():.4g}]; pass pixel-space images and wrap the model in lmix.experiments.attack.Normalized"
        )


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _gradient_sign(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, amp_dtype: torch.dtype | None
) -> torch.Tensor:
    """``sign(grad_x CE(model(x), y))`` for float images ``(B, C, H, W)``; the model's mode is the caller's."""
    x = images.detach().clone().requires_grad_(True)
    # enable_grad: callers may sit inside torch.no_grad() (e.g. an evaluation loop).
    with torch.enable_grad():
        with _autocast(images.device, amp_dtype):
            logits = model(x)
        # Sum, not mean: the sign is the same and small per-pixel gradients do not underflow.
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        # autograd.grad computes the input gradient only: no parameter's .grad is touched.
        (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def _perturb(images: torch.Tensor, sign: torch.Tensor, eps: float) -> torch.Tensor:
    if eps == 0:
        return images  # exactly the clean images, whatever the rounding of the clamp
    return (images + eps * sign).clamp_(0.0, 1.0)


def fgsm(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One FGSM step: ``clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)``.

    Args:
        model: takes pixel-space images in [0, 1] (e.g. :class:`Normalized`); it runs in eval
            mode and is put back into its previous mode afterwards. Parameter gradients are not
            accumulated.
        images: float ``(B, C, H, W)`` in [0, 1], on the model's device.
        labels: int64 ``(B,)``, the true classes.
        eps: perturbation size as a fraction of the [0, 1] range (``8 / 255`` for "eps 8").
        amp_dtype: run the forward pass under ``torch.autocast`` with this dtype (None: full precision).

    Returns:
        The adversarial images, float ``(B, C, H, W)`` in [0, 1], detached;
        ``|x_adv - x| <= eps`` everywhere. ``eps = 0`` returns a copy of ``images``.
    """
    images, labels = _check_batch(images, labels)
    _check_pixels(images)
    eps = _check_eps(eps)
    if eps == 0:
        return images.detach().clone()
    was_training = model.training
    model.eval()
    try:
        sign = _gradient_sign(model, images, labels.long(), amp_dtype)
    finally:
        model.train(was_training)
    return _perturb(images.detach(), sign, eps)


def _to_pixels(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] with lmix.data's exact operation; float -> float32 (checked)."""
    batch = batch.to(device)
    if batch.dtype == torch.uint8:
        return batch.to(torch.float32).mul_(1.0 / 255)
    x = batch.to(torch.float32)
    _check_pixels(x)
    return x


def fgsm_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps_list: Sequence[float],
    *,
    batch_size: int,
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    progress: bool = False,
) -> list[float]:
    """Accuracy (percent) on FGSM images for every eps in ``eps_list``.

    Args:
        model: takes pixel-space images in [0, 1] (e.g. :class:`Normalized`); moved to ``device``,
            run in eval mode and put back into its previous mode afterwards.
        images: uint8 ``(N, C, H, W)`` (0..255, converted as ``lmix.data`` does) or float in [0, 1];
            on any device, moved batch by batch.
        labels: int ``(N,)``.
        eps_list: perturbation sizes, fractions of the [0, 1] range, each in [0, 1].
        batch_size: images per forward-backward pass.
        device: where the model runs.
        amp_dtype: autocast dtype of the forward passes (None: full precision), as in training.
        memory_format: memory format of the images fed to the model (``torch.channels_last`` for
            a channels-last model).
        progress: show a tqdm bar.

    Returns:
        ``[100 * correct / N for each eps]``; the entry for eps = 0 is the clean accuracy.
    """
    images, labels = _check_batch(images, labels)
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise LmixTypeError(f"images must be uint8 or floating point in [0, 1], got {images.dtype}")
    eps_values = [_check_eps(e) for e in eps_list]
    if not eps_values:
        raise LmixValueError("eps_list must hold at least one eps")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise LmixValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    device = torch.device(device)
    n = int(images.shape[0])
    if n == 0:
        raise LmixValueError("no images to attack")
    model.to(device)
    need_grad = any(e > 0 for e in eps_values)
    correct = [0] * len(eps_values)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="img", desc="FGSM", dynamic_ncols=True, mininterval=1.0)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            x = _to_pixels(images[start : start + batch_size], device).contiguous(memory_format=memory_format)
            y = labels[start : start + batch_size].to(device, torch.long)
            sign = _gradient_sign(model, x, y, amp_dtype) if need_grad else None
            with torch.no_grad(), _autocast(device, amp_dtype):
                for i, eps in enumerate(eps_values):
                    x_adv = x if eps == 0 else _perturb(x, sign, eps)
                    logits = model(x_adv)
                    correct[i] += int((logits.argmax(dim=1) == y).sum().item())
            if bar is not None:
                bar.update(int(y.shape[0]))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    # The trainer's formula in float64, so eps = 0 reproduces its test accuracy to the last bit.
    return [100.0 * c / n for c in correct]


# ---------------------------------------------------------------------------------------------
# eps lists
# ---------------------------------------------------------------------------------------------
def parse_eps(text: str, *, units: str = "auto") -> tuple[list[float], list[float]]:
    """Parse a comma-separated eps list such as ``"0,1,2,4,8"`` or ``"0,0.01,0.03"``.

    Units rule:
        * ``units="255"``: values are in 1/255 of the pixel range (``8`` means ``8/255``).
        * ``units="float"``: values are fractions of the [0, 1] pixel range.
        * ``units="auto"`` (default): fractions if every value is < 1 and at least one is written
          with a decimal point or an exponent (``0,0.01,0.03``); otherwise 1/255 units
          (``0,1,2,4,8`` and also ``0,0.5,1,2``, since 1 and 2 are not < 1).

    Returns:
        ``(eps, eps_255)``: fractions of the [0, 1] range and the same values in 1/255 units.

    Raises:
        ValueError: empty list, unparsable or negative value, NaN/inf, eps above the pixel range,
            or an unknown ``units``.
    """
    if units not in ("auto", "255", "float"):
        raise LmixValueError(f"eps units must be auto, 255 or float, got {units!r}")
    if not isinstance(text, str):
        raise LmixTypeError(f"eps must be given as text such as '0,1,2,4,8', got {type(text).__name__}")
    tokens = [t.strip() for t in text.split(",")]
    if not text.strip() or any(t == "" for t in tokens):
        raise LmixValueError(f"eps list {text!r} must be comma-separated numbers such as 0,1,2,4,8 (no empty entries)")
    values = []
    for token in tokens:
        try:
            v = float(token)
        except ValueError:
            raise LmixValueError(f"eps value {token!r} in {text!r} is not a number; use e.g. 0,1,2,4,8") from None
        if not math.isfinite(v) or v < 0:
            raise LmixValueError(f"eps value {token!r} in {text!r} must be a finite number >= 0")
        values.append(v)
    if units == "auto":
        written_as_float = any(("." in t or "e" in t.lower()) for t in tokens)
        units = "float" if written_as_float and all(v < 1 for v in values) else "255"
    if units == "float":
        eps = values
        eps_255 = [round(v * 255, 10) for v in values]
    else:
        eps = [v / 255 for v in values]
        eps_255 = values
    too_big = [t for t, e in zip(tokens, eps) if e > 1]
    if too_big:
        unit_name = "1/255 units" if units == "255" else "fractions of the [0, 1] range"
        raise LmixValueError(
            f"eps value(s) {', '.join(too_big)} exceed the pixel range ({unit_name}: at most "
            f"{'255' if units == '255' else '1'})"
        )
    return eps, eps_255


# ---------------------------------------------------------------------------------------------
# run directories
# ---------------------------------------------------------------------------------------------
def _run_error(msg: str) -> Exception:
    from lmix.experiments.train import RunError

    return RunError(msg)


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    """The run dir as a Path; RunError (one line) if it is missing or holds no model checkpoint."""
    from lmix.experiments.train.trainer import CHECKPOINT

    path = Path(run_dir)
    if not path.exists():
        raise _run_error(f"run dir {str(path)!r} does not exist")
    if not path.is_dir():
        raise _run_error(f"run dir {str(path)!r} is not a directory")
    if not (path / CHECKPOINT).is_file():
        raise _run_error(
            f"{str(path)!r} is a run dir without a model (no {CHECKPOINT}); train it first: lmix train --out {path}"
        )
    return path


def load_run_model(
    run_dir: str | os.PathLike, *, info: Any, device: torch.device | str = "cpu"
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild a run's model from its checkpoint.

    Args:
        run_dir: a folder written by ``lmix train`` (holds ``checkpoint.pt``).
        info: the data set's ``DatasetInfo`` with ``num_classes`` known (e.g. ``load_tensors(...).info``).
        device: where the model is placed.

    Returns:
        ``(raw_model, config, checkpoint)``: the trained model in eval mode (expects normalised
        images), the run's ``TrainConfig`` and the checkpoint dict.
    """
    path = check_run_dir(run_dir)
    config, ckpt = _read_checkpoint(path)
    return _model_from(ckpt, config, info, path).to(device), config, ckpt


def _read_checkpoint(path: Path) -> tuple[Any, dict[str, Any]]:
    from lmix.experiments.train import config_from_sources, load_checkpoint
    from lmix.experiments.train.trainer import CHECKPOINT

    ckpt = load_checkpoint(path / CHECKPOINT)
    return config_from_sources(ckpt["config"]), ckpt


def _model_from(ckpt: dict[str, Any], config: Any, info: Any, path: Path) -> nn.Module:
    from lmix.experiments.train.trainer import CHECKPOINT, build_model

    model = build_model(config, info)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _run_error(
            f"the model in {str(path / CHECKPOINT)!r} does not fit {config.model!r} on {config.dataset!r}: {first}"
        ) from None
    return model.eval()


def _resolve_amp(amp: str, config: Any, device: torch.device) -> torch.dtype | None:
    """'run': the run's own setting as the trainer resolves it on ``device``; else none/bf16/fp16."""
    if amp == "run":
        amp = config.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    if amp not in _AMP:
        raise LmixValueError(f"amp must be run, none, bf16 or fp16, got {amp!r}")
    return _AMP[amp]


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
        eps: fractions of the [0, 1] range (see :func:`parse_eps`).
        eps_255: the same in 1/255 units (default: ``eps * 255``), recorded as given.
        batch_size: attack batch size (default: the run's batch size, the trainer's test batch).
        device: auto, cpu, cuda or cuda:N.
        amp: 'run' (the run's mixed precision as the trainer uses it on this device), none, bf16, fp16.
        data_root: where the data set lives (default: the run's ``data_root``).
        download: let torchvision download a missing data set.
        limit: attack only the first ``limit`` test images.
        progress: show a tqdm bar.

    Returns:
        The record that :func:`write_fgsm` saves: ``eps`` (fractions), ``eps_255``, ``acc``
        (percent, the units of ``final_acc``), ``recorded_acc`` (the checkpoint's last test
        accuracy), ``num_images``, ``limit``, ``epoch`` and the run's identity.
    """
    from lmix.data import load_tensors
    from lmix.experiments.train.distributed import DistEnv
    from lmix.experiments.train.trainer import resolve_device

    path = check_run_dir(run_dir)
    eps = [_check_eps(e) for e in eps]
    if not eps:
        raise LmixValueError("at least one eps is needed")
    eps_255 = [round(e * 255, 10) for e in eps] if eps_255 is None else [float(v) for v in eps_255]
    if len(eps_255) != len(eps):
        raise LmixValueError(f"eps_255 must have one value per eps ({len(eps)}), got {len(eps_255)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise LmixValueError(f"limit must be an integer >= 1, got {limit!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise LmixValueError(f"batch size must be an integer >= 1, got {batch_size!r}")

    config, ckpt = _read_checkpoint(path)
    dev = resolve_device(device, DistEnv())
    amp_dtype = _resolve_amp(amp, config, dev)
    root = data_root if data_root is not None else config.data_root
    data = load_tensors(config.dataset, root=root, train=False, download=download)
    model = _model_from(ckpt, config, data.info, path).to(dev)
    channels_last = config.channels_last if config.channels_last is not None else dev.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
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
    history = ckpt.get("history") or []
    return {
        "attack": "fgsm",
        "eps": eps,
        "eps_255": eps_255,
        "acc": acc,
        "accuracy_units": "percent",
        "recorded_acc": history[-1]["test_acc"] if history else None,
        "epoch": int(ckpt.get("epoch", 0)),
        "num_images": int(labels.shape[0]),
        "limit": limit,
        "dataset": config.dataset,
        "model": config.model,
        "method": config.method,
        "seed": config.seed,
        "device": str(dev),
        "amp": "none" if amp_dtype is None else str(amp_dtype).replace("torch.", ""),
    }


def read_fgsm(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``fgsm.json``, or None if it is missing or unreadable."""
    import json

    try:
        record = json.loads((Path(run_dir) / FGSM_JSON).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("eps"), list)
        or not isinstance(record.get("acc"), list)
    ):
        return None
    return record


def write_fgsm(run_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``run_dir/fgsm.json`` atomically; returns the path."""
    from lmix.experiments.io import atomic_write_json

    path = Path(run_dir) / FGSM_JSON
    atomic_write_json(path, record)
    return path


def plot_fgsm(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Draw accuracy against eps (in 1/255 units) for one or several runs; PNG written atomically.

    Args:
        curves: ``(label, eps_255, acc_percent)`` per run.
        path: the PNG to write.
        title: the figure's title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lmix.experiments.io import atomic_write

    if not curves:
        raise LmixValueError("no curves to plot")
    # Figure + Agg canvas directly: no pyplot, no global backend switch in a library.
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, eps_255, acc in curves:
        order = sorted(range(len(eps_255)), key=lambda i: eps_255[i])
        ax.plot([eps_255[i] for i in order], [acc[i] for i in order], marker="o", label=label)
    ax.set_xlabel("FGSM epsilon (x 1/255)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if len(curves) > 1:  # one curve: the title says what it is
        ax.legend()
    out = Path(path)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=120))
    return out
