"""The parameters of a mix (``MixParams``), the result of mixing a batch (``MixedBatch``), its soft
targets and the mixed loss."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from lmix._checks import check_probability
from lmix.errors import LmixValueError
from lmix.mixing.validation import check_labels_in_range, check_num_classes

__all__ = ["MixParams", "MixedBatch", "mixed_cross_entropy"]


def _check_labels(labels: torch.Tensor, num_classes: int, *, name: str) -> None:
    """Class indices in [0, num_classes), checked without a host-device synchronisation.

    CPU tensors in eager mode get the precise ``ValueError`` (reading them costs no sync).
    Elsewhere (CUDA, or inside ``torch.compile``) the check is ``torch._assert_async``: it
    never stalls the step, and an out-of-range label fails the device (a CUDA error at a later
    kernel launch) instead of training on garbage, as ``F.cross_entropy`` itself would.
    """
    if labels.device.type == "cpu" and not torch.compiler.is_compiling():
        check_labels_in_range(labels, num_classes, name=name)
        return
    num_classes = check_num_classes(num_classes)
    in_range = ((labels >= 0) & (labels < num_classes)).all()
    torch._assert_async(in_range, f"{name} must lie in [0, {num_classes - 1}] for num_classes={num_classes}")


@dataclass
class MixParams:
    """What a mixer drew for one batch; ``mixer(images, labels, params=p)`` replays it exactly.

    Attributes:
        perm: (B,) int64 partner index of every sample.
        lam: (B,) float32 weight of the sample's own label: the exact share of its own image
            (the mask's mean, soft masks included), or 1 where the labels are not mixed
            (Cutout, LMix/FMix with ``reformulate=True``).
        mask: (B, 1, *spatial) or (1, 1, *spatial): bool, True where the sample's own pixel is
            kept; float32 weights in [0, 1] of the sample's own pixel for soft masks
            (``max_soft > 0``); for ``erase``: float, 1 where kept, 0 where zeroed. ``None`` for a
            pixel-wise convex combination (Mixup) with weights ``lam``.
        erase: if True the partner is an all-zero image and labels are not mixed (Cutout).
    """

    perm: torch.Tensor
    lam: torch.Tensor
    mask: torch.Tensor | None = None
    erase: bool = False

    def to(self, device: torch.device | str) -> MixParams:
        """A copy with every tensor (nested parameters included) on ``device``."""
        return replace(self, **{f.name: _to(getattr(self, f.name), device) for f in fields(self)})


def _to(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, (torch.Tensor, MixParams)):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value


@dataclass
class MixedBatch:
    """A mixed batch.

    Attributes:
        images: (B, C, *spatial) mixed images, same shape, dtype and device as the input.
        labels_a: (B,) labels of the image each sample started from.
        labels_b: (B,) labels of its partner (equal to ``labels_a`` for an unmixed sample).
        lam: (B,) float32 exact share of ``labels_a`` in each image's target: the mask's area
            (not the sampled Beta value; the exact mean of a soft mask), the Mixup weight, or 1
            for an unmixed sample and for LMix/FMix with ``reformulate=True`` (the target is the
            sample's own label).
        extras: the ``extras`` passed to the mixer ((B, ..., *spatial) tensors such as segmentation
            maps), mixed with the same partners and masks, in the same order; () when none.
        params: the parameters the mixer drew (``MixParams``, or ``ChoiceParams`` for a choice);
            ``mixer(other_images, other_labels, params=batch.params)`` replays the same mix, and
            ``params.perm`` is every sample's partner index. None for hidden-layer mixing.
    """

    images: torch.Tensor
    labels_a: torch.Tensor
    labels_b: torch.Tensor
    lam: torch.Tensor
    extras: tuple[torch.Tensor, ...] = field(default=())
    params: MixParams | None = None

    def soft_targets(self, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
        """(B, num_classes) float32 targets ``lam * onehot(a) + (1 - lam) * onehot(b)``.

        With ``label_smoothing = s`` each one-hot becomes ``(1 - s) * onehot + s / num_classes``,
        matching ``torch.nn.functional.cross_entropy(label_smoothing=s)``. Labels are checked
        without a host-device synchronisation (see ``mixed_cross_entropy``).
        """
        check_probability(label_smoothing, name="label_smoothing")
        _check_labels(self.labels_a, num_classes, name="labels_a")
        _check_labels(self.labels_b, num_classes, name="labels_b")
        lam = self.lam.to(torch.float32)[:, None]
        # A comparison, not F.one_hot: one_hot reads the labels' range back on some devices.
        classes = torch.arange(num_classes, device=self.labels_a.device)
        onehot_a = (self.labels_a.long()[:, None] == classes).to(torch.float32)
        onehot_b = (self.labels_b.long()[:, None] == classes).to(torch.float32)
        targets = lam * onehot_a + (1.0 - lam) * onehot_b
        if label_smoothing:
            targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
        return targets

    def to(self, device: torch.device | str) -> MixedBatch:
        return MixedBatch(
            self.images.to(device),
            self.labels_a.to(device),
            self.labels_b.to(device),
            self.lam.to(device),
            tuple(t.to(device) for t in self.extras),
            None if self.params is None else self.params.to(device),
        )


def mixed_cross_entropy(logits: torch.Tensor, batch: MixedBatch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over the batch of ``lam * CE(logits, a) + (1 - lam) * CE(logits, b)``.

    Args:
        logits: (B, num_classes) raw scores.
        batch: the ``MixedBatch`` the logits were computed from.
        label_smoothing: in [0, 1], as in ``torch.nn.functional.cross_entropy``.

    Returns:
        A scalar float32 tensor (computed in float32 whatever the logits' dtype).

    Raises:
        ValueError: bad shapes or ``label_smoothing``; labels outside [0, num_classes) for CPU
            tensors. On other devices (and under ``torch.compile``) the label range is checked
            by ``torch._assert_async``, so that the step never waits for the device.
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise LmixValueError(f"logits must have shape (B, num_classes), got {shape}")
    if logits.shape[0] != batch.lam.shape[0]:
        raise LmixValueError(f"logits have {logits.shape[0]} rows but the batch has {batch.lam.shape[0]} samples")
    check_probability(label_smoothing, name="label_smoothing")
    num_classes = logits.shape[1]
    _check_labels(batch.labels_a, num_classes, name="labels_a")
    _check_labels(batch.labels_b, num_classes, name="labels_b")
    logits = logits.float()
    ce_a = F.cross_entropy(logits, batch.labels_a.long(), reduction="none", label_smoothing=label_smoothing)
    ce_b = F.cross_entropy(logits, batch.labels_b.long(), reduction="none", label_smoothing=label_smoothing)
    lam = batch.lam.to(device=logits.device, dtype=torch.float32)
    return (lam * ce_a + (1.0 - lam) * ce_b).mean()
