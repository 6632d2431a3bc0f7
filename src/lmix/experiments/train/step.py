"""The training step (mix, forward, mixed loss) and one epoch of it, eager or compiled.

Nothing here reads a tensor back to the host: the epoch's loss and accuracy sums stay on the
device until the caller reads them once per epoch. A non-finite loss makes the loss sum
non-finite, so that single read also tells whether the epoch diverged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from lmix.errors import LmixValueError
from lmix.mixing import MixedBatch, Mixer, mixed_cross_entropy

__all__ = ["train_epoch", "eager_step", "CompiledStep", "Step"]

#: ``(images (B, C, H, W), labels (B,)) -> (logits (B, K), scalar loss, MixedBatch)``.
Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, MixedBatch]]


def eager_step(
    model: nn.Module,
    mixer: Mixer,
    *,
    autocast: Any,
    memory_format: torch.memory_format = torch.contiguous_format,
    label_smoothing: float = 0.0,
) -> Step:
    """The step as lmix has always run it: ``mixer(images, labels)``, the model under ``autocast``, the loss.

    Mixers that act inside the model (``uses_model``, PatchUp) run their own ``forward_loss``.
    """
    hidden_mixing = mixer.uses_model

    def step(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixedBatch]:
        if hidden_mixing:
            with autocast:
                return mixer.forward_loss(model, images, labels, label_smoothing=label_smoothing)
        batch = mixer(images, labels)
        x = batch.images.contiguous(memory_format=memory_format)
        with autocast:
            logits = model(x)
        return logits, mixed_cross_entropy(logits, batch, label_smoothing=label_smoothing), batch

    return step


class CompiledStep:
    """The whole step compiled with ``torch.compile``: ``mixer.apply`` + model + mixed loss.

    The randomness (``mixer.sample``) is drawn eagerly outside the compiled function, from the
    same generators the eager step uses, so checkpoints and resume work as in eager mode; the
    mixed images, the forward and the loss are one graph (the backward is compiled with it).
    Not for mixers that act inside the model (PatchUp): compile the model alone for those.

    Args:
        model: the (unwrapped) model.
        mixer: an input-space mixer (``uses_model`` False).
        amp_dtype: autocast dtype of the forward, or None for full precision.
        memory_format: memory format of the model's input.
        label_smoothing: of the mixed targets.
        mode: ``torch.compile`` mode (None: its default).
        backend: ``torch.compile`` backend; ``"eager"`` traces and guards without generating code
            (a quick check on a CPU, where inductor's code generation takes minutes).
    """

    def __init__(
        self,
        model: nn.Module,
        mixer: Mixer,
        *,
        amp_dtype: torch.dtype | None,
        memory_format: torch.memory_format = torch.contiguous_format,
        label_smoothing: float = 0.0,
        mode: str | None = None,
        backend: str = "inductor",
    ) -> None:
        if mixer.uses_model:
            raise LmixValueError(
                f"{type(mixer).__name__} mixes inside the model: compile the model, not the whole step"
            )
        self.mixer = mixer
        device_type = next(model.parameters()).device.type

        def mixed_forward(
            apply_mixer: Mixer, images: torch.Tensor, labels: torch.Tensor, params: Any
        ) -> tuple[torch.Tensor, torch.Tensor, MixedBatch]:
            batch = apply_mixer.apply(images, labels, params)
            x = batch.images.contiguous(memory_format=memory_format)
            ctx = (
                torch.autocast(device_type=device_type, dtype=amp_dtype)
                if amp_dtype is not None
                else contextlib.nullcontext()
            )
            with ctx:
                logits = model(x)
            return logits, mixed_cross_entropy(logits, batch, label_smoothing=label_smoothing), batch

        self._fn = torch.compile(mixed_forward, backend=backend, mode=None if mode == "default" else mode)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixedBatch]:
        # Drawn eagerly from the mixer's own generators, as a call draws them; a per-batch choice's
        # ``apply`` dispatches on the drawn component (a Python int), so each component gets its graph.
        params = self.mixer.draw(images)
        return self._fn(self.mixer, images, labels, params)


def train_epoch(
    model: nn.Module,
    loader: Any,
    step: Step,
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    scheduler: Any,
    on_batch: Callable[[int], None] | None = None,
    before_step: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over ``loader``: ``step`` (mix, forward, mixed loss), backward, optimiser step.

    Statistics stay on the device (no host sync per step).

    Args:
        model: the model ``step`` runs (put in training mode; the sums live on its device).
        loader: yields ``(images, labels)`` batches.
        step: the forward half of the step: :func:`eager_step` or a :class:`CompiledStep`.
        on_batch: called with the batch size after every step (a progress bar).
        before_step: called before every step; raise in it to abandon the epoch (signals).

    Returns:
        (float64 sum of per-sample losses, sum of lam-weighted correct predictions, samples seen)
        on this process; the loss sum is non-finite if any step's loss was.
    """
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct_sum = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    model.train()
    for images, labels in loader:
        if before_step is not None:
            before_step()
        logits, loss, batch = step(images, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        with torch.no_grad():
            n = labels.shape[0]
            pred = logits.argmax(dim=1)
            lam = batch.lam.to(torch.float64)
            correct_sum += (lam * (pred == batch.labels_a) + (1 - lam) * (pred == batch.labels_b)).sum()
            loss_sum += loss.detach().to(torch.float64) * n
            seen += n
        if on_batch is not None:
            on_batch(n)
    return loss_sum, correct_sum, seen
