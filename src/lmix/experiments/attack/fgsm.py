"""The FGSM attack in pixel space (Goodfellow et al., 2015; the paper's Fig. 5).

The attack works on images in the [0, 1] pixel range; the data set's normalisation happens
inside the model (:class:`Normalized`), so ``eps`` is a fraction of that range (``8 / 255`` is
the usual "eps 8"). One FGSM step::

    x_adv = clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1)

with the model in eval mode. :func:`fgsm_accuracy` computes the input gradient once per batch
and reuses it for every eps (the gradient does not depend on eps), so a curve costs one
forward-backward plus one forward per eps.

eps = 0 gives exactly the clean accuracy the trainer records: the pixel path converts uint8
images with the same float32 operations as ``lmix.data`` (``u8 * (1/255)``, then
``(x - mean) / std``), so the model sees bit-identical inputs, and an eps of 0 leaves the
images untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmix._checks import is_finite_real, is_integer
from lmix.errors import LmixTypeError, LmixValueError

__all__ = ["Normalized", "fgsm", "fgsm_accuracy", "check_eps"]


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
def check_eps(eps: object) -> float:
    """``eps`` as a float; LmixValueError unless it is a number in [0, 1] (a fraction of the pixel range)."""
    if not is_finite_real(eps) or not 0 <= eps <= 1:
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
    eps = check_eps(eps)
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
    eps_values = [check_eps(e) for e in eps_list]
    if not eps_values:
        raise LmixValueError("eps_list must hold at least one eps")
    if not is_integer(batch_size) or batch_size < 1:
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
