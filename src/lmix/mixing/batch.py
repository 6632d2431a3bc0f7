"""The result of mixing a batch, its soft targets and the mixed loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lmix.mixing.validation import check_labels_in_range, check_probability

__all__ = ["MixedBatch", "mixed_cross_entropy"]


@dataclass
class MixedBatch:
    """A mixed batch.

    Attributes:
        images: (B, C, H, W) mixed images, same dtype and device as the input.
        labels_a: (B,) labels of the image each sample started from.
        labels_b: (B,) labels of its partner (equal to ``labels_a`` for an unmixed sample).
        lam: (B,) float32 exact share of ``labels_a`` in each image: the mask's area (not the
            sampled Beta value), the Mixup weight, or 1 for an unmixed sample.
        extras: the ``extras`` passed to the mixer ((B, ..., H, W) tensors such as segmentation
            maps), mixed with the same partners and masks, in the same order; () when none.
    """

    images: torch.Tensor
    labels_a: torch.Tensor
    labels_b: torch.Tensor
    lam: torch.Tensor
    extras: tuple[torch.Tensor, ...] = field(default=())

    def soft_targets(self, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
        """(B, num_classes) float32 targets ``lam * onehot(a) + (1 - lam) * onehot(b)``.

        With ``label_smoothing = s`` each one-hot becomes ``(1 - s) * onehot + s / num_classes``,
        matching ``torch.nn.functional.cross_entropy(label_smoothing=s)``.
        """
        check_probability(label_smoothing, name="label_smoothing")
        check_labels_in_range(self.labels_a, num_classes, name="labels_a")
        check_labels_in_range(self.labels_b, num_classes, name="labels_b")
        lam = self.lam.to(torch.float32)[:, None]
        onehot_a = F.one_hot(self.labels_a.long(), num_classes).to(torch.float32)
        onehot_b = F.one_hot(self.labels_b.long(), num_classes).to(torch.float32)
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
        )


def mixed_cross_entropy(logits: torch.Tensor, batch: MixedBatch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over the batch of ``lam * CE(logits, a) + (1 - lam) * CE(logits, b)``.

    Args:
        logits: (B, num_classes) raw scores.
        batch: the ``MixedBatch`` the logits were computed from.
        label_smoothing: in [0, 1], as in ``torch.nn.functional.cross_entropy``.

    Returns:
        A scalar float32 tensor (computed in float32 whatever the logits' dtype).
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must have shape (B, num_classes), got {shape}")
    if logits.shape[0] != batch.lam.shape[0]:
        raise ValueError(f"logits have {logits.shape[0]} rows but the batch has {batch.lam.shape[0]} samples")
    check_probability(label_smoothing, name="label_smoothing")
    num_classes = logits.shape[1]
    check_labels_in_range(batch.labels_a, num_classes, name="labels_a")
    check_labels_in_range(batch.labels_b, num_classes, name="labels_b")
    logits = logits.float()
    ce_a = F.cross_entropy(logits, batch.labels_a.long(), reduction="none", label_smoothing=label_smoothing)
    ce_b = F.cross_entropy(logits, batch.labels_b.long(), reduction="none", label_smoothing=label_smoothing)
    lam = batch.lam.to(device=logits.device, dtype=torch.float32)
    return (lam * ce_a + (1.0 - lam) * ce_b).mean()
