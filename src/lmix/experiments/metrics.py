"""Metrics: accuracy and loss over a whole loader, summed across DDP processes."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    *,
    env: Any = None,
    autocast: Any = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, float, int]:
    """Mean cross-entropy, accuracy in percent and sample count over every batch of ``loader``.

    ``loader`` yields (images (B, C, H, W), labels (B,)) on the model's device. With DDP each
    process sees its own shard; the sums are reduced so every process gets the global figures.
    The model is put in eval mode and restored to its previous mode afterwards.
    """
    from lmix.experiments.train.distributed import DistEnv, all_reduce_sum

    env = env or DistEnv()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    ctx = autocast if autocast is not None else contextlib.nullcontext()
    for images, labels in loader:
        with ctx:
            logits = model(images.contiguous(memory_format=memory_format))
        totals[0] += F.cross_entropy(logits.float(), labels, reduction="sum").to(torch.float64)
        totals[1] += (logits.argmax(dim=1) == labels).sum()
        totals[2] += labels.shape[0]
    model.train(was_training)
    all_reduce_sum(totals, env)
    n = int(totals[2].item())
    if n == 0:
        return float("nan"), float("nan"), 0
    return (totals[0] / n).item(), (100.0 * totals[1] / n).item(), n
