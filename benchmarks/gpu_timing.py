"""What ``benchmarks/bench_gpu.py`` times and how: models, batches, training steps, timed windows."""

from __future__ import annotations

import contextlib
import gc
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import lmix

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``fn`` takes on ``device``: CUDA events around it on a GPU, a host clock on the CPU."""
    if device.type == "cuda":
        sync(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def make_model(name: str, device: torch.device, **kwargs: Any) -> torch.nn.Module:
    """Model ``name`` for 10 classes of 3-channel images, seeded, channels_last on ``device``."""
    torch.manual_seed(0)
    model = lmix.create_model(name, num_classes=10, in_channels=3, **kwargs)
    return model.to(device).to(memory_format=torch.channels_last)


def make_optimizer(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, **fused)


def autocast_for(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def random_batches(n: int, batch: int, device: torch.device, *, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` batches of normalised (B, 3, 32, 32) channels_last images from random uint8 (never zeros)."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    out = []
    for _ in range(n):
        u8 = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=g)
        x = ((u8.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), generator=g)
        out.append((x.to(device), y.to(device)))
    return out


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_step(model, mixer, opt, x, y, *, autocast) -> None:
    """The whole training step of the trainer: mix (or the mixer's own forward pass), loss, backward, SGD."""
    if mixer.uses_model:
        with autocast:
            _, loss, _ = mixer.forward_loss(model, x, y)
    else:
        batch = mixer(x, y)
        with autocast:
            logits = model(batch.images.contiguous(memory_format=torch.channels_last))
        loss = lmix.mixed_cross_entropy(logits, batch)
    optimizer_step(opt, loss)


def model_step(model, opt, x, y, *, autocast) -> None:
    """The model alone: forward, cross-entropy, backward, SGD on the same (unmixed) batch."""
    with autocast:
        logits = model(x)
    optimizer_step(opt, F.cross_entropy(logits.float(), y))


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def window_steps(
    step: Callable[[int], Any], device: torch.device, *, warmup: int, window_s: float, max_steps: int
) -> tuple[int, float]:
    """Warm up ``step``; return (steps per timed window of about ``window_s``, the warm-up's seconds per step)."""
    step(0)  # first call: cuDNN autotuning, compilation, allocator growth
    sync(device)
    t0 = time.perf_counter()
    for i in range(1, warmup + 1):
        step(i)
    sync(device)
    per_step = (time.perf_counter() - t0) / warmup
    steps = max(1, min(max_steps, math.ceil(window_s / max(per_step, 1e-6))))
    return steps, per_step


def time_interleaved(steps_by_name: dict[str, Callable[[int], Any]], *, steps: int, windows: int, device) -> dict:
    """Median seconds per step of each step function, from ``windows`` timed windows of ``steps`` steps.

    The functions take turns window by window (order reversed every other window) so that a drift
    of the machine hits all of them alike.
    """
    seconds: dict[str, list[float]] = {k: [] for k in steps_by_name}
    names = list(steps_by_name)
    counter = [0]

    def run(fn: Callable[[int], Any]) -> None:
        for _ in range(steps):
            fn(counter[0])
            counter[0] += 1

    for w in range(windows):
        for name in names if w % 2 == 0 else names[::-1]:
            seconds[name].append(timed(lambda fn=steps_by_name[name]: run(fn), device) / steps)
    return seconds


def result_row(
    batch: int, method: str, mode: str, whole: list[float], alone: list[float] | None, steps: int, ref: str | None
) -> dict:
    """One result; ``alone`` None when the model alone could not be measured beside it (no overhead then)."""
    w = statistics.median(whole)
    m = statistics.median(alone) if alone else None
    return {
        "batch": batch,
        "method": method,
        "mode": mode,
        "img_s": batch / w,
        "model_alone_img_s": batch / m if m else None,
        "overhead_pct": 100.0 * (w / m - 1.0) if m else None,
        "reference": ref,
        "steps_per_window": steps,
        "step_s_windows": whole,
        "model_alone_step_s_windows": alone,
    }
