"""One call, the whole GPU check of lmix (issue 8 section 4): speed, sync-freedom and a reduced Table 4.

In priority order, each section skipped when the deadline is too near for its estimated cost,
``OUT/bench_gpu.json`` rewritten (atomically) after every section and every sub-result, a failing
section recorded with its error while the script goes on, and a short table printed last:

1. ``environment``: python, torch, torchvision, CUDA, cuDNN, lmix, git commit (and a digest of the
   source that ran), the device, a measured bf16 matmul TFLOP/s and device copy GB/s (CUDA
   events, warm-up, median).
2. ``sync_check``: ``torch.cuda.set_sync_debug_mode("error")`` over a few training steps of every
   method (mixer + forward + ``lmix.mixed_cross_entropy`` or the mixer's ``forward_loss`` +
   backward + fused SGD step), and over ``train_epoch`` on a ``DeviceLoader`` (the trainer's
   loop); pass/fail per method with the error and the lmix line that synced. On CPU the steps
   run without the check (sync debug mode is CUDA-only) and the JSON says so.
3. ``throughput``: PreAct-ResNet-18 on 32x32x3 random (never zero) uint8-derived batches, the whole
   training step (mix + forward + loss + backward + fused SGD, bf16 autocast, channels_last)
   against the model alone (same data, same batch, no mixing) in interleaved timed windows,
   every method at batch 512 and 128, eager; then ``torch.compile`` with the randomness drawn
   eagerly (``params = mixer.sample(...)``; ``mixer.apply`` + model + loss compiled, through the
   trainer's ``CompiledStep`` where it exists): the model alone and ``lmix`` at both batch sizes,
   then ``none``, each compile only if it leaves time for Table 4. img/s and the mixing overhead
   in percent; compile times and graph breaks in the JSON.
4. ``table4``: PreAct-ResNet-18 on the full Fashion-MNIST with the packaged paper config
   (``configs/paper/table4_fashion_mnist_preact_resnet18.yaml``), methods none, mixup, cutmix,
   fmix, lmix, seeds 0 and 1, in parallel worker processes on the one GPU, as many epochs as fit
   in the time left (measured by a probe: one worker alone, then all at once), milestones scaled
   from the paper's; final and best accuracy per run beside the paper's Table 4.

The targets (issue 8, H200): whole compiled step >= 60,000 img/s at batch 512 and >= 30,000 at
batch 128, and per-sample LMix within 3% of the model alone.

How to run it on the lent GPU (the machine gets the working tree only, at most 64 MiB; ``../shared``
does not travel, so the four Fashion-MNIST files (52 MiB) go into the git-ignored ``gpu-data/``):

1. Here, once, in the repository root::

       mkdir -p gpu-data/fashion-mnist/FashionMNIST/raw
       cp ../shared/data/fashion-mnist/FashionMNIST/raw/* gpu-data/fashion-mnist/FashionMNIST/raw/
       # gives gpu-data/fashion-mnist/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte

2. The device tool's ``run`` (one call, about 6 minutes plus the machine's start)::

       command (one line): set -o pipefail; export PYTHONUNBUFFERED=1 PYTHONPATH=src LMIX_GIT_COMMIT=<git rev-parse HEAD here>; python3 benchmarks/bench_gpu.py --out $OUT --data-root gpu-data 2>&1 | tee $OUT/bench_gpu.log
       carry: ["gpu-data"]
       timeout_s: 420

   then ``give_back`` unless rerunning at once.

   (``PYTHONPATH=src``: the machine's python3 has torch, torchvision, numpy, pyyaml, tqdm, scipy,
   scikit-learn, matplotlib and pillow but not lmix; nothing is installed.)

3. Reading the output: the table printed last gives each section's status and time, the sync
   check per method, img/s per (batch, method, eager/compiled) with the overhead against the
   model alone, the Table 4 runs beside the paper, and PASS/FAIL/SKIP per target. Everything,
   with the raw timing windows, compile times, the probe's rates and tracebacks, is in
   ``$OUT/bench_gpu.json`` (fetched back under the tool's ``files_at``). A rerun with a known
   good epoch count: ``--table4-epochs N``; with another parallelism: ``--jobs N``.

``--smoke`` runs every section's code on the CPU with tiny sizes (a tiny model, batch 8, one or two
steps, the eager compile backend, a tiny fake Fashion-MNIST written in the real raw format) in
well under two minutes; CI runs it (tests/benchmarks/test_bench_gpu.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import math
import os
import platform
import queue
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
try:
    import lmix
except ImportError:  # run from a bare checkout (the GPU machine): use the source tree
    sys.path.insert(0, str(REPO / "src"))
    import lmix

import torch  # noqa: E402 - after the source-tree fallback above
import torch.nn.functional as F  # noqa: E402

from lmix.experiments.io import atomic_write_json  # noqa: E402

SECTIONS = ("environment", "sync_check", "throughput", "table4")
SYNC_METHODS = ("none", "mixup", "cutmix", "fmix", "lmix", "lmix+mixup", "cutout", "patchup")
SPEED_METHODS = ("none", "mixup", "cutmix", "fmix", "lmix", "lmix+mixup")
TABLE4_METHODS = ("none", "mixup", "cutmix", "fmix", "lmix")
TABLE4_CONFIG = "paper/table4_fashion_mnist_preact_resnet18.yaml"
TARGETS = {"batch512_img_s": 60_000.0, "batch128_img_s": 30_000.0, "lmix_overhead_pct": 3.0}
PROTOCOL = "@@bench_gpu@@ "  # prefix of the worker's answers on its stdout
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class DeadlineReached(BaseException):
    """Raised in the main thread when ``--deadline-s`` has passed.

    A BaseException, so that the ``except Exception`` that records one method's failure and goes on
    (and any in the libraries) lets it through to the section, which stops there.
    """


class Budget:
    """Wall-clock budget of the whole call; ``fits`` keeps ``reserve_s`` for the final writes."""

    def __init__(self, deadline_s: float, reserve_s: float) -> None:
        self.t0 = time.monotonic()
        self.deadline_s = deadline_s
        self.reserve_s = reserve_s

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float:
        return self.deadline_s - self.elapsed()

    def fits(self, estimate_s: float) -> bool:
        return self.remaining() - self.reserve_s >= estimate_s


def _raise_deadline(signum: int, frame: Any) -> None:
    raise DeadlineReached("the --deadline-s budget ran out")


# -- settings per run kind -------------------------------------------------------------------------


def settings(smoke: bool, device: torch.device) -> dict[str, Any]:
    """Sizes and cost estimates (seconds) of the real GPU run or of the CPU smoke run."""
    if smoke:
        return {
            "model": "preact_resnet_tiny",
            "model_kwargs": {"width": 4},
            "matmul_n": 256,
            "copy_mib": 4,
            "sync_batch": 8,
            "sync_steps": 1,
            "speed_batches": (8,),
            "windows": 1,
            "window_s": 0.0,
            "max_window_steps": 1,
            "warmup": 1,
            "compile_backend": "eager",  # dynamo's tracing and guards without inductor's code generation
            "compiled": ("alone", "lmix"),
            "estimate": {"environment": 2, "sync_check": 10, "eager_config": 1, "compile": 10, "table4_min": 10},
            "table4_keep_s": 10,
            "table4_seeds": (0,),
            "table4_batch": 16,
            "table4_jobs": 2,
            "probe_steps": 2,
            "max_epochs": 2,
            "run_overhead_s": 3.0,
        }
    return {
        "model": "preact_resnet18",
        "model_kwargs": {},
        "matmul_n": 8192,
        "copy_mib": 1024,
        "sync_batch": 64,
        "sync_steps": 3,
        "speed_batches": (512, 128),
        "windows": 5,
        "window_s": 0.15,
        "max_window_steps": 60,
        "warmup": 8,
        "compile_backend": "inductor",
        "compiled": ("alone", "lmix", "none"),
        "estimate": {"environment": 20, "sync_check": 30, "eager_config": 3, "compile": 50, "table4_min": 60},
        "table4_keep_s": 120,  # what the compiles leave for Table 4 (worker start, probe, some epochs)
        "table4_seeds": (0, 1),
        "table4_batch": None,  # the paper config's (128)
        "table4_jobs": 10,
        "probe_steps": 100,
        "max_epochs": 200,
        "run_overhead_s": 5.0,
    }


# -- small helpers ---------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``fn`` takes on ``device``: CUDA events around it on a GPU, a host clock on the CPU."""
    if device.type == "cuda":
        _sync(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _short_error(err: BaseException) -> dict[str, Any]:
    """The error, and the innermost lmix or benchmark line it went through (where it synced)."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "lmix" in f.filename or "bench_gpu" in f.filename]
    where = f"{ours[-1].filename.split('src/')[-1]}:{ours[-1].lineno} ({ours[-1].name})" if ours else None
    return {"error": f"{type(err).__name__}: {str(err).strip()[:600]}", "where": where}


def source_digest() -> str:
    """sha256 (16 hex) of the lmix sources and this script: identifies the code that ran without git."""
    h = hashlib.sha256()
    files = sorted((REPO / "src" / "lmix").rglob("*.py")) + [Path(__file__).resolve()]
    for path in files:
        if path.is_file():
            h.update(str(path.relative_to(REPO)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def git_commit() -> str | None:
    commit = os.environ.get("LMIX_GIT_COMMIT")
    if commit:
        return commit
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def make_model(cfg: dict[str, Any], device: torch.device, *, in_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = lmix.create_model(cfg["model"], num_classes=10, in_channels=in_channels, **cfg["model_kwargs"])
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


def train_step(model, mixer, opt, x, y, *, autocast) -> torch.Tensor:
    """The whole training step of the trainer: mix (or the mixer's own forward pass), loss, backward, SGD."""
    if mixer.uses_model:
        with autocast:
            _, loss, _ = mixer.forward_loss(model, x, y)
    else:
        batch = mixer(x, y)
        with autocast:
            logits = model(batch.images.contiguous(memory_format=torch.channels_last))
        loss = lmix.mixed_cross_entropy(logits, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def model_step(model, opt, x, y, *, autocast) -> torch.Tensor:
    """The model alone: forward, cross-entropy, backward, SGD on the same (unmixed) batch."""
    with autocast:
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


# -- section 1: environment --------------------------------------------------------------------------


def section_environment(sec: dict, ctx: dict) -> None:
    device, cfg = ctx["device"], ctx["cfg"]
    import torchvision

    sec["versions"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "lmix": lmix.__version__,
        "git_commit": git_commit(),
        "source_sha256_16": source_digest(),
    }
    sec["host"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    sec["settings"] = {
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        sec["device"] = {
            "name": p.name,
            "capability": f"{p.major}.{p.minor}",
            "multiprocessors": p.multi_processor_count,
            "memory_gib": round(p.total_memory / 2**30, 1),
        }
    else:
        sec["device"] = {"name": f"cpu ({platform.processor() or platform.machine()})"}

    n = cfg["matmul_n"]
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b, out=c)
    times = [timed(lambda: torch.mm(a, b, out=c), device) for _ in range(10)]
    sec["matmul_bf16"] = {
        "n": n,
        "median_s": statistics.median(times),
        "tflop_s": 2 * n**3 / statistics.median(times) / 1e12,
    }

    numel = cfg["copy_mib"] * 2**20 // 4
    src = torch.rand(numel, device=device, generator=g)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = [timed(lambda: dst.copy_(src), device) for _ in range(10)]
    moved = 2 * src.numel() * src.element_size()  # bytes read + bytes written
    sec["copy"] = {
        "mib": cfg["copy_mib"],
        "median_s": statistics.median(times),
        "gb_s": moved / statistics.median(times) / 1e9,
    }


# -- section 2: sync check ---------------------------------------------------------------------------


def sync_methods() -> list[str]:
    names = list(SYNC_METHODS)
    if "manifold_mixup" in lmix.list_mixers():
        names.append("manifold_mixup")
    return names


@contextlib.contextmanager
def sync_debug(device: torch.device):
    """Sync debug mode 'error' on a GPU (every host-device sync raises); nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def section_sync_check(sec: dict, ctx: dict) -> None:
    device, cfg, write = ctx["device"], ctx["cfg"], ctx["write"]
    checked = device.type == "cuda"
    sec["checked"] = checked
    if not checked:
        sec["note"] = "sync debug mode is CUDA-only: on the CPU the steps ran without the check"
    sec["steps"] = cfg["sync_steps"]
    sec["batch"] = cfg["sync_batch"]
    sec["methods"] = {}
    autocast = autocast_for(device)
    data = random_batches(cfg["sync_steps"] + 1, cfg["sync_batch"], device, seed=1)
    model = make_model(cfg, device)
    for name in sync_methods():
        entry: dict[str, Any] = {}
        try:
            mixer = lmix.create_mixer(name, seed=0)
            opt = make_optimizer(model, device)
            # One step outside the check: first-use set-up (generators, cuDNN plans) may sync once.
            train_step(model, mixer, opt, *data[0], autocast=autocast)
            _sync(device)
            with sync_debug(device):
                for x, y in data[1:]:
                    train_step(model, mixer, opt, x, y, autocast=autocast)
            _sync(device)
            entry["status"] = "pass" if checked else "ran"
        except Exception as err:  # noqa: BLE001 - a method's failure is a result, not the section's
            entry.update(status="fail", **_short_error(err))
        sec["methods"][name] = entry
        write()
    sec["methods"].update(_sync_check_trainer(ctx, model, autocast))
    fails = [k for k, v in sec["methods"].items() if v["status"] == "fail"]
    sec["summary"] = f"{len(sec['methods']) - len(fails)}/{len(sec['methods'])} {'sync-free' if checked else 'ran'}" + (
        f"; failed: {', '.join(fails)}" if fails else ""
    )


class _Started:
    """A loader whose epoch was started (its first batch drawn) outside the sync check.

    The per-epoch set-up (the epoch's order and augmentation parameters, copied to the device once)
    may sync; what the check is about is the per-step path, which every batch after it takes.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.batches = iter(loader)
        self.first = next(self.batches)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        yield self.first
        yield from self.batches


def _sync_check_trainer(ctx: dict, model: torch.nn.Module, autocast: Any) -> dict[str, dict[str, Any]]:
    """The trainer's loop (``train_epoch`` over a ``DeviceLoader``) and the loader's epoch set-up, checked."""
    device, cfg = ctx["device"], ctx["cfg"]
    ok = "pass" if device.type == "cuda" else "ran"
    out: dict[str, dict[str, Any]] = {}
    step_key = "trainer.train_epoch (lmix, DeviceLoader): per step"
    setup_key = "DeviceLoader epoch set-up (once per epoch, a sync allowed)"
    loader = None
    try:
        from lmix.data import DeviceLoader, dataset_info

        try:
            from lmix.experiments.train.step import train_epoch
        except ImportError:
            from lmix.experiments.train.trainer import train_epoch

        g = torch.Generator().manual_seed(2)
        n = cfg["sync_batch"] * cfg["sync_steps"]
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n,), generator=g)
        info = dataset_info("cifar10")
        loader = DeviceLoader(
            images, labels, info=info, batch_size=cfg["sync_batch"], train=True, device=device, seed=0
        )
        mixer = lmix.create_mixer("lmix", seed=0)
        opt = make_optimizer(model, device)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        kwargs = dict(
            optimizer=opt, scaler=scaler, scheduler=sched, autocast=autocast, memory_format=torch.channels_last
        )
        loader.set_epoch(0)
        train_epoch(model, loader, mixer, **kwargs)  # warm-up epoch outside the check
        _sync(device)
        loader.set_epoch(1)
        started = _Started(loader)
        with sync_debug(device):
            train_epoch(model, started, mixer, **kwargs)
        _sync(device)
        out[step_key] = {"status": ok, "steps": cfg["sync_steps"]}
    except Exception as err:  # noqa: BLE001
        out[step_key] = {"status": "fail", **_short_error(err)}
    if loader is None:
        return out
    try:
        loader.set_epoch(2)
        with sync_debug(device):
            next(iter(loader))
        _sync(device)
        out[setup_key] = {"status": ok}
    except Exception as err:  # noqa: BLE001
        out[setup_key] = {"status": "fail", **_short_error(err)}
    return out


# -- section 3: throughput ---------------------------------------------------------------------------


def _window_steps(step: Callable[[int], Any], cfg: dict, device: torch.device) -> tuple[int, float]:
    """Warm up ``step``; return (steps per timed window, the warm-up's seconds per step)."""
    step(0)  # first call: cuDNN autotuning, compilation, allocator growth
    _sync(device)
    t0 = time.perf_counter()
    for i in range(1, cfg["warmup"] + 1):
        step(i)
    _sync(device)
    per_step = (time.perf_counter() - t0) / cfg["warmup"]
    steps = max(1, min(cfg["max_window_steps"], math.ceil(cfg["window_s"] / max(per_step, 1e-6))))
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


def _row(
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


def section_throughput(sec: dict, ctx: dict) -> None:
    device, cfg, budget, write = ctx["device"], ctx["cfg"], ctx["budget"], ctx["write"]
    autocast = autocast_for(device)
    sec.update(model=cfg["model"], input="3x32x32 random uint8 -> normalised float32, channels_last")
    sec["amp"] = "bf16" if device.type == "cuda" else "none"
    sec["optimizer"] = "SGD fused" if device.type == "cuda" else "SGD"
    sec["results"], sec["skipped"], sec["errors"] = [], [], []
    est = cfg["estimate"]

    # Eager: every method at every batch size, each against the model alone.
    for batch in cfg["speed_batches"]:
        data = random_batches(4, batch, device, seed=batch)
        model = make_model(cfg, device)
        opt = make_optimizer(model, device)

        def alone(i: int, data=data, model=model, opt=opt) -> None:
            model_step(model, opt, *data[i % len(data)], autocast=autocast)

        steps, per_step = _window_steps(alone, cfg, device)
        for method in SPEED_METHODS:
            cost = 2 * (cfg["warmup"] + steps * cfg["windows"]) * per_step * 1.5 + est["eager_config"]
            if not budget.fits(cost):
                sec["skipped"].append({"batch": batch, "method": method, "mode": "eager", "reason": "deadline"})
                continue
            try:
                mixer = lmix.create_mixer(method, seed=0)

                def whole(i: int, mixer=mixer, data=data, model=model, opt=opt) -> None:
                    train_step(model, mixer, opt, *data[i % len(data)], autocast=autocast)

                _window_steps(whole, cfg, device)
                secs = time_interleaved(
                    {"whole": whole, "alone": alone}, steps=steps, windows=cfg["windows"], device=device
                )
                sec["results"].append(
                    _row(batch, method, "eager", secs["whole"], secs["alone"], steps, "eager model alone")
                )
            except Exception as err:  # noqa: BLE001
                sec["errors"].append({"batch": batch, "method": method, "mode": "eager", **_short_error(err)})
            write()
        del model, opt, data
        _free(device)

    # Every compiled variant keeps its own static-shape graphs: no recompilation turns the batch
    # dimension dynamic, and no cache limit falls back to eager.
    import torch._dynamo as dynamo

    for knob, value in (("cache_size_limit", 64), ("recompile_limit", 64), ("automatic_dynamic_shapes", False)):
        if hasattr(dynamo.config, knob):
            setattr(dynamo.config, knob, value)

    # Compiled, with the randomness drawn eagerly outside the graph. First the model alone and lmix
    # at every batch size (the targets), then none: each compile starts only if it leaves
    # ``keep_s`` for the sections after this one.
    compile_s = float(est["compile"])
    sec["compile"] = {
        "backend": cfg["compile_backend"],
        "mode": ctx["compile_mode"],
        "seconds": {},
        "implementation": {},
        "graph_breaks": {},
    }
    state: dict[int, dict[str, Any]] = {}

    def compile_and_warm(batch: int, name: str, keep_s: float) -> None:
        nonlocal compile_s
        st = state[batch]
        if not budget.fits(compile_s * 1.3 + 5 + keep_s):
            sec["skipped"].append({"batch": batch, "method": name, "mode": "compiled", "reason": "deadline"})
            return
        try:
            before = _graph_breaks()
            step, impl = compiled_step(name, st["model"], st["opt"], st["data"], batch, ctx, autocast)
            t0 = time.perf_counter()
            steps, _ = _window_steps(step, cfg, device)
            key = f"{name}@{batch}"
            sec["compile"]["seconds"][key] = time.perf_counter() - t0
            sec["compile"]["implementation"][key] = impl
            after = _graph_breaks()
            sec["compile"]["graph_breaks"][key] = {
                k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)
            }
            compile_s = max(sec["compile"]["seconds"].values())  # measured replaces the prior guess
            st.setdefault("window", steps)
            st["steps"][name] = step
        except Exception as err:  # noqa: BLE001
            sec["errors"].append({"batch": batch, "method": name, "mode": "compiled", **_short_error(err)})
        write()

    def time_against_alone(batch: int, names: list[str]) -> None:
        st = state[batch]
        names = [n for n in names if n in st["steps"]]
        has_alone = "alone" in st["steps"]
        if not names and not (has_alone and "(model alone)" not in st):
            return
        steps_by_name = {n: st["steps"][n] for n in (["alone"] if has_alone else []) + names}
        secs = time_interleaved(steps_by_name, steps=st["window"], windows=cfg["windows"], device=device)
        alone = secs.get("alone")
        for name in names:
            ref = "compiled model alone" if has_alone else None
            sec["results"].append(_row(batch, name, "compiled", secs[name], alone, st["window"], ref))
        if has_alone and "(model alone)" not in st:
            st["(model alone)"] = True
            sec["results"].append(
                _row(batch, "(model alone)", "compiled", secs["alone"], secs["alone"], st["window"], "itself")
            )
        write()

    first = [n for n in cfg["compiled"] if n in ("alone", "lmix")]
    later = [n for n in cfg["compiled"] if n not in first]
    for k, batch in enumerate(cfg["speed_batches"]):
        model = make_model(cfg, device)
        state[batch] = {"data": random_batches(4, batch, device, seed=batch), "model": model, "steps": {}}
        state[batch]["opt"] = make_optimizer(model, device)
        # At the later batch sizes lmix first: its rate is a target even if the time runs out
        # before its reference (then it is timed alone, with no overhead figure).
        for name in first if k == 0 else first[::-1]:
            compile_and_warm(batch, name, ctx["keep_s"])
        time_against_alone(batch, [n for n in first if n != "alone"])
    for batch in cfg["speed_batches"]:
        for name in later:
            compile_and_warm(batch, name, ctx["keep_s"] + est["compile"])
        time_against_alone(batch, later)
    state.clear()
    if sec["skipped"] or sec["errors"]:
        sec["status"] = "partial"


def _compiled_step_class() -> Any:
    """The trainer's compiled whole step (``lmix.experiments.train.step.CompiledStep``), if this lmix has one."""
    try:
        from lmix.experiments.train.step import CompiledStep
    except ImportError:
        return None
    return CompiledStep


@contextlib.contextmanager
def _compile_backend(backend: str):
    """Make ``torch.compile`` calls inside use ``backend``.

    The trainer's ``CompiledStep`` calls ``torch.compile`` with inductor, whose C++ code generation
    takes minutes on a small CPU: the smoke run swaps in dynamo's ``eager`` backend, which still
    traces, guards and splits the graphs, for just the construction.
    """
    if backend == "inductor":
        yield
        return
    original = torch.compile

    def with_backend(*args: Any, **kwargs: Any) -> Any:
        kwargs["backend"] = backend
        kwargs.pop("mode", None)
        return original(*args, **kwargs)

    torch.compile = with_backend
    try:
        yield
    finally:
        torch.compile = original


def compiled_step(name: str, model, opt, data, batch: int, ctx: dict, autocast) -> tuple[Callable[[int], Any], str]:
    """A training step whose forward (``mixer.apply`` + model + loss) is ``torch.compile``d.

    ``name`` is "alone" (the model and plain cross-entropy) or a mixer. For a mixer the trainer's
    own ``CompiledStep`` is used where it exists (the parameters sampled eagerly with the mixer's
    generator, ``apply`` + model + loss compiled), else the same built here.

    Returns:
        (step(i), which implementation).
    """
    device, cfg = ctx["device"], ctx["cfg"]
    options: dict[str, Any] = {"backend": cfg["compile_backend"], "dynamic": False}
    if cfg["compile_backend"] == "inductor" and ctx["compile_mode"] != "default":
        options["mode"] = ctx["compile_mode"]
    if name == "alone":

        def forward(x, y):
            with autocast:
                logits = model(x)
            return F.cross_entropy(logits.float(), y)

        fwd = torch.compile(forward, **options)

        def step(i: int) -> None:
            x, y = data[i % len(data)]
            loss = fwd(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step, "bench_gpu (model + cross-entropy)"
    mixer = lmix.create_mixer(name, seed=0)
    cls = _compiled_step_class()
    note = ""
    if cls is not None:
        amp_dtype = torch.bfloat16 if device.type == "cuda" else None
        try:
            with _compile_backend(cfg["compile_backend"]):
                whole = cls(
                    model, mixer, amp_dtype=amp_dtype, memory_format=torch.channels_last, mode=ctx["compile_mode"]
                )
        except TypeError as err:  # its signature moved on: measure with the step built here, and say so
            note = f" (CompiledStep not usable: {err})"
        else:

            def step_trainer(i: int) -> None:
                _, loss, _ = whole(*data[i % len(data)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return step_trainer, "lmix.experiments.train.step.CompiledStep"

    gen = mixer.generator_for(device)

    def forward_mixed(x, y, params):
        batch_ = mixer.apply(x, y, params)
        with autocast:
            logits = model(batch_.images.contiguous(memory_format=torch.channels_last))
        return lmix.mixed_cross_entropy(logits, batch_)

    fwd_mixed = torch.compile(forward_mixed, **options)
    size = tuple(data[0][0].shape[-2:])

    def step_mixed(i: int) -> None:
        x, y = data[i % len(data)]
        params = mixer.sample(batch, size, device=device, generator=gen)
        loss = fwd_mixed(x, y, params)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step_mixed, "bench_gpu (sample eagerly, apply + model + loss compiled)" + note


def _graph_breaks() -> dict[str, int]:
    """dynamo's graph-break reasons so far (empty where this torch keeps no such counter)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return {str(k)[:300]: int(v) for k, v in counters.get("graph_break", {}).items()}


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- section 4: reduced Table 4 ----------------------------------------------------------------------


def paper_schedule() -> tuple[int, list[int], Path]:
    """(epochs, milestones, path) of the packaged Table 4 config."""
    from lmix.experiments.train.config import load_yaml

    path = Path(lmix.experiments.__file__).resolve().parent / "configs" / TABLE4_CONFIG
    raw = load_yaml(path)
    return int(raw["epochs"]), list(raw.get("milestones") or []), path


def scale_milestones(milestones: list[int], paper_epochs: int, epochs: int) -> list[int]:
    """The paper's milestones at the same fractions of ``epochs`` (increasing, within [1, epochs])."""
    scaled = {min(epochs, max(1, int(m * epochs / paper_epochs + 0.5))) for m in milestones}
    return sorted(scaled)


def plan_epochs(
    *,
    available_s: float,
    img_s_per_run: float,
    n_train: int,
    n_eval: int,
    runs: int,
    jobs: int,
    run_overhead_s: float,
    max_epochs: int,
    eval_speedup: float = 2.0,
    safety: float = 0.85,
) -> dict[str, Any]:
    """How many epochs fit: ``runs`` runs on ``jobs`` parallel workers each training at ``img_s_per_run``.

    An epoch costs ``n_train / rate`` plus evaluating ``n_eval`` images at ``eval_speedup`` times the
    training rate (a forward pass alone); every run adds ``run_overhead_s`` (data, model, files).
    Returns the epochs (0 when not even one fits), the rounds of runs and the estimated seconds.
    """
    if img_s_per_run <= 0 or runs <= 0 or jobs <= 0:
        raise ValueError(f"need a positive rate, runs and jobs, got {img_s_per_run}, {runs}, {jobs}")
    epoch_s = n_train / img_s_per_run + n_eval / (eval_speedup * img_s_per_run)
    rounds = math.ceil(runs / jobs)
    per_round = safety * available_s / rounds - run_overhead_s
    epochs = max(0, min(max_epochs, math.floor(per_round / epoch_s)))
    return {
        "epochs": epochs,
        "rounds": rounds,
        "epoch_s": epoch_s,
        "estimated_s": rounds * (run_overhead_s + epochs * epoch_s),
    }


def write_fake_fashion_mnist(root: Path, *, n_train: int, n_test: int, seed: int = 0) -> None:
    """``root/FashionMNIST/raw`` with the four uncompressed idx files (random uint8, random labels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, arr in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
            ("labels-idx1", np.arange(n, dtype=np.uint8) % 10),
        ):
            header = struct.pack(">I", 0x0800 + arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + arr.tobytes())


class Worker:
    """One worker process (``--worker``) driven over its stdin/stdout with JSON lines."""

    def __init__(self, index: int, answers: queue.Queue, log_path: Path, env: dict[str, str]) -> None:
        self.index = index
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            env=env,
            cwd=REPO,
        )
        self.busy: dict[str, Any] | None = None
        threading.Thread(target=self._read, args=(answers,), daemon=True).start()

    def _read(self, answers: queue.Queue) -> None:
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL):
                answers.put((self.index, json.loads(line[len(PROTOCOL) :])))
        answers.put((self.index, {"op": "exited", "error": f"worker {self.index} exited ({self.proc.wait()})"}))

    def send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Ask an idle worker to exit; end a busy one (its run is abandoned) at once."""
        if self.proc.poll() is not None:
            return
        if self.busy is not None:
            self.proc.kill()  # our own child, by its handle
            return
        try:
            self.send({"op": "exit"})
        except (OSError, ValueError):
            self.proc.kill()

    def close(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _collect(answers: queue.Queue, want: set[int], budget: Budget, op: str, workers: list[Worker]) -> dict[int, dict]:
    """Wait for one answer to ``op`` from each worker in ``want``, until the deadline."""
    got: dict[int, dict] = {}
    while want - set(got):
        left = budget.remaining() - budget.reserve_s
        if left <= 0:
            raise DeadlineReached(f"deadline while waiting for the workers' {op}")
        try:
            index, msg = answers.get(timeout=min(left, 5.0))
        except queue.Empty:
            continue
        if msg.get("op") == "exited" or msg.get("error"):
            raise RuntimeError(
                f"worker {index} during {op}: {msg.get('error')}; its log ends: {workers[index].log_tail()}"
            )
        got[index] = msg
    return got


def section_table4(sec: dict, ctx: dict) -> None:
    device, cfg, budget, write, args = ctx["device"], ctx["cfg"], ctx["budget"], ctx["write"], ctx["args"]
    from lmix.data import resolve_root
    from lmix.experiments.paper import paper_result

    paper_epochs, paper_milestones, config_path = paper_schedule()
    work = Path(ctx["work_dir"]) / "table4"
    shutil.rmtree(work, ignore_errors=True)  # our own scratch folder from an earlier call
    work.mkdir(parents=True)
    if args.smoke:
        data_root = work / "smoke-data"
        write_fake_fashion_mnist(data_root, n_train=64, n_test=32)
    else:
        data_root = Path(args.data_root)
        try:
            resolve_root("fashion_mnist", data_root)
        except FileNotFoundError as err:
            sec.update(status="skipped", reason=f"{err} (see the top of benchmarks/bench_gpu.py for the copy)")
            return
    seeds = list(cfg["table4_seeds"])
    jobs = args.jobs or min(cfg["table4_jobs"], len(TABLE4_METHODS) * len(seeds))
    sec.update(
        config=str(config_path.relative_to(REPO)) if config_path.is_relative_to(REPO) else str(config_path),
        data_root=str(data_root),
        paper_epochs=paper_epochs,
        paper_milestones=paper_milestones,
        jobs=jobs,
        runs=[],
    )
    overrides: dict[str, Any] = {"data_root": str(data_root), "device": str(device), "progress": False, "eval_train": 0}
    if args.smoke:
        overrides.update(model=cfg["model"], width=cfg["model_kwargs"]["width"], batch_size=cfg["table4_batch"])
    from lmix.experiments.train.config import TrainConfig

    if "checkpoint_every" in TrainConfig.__dataclass_fields__:
        overrides["checkpoint_every"] = 10**6  # only the last epoch's checkpoint (always written)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    threads = 1 if args.smoke else max(1, (os.cpu_count() or 1) // jobs)
    answers: queue.Queue = queue.Queue()
    todo: list[tuple[str, int]] = []
    workers = [Worker(i, answers, work / f"worker{i}.log", env) for i in range(jobs)]
    try:
        setup = {
            "op": "setup",
            "device": str(device),
            "data_root": str(data_root),
            "config": str(config_path),
            "overrides": overrides,
            "threads": threads,
        }
        t0 = time.perf_counter()
        for w in workers:
            w.send(setup)
        ready = _collect(answers, set(range(jobs)), budget, "setup", workers)
        sec["setup_s"] = time.perf_counter() - t0
        n_train, n_eval = ready[0]["n_train"], ready[0]["n_eval"]
        probe = {"op": "probe", "steps": cfg["probe_steps"]}
        workers[0].send(probe)
        alone = _collect(answers, {0}, budget, "probe", workers)[0]["img_s"]
        for w in workers:
            w.send(probe)
        together = [m["img_s"] for m in _collect(answers, set(range(jobs)), budget, "probe", workers).values()]
        sec["probe"] = {
            "steps": cfg["probe_steps"],
            "batch": ready[0]["batch_size"],
            "one_worker_img_s": alone,
            "workers": jobs,
            "per_worker_img_s": together,
            "aggregate_img_s": sum(together),
            "parallel_speedup": sum(together) / alone,
        }
        write()

        # All workers at once at the rate each had with the others running, or one worker alone at
        # its solo rate, whichever gives more epochs; fewer seeds only when not one epoch fits.
        options = [(jobs, min(together))] + ([(1, alone)] if jobs > 1 else [])
        for n_seeds in range(len(seeds), 0, -1):
            runs = len(TABLE4_METHODS) * n_seeds
            plan: dict[str, Any] = {}
            for n_jobs, rate in options:
                candidate = plan_epochs(
                    available_s=budget.remaining() - budget.reserve_s,
                    img_s_per_run=rate,
                    n_train=n_train,
                    n_eval=n_eval,
                    runs=runs,
                    jobs=n_jobs,
                    run_overhead_s=cfg["run_overhead_s"],
                    max_epochs=cfg["max_epochs"],
                )
                if not plan or candidate["epochs"] > plan["epochs"]:
                    plan = {**candidate, "jobs": n_jobs, "img_s_per_run": rate}
            if args.table4_epochs:
                plan.update(epochs=args.table4_epochs, forced=True)
            if plan["epochs"] >= 1:
                break
        sec["plan"] = {**plan, "seeds": seeds[:n_seeds], "runs": runs}
        if plan["epochs"] < 1:
            sec.update(status="skipped", reason=f"not one epoch fits: {plan}")
            return
        active = plan["jobs"]
        for w in workers[active:]:
            w.stop()  # idle: they exit, leaving the GPU to the others
        epochs = plan["epochs"]
        milestones = scale_milestones(paper_milestones, paper_epochs, epochs)
        sec.update(epochs=epochs, milestones=milestones)
        todo.extend((m, s) for s in seeds[:n_seeds] for m in TABLE4_METHODS)
        idle = list(range(active))
        started: dict[tuple[str, int], float] = {}
        while todo or any(w.busy for w in workers):
            while todo and idle:
                method, seed = todo.pop(0)
                w = workers[idle.pop(0)]
                out = work / f"{method}-seed{seed}"
                w.busy = {"method": method, "seed": seed, "out": str(out)}
                started[(method, seed)] = time.perf_counter()
                w.send(
                    {
                        "op": "run",
                        "overrides": {
                            **overrides,
                            "method": method,
                            "seed": seed,
                            "epochs": epochs,
                            "milestones": milestones,
                            "out": str(out),
                        },
                    }
                )
            left = budget.remaining() - budget.reserve_s
            if left <= 0:
                raise DeadlineReached("deadline during the Table 4 runs")
            try:
                index, msg = answers.get(timeout=min(left, 5.0))
            except queue.Empty:
                continue
            w = workers[index]
            if w.busy is None:
                continue
            key = (w.busy["method"], w.busy["seed"])
            entry = {"method": key[0], "seed": key[1], "seconds": time.perf_counter() - started[key]}
            if msg.get("op") == "exited":
                entry.update(status="error", error=msg["error"], log_tail=w.log_tail())
            elif "error" in msg:
                entry.update(status="error", error=msg["error"], log_tail=w.log_tail())
                idle.append(index)
            else:
                entry.update(status="ok", **msg["summary"])
                idle.append(index)
            w.busy = None
            sec["runs"].append(_with_paper(entry, paper_result))
            if todo and not idle and not any(w.busy for w in workers):
                break  # every worker died
            write()
    except DeadlineReached:
        sec["status"] = "timeout"
        for w in workers:
            if w.busy is not None:
                sec["runs"].append(_with_paper(_partial_run(w.busy), paper_result))
        raise
    finally:
        for method, seed in todo:
            sec["runs"].append(_with_paper({"method": method, "seed": seed, "status": "not started"}, paper_result))
        for w in workers:
            w.stop()
        end = time.monotonic() + 5.0
        for w in workers:
            w.close(max(0.1, end - time.monotonic()))
        order = {m: i for i, m in enumerate(TABLE4_METHODS)}
        sec["runs"] = sorted(sec.get("runs", []), key=lambda r: (r["seed"], order[r["method"]]))
        sec["means"] = _means(sec["runs"])
    if any(r["status"] != "ok" for r in sec["runs"]):
        sec["status"] = "partial"


def _partial_run(busy: dict[str, Any]) -> dict[str, Any]:
    """What an unfinished run had written: its last evaluated epoch from metrics.jsonl."""
    entry = {"method": busy["method"], "seed": busy["seed"], "status": "timeout"}
    path = Path(busy["out"]) / "metrics.jsonl"
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        rows = []
    tested = [r for r in rows if "test_acc" in r]
    if tested:
        entry.update(
            epochs_done=tested[-1]["epoch"],
            final_acc=tested[-1]["test_acc"],
            best_acc=max(r["test_acc"] for r in tested),
        )
    return entry


def _with_paper(entry: dict[str, Any], paper_result) -> dict[str, Any]:
    ref = paper_result("fashion_mnist", "preact_resnet18", entry["method"])
    keep = (
        "method", "seed", "status", "epochs", "final_acc", "best_acc", "best_epoch", "train_images_per_sec",
        "train_seconds", "seconds", "epochs_done", "error", "log_tail",
    )  # fmt: skip
    out = {k: entry[k] for k in keep if k in entry}
    out["paper_final"] = ref.final if ref else None
    out["paper_best"] = ref.best if ref else None
    return out


def _means(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    means: dict[str, dict[str, Any]] = {}
    for method in TABLE4_METHODS:
        done = [r for r in runs if r["method"] == method and r["status"] == "ok"]
        if done:
            means[method] = {
                "runs": len(done),
                "final_acc": statistics.fmean(r["final_acc"] for r in done),
                "best_acc": statistics.fmean(r["best_acc"] for r in done),
                "paper_final": done[0]["paper_final"],
                "paper_best": done[0]["paper_best"],
            }
    return means


# -- the worker process ----------------------------------------------------------------------------


def worker_main() -> int:
    """``--worker``: set up, probe and train Table 4 runs as told over stdin (one JSON per line)."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # the trainer's and libraries' prints go to the log, not into the protocol

    def answer(obj: dict[str, Any]) -> None:
        proto.write(PROTOCOL + json.dumps(obj) + "\n")
        proto.flush()

    from lmix.data import build_loaders
    from lmix.experiments.train import config_from_sources, load_yaml, train

    state: dict[str, Any] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg["op"]
        try:
            if op == "exit":
                return 0
            if op == "setup":
                torch.set_num_threads(msg["threads"])
                torch.backends.cudnn.benchmark = True
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
                device = torch.device(msg["device"])
                base = load_yaml(msg["config"])
                config = config_from_sources(base, msg["overrides"])
                train_loader, test_loader, info = build_loaders(
                    "fashion_mnist", root=msg["data_root"], batch_size=config.batch_size, device=device, seed=0
                )
                torch.manual_seed(0)
                kwargs = {"width": config.width} if config.width else {}
                model = lmix.create_model(config.model, num_classes=10, in_channels=info.in_channels, **kwargs)
                model = model.to(device).to(memory_format=torch.channels_last)
                state.update(base=base, device=device, loader=train_loader, model=model)
                state["opt"] = make_optimizer(model, device)
                state["mixer"] = lmix.create_mixer("lmix", seed=0)
                _probe(state, 2)  # warm-up: cuDNN plans, allocator
                n_eval = len(test_loader.labels) if hasattr(test_loader, "labels") else 10_000
                answer({"op": "setup", "n_train": int(train_loader.num_samples), "n_eval": int(n_eval),
                        "batch_size": config.batch_size})  # fmt: skip
            elif op == "probe":
                answer({"op": "probe", "img_s": _probe(state, msg["steps"])})
            elif op == "run":
                for key in ("model", "opt", "loader", "mixer"):
                    state.pop(key, None)
                _free(state["device"])
                config = config_from_sources(state["base"], msg["overrides"])
                summary = train(config, log=lambda *a, **k: print(*a, file=sys.stderr, **k))
                answer({"op": "run", "summary": summary})
            else:
                answer({"op": op, "error": f"unknown op {op!r}"})
        except Exception as err:  # noqa: BLE001 - reported to the parent, which records it
            traceback.print_exc()
            answer({"op": op, **_short_error(err)})
    return 0


def _probe(state: dict[str, Any], steps: int) -> float:
    """Training img/s of ``steps`` lmix steps on the real data (the trainer's loader and step)."""
    device, loader, model, opt, mixer = (state[k] for k in ("device", "loader", "model", "opt", "mixer"))
    autocast = autocast_for(device)
    loader.set_epoch(state.setdefault("probe_epoch", 0))
    state["probe_epoch"] += 1
    batches = iter(loader)
    _sync(device)
    t0 = time.perf_counter()
    seen = 0
    for _ in range(steps):
        try:
            x, y = next(batches)
        except StopIteration:
            loader.set_epoch(state["probe_epoch"])
            state["probe_epoch"] += 1
            batches = iter(loader)
            x, y = next(batches)
        train_step(model, mixer, opt, x.contiguous(memory_format=torch.channels_last), y, autocast=autocast)
        seen += y.shape[0]
    _sync(device)
    return seen / (time.perf_counter() - t0)


# -- targets and the final table -------------------------------------------------------------------


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/FAIL/SKIP of the issue's targets from the throughput results (SKIP off a GPU)."""
    sec = report["sections"].get("throughput", {})
    rows = sec.get("results", [])
    on_gpu = report["meta"]["device"].startswith("cuda")

    def find(batch: int, method: str, mode: str) -> dict | None:
        return next((r for r in rows if (r["batch"], r["method"], r["mode"]) == (batch, method, mode)), None)

    out = []
    for name, batch, goal in (("T1", 512, TARGETS["batch512_img_s"]), ("T2", 128, TARGETS["batch128_img_s"])):
        row = find(batch, "lmix", "compiled")
        target = {"name": name, "what": f"compiled lmix training step at batch {batch} >= {goal:,.0f} img/s"}
        if row is None or not on_gpu:
            target.update(status="SKIP", reason="not measured" if on_gpu else "not on a GPU")
        else:
            target.update(status="PASS" if row["img_s"] >= goal else "FAIL", value=row["img_s"])
        out.append(target)
    target = {"name": "T3", "what": f"per-sample lmix within {TARGETS['lmix_overhead_pct']:.0f}% of the model alone"}
    measured = [
        r for r in (find(512, "lmix", "compiled"), find(128, "lmix", "compiled")) if r and r["overhead_pct"] is not None
    ]
    row = measured[0] if measured else None
    if row is None or not on_gpu:
        target.update(status="SKIP", reason="not measured" if on_gpu else "not on a GPU")
    else:
        ok = row["overhead_pct"] <= TARGETS["lmix_overhead_pct"]
        target.update(status="PASS" if ok else "FAIL", value=row["overhead_pct"], batch=row["batch"])
    out.append(target)
    return out


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"bench_gpu: {report['meta']['device']}, {report['meta']['elapsed_s']:.0f} s of {report['meta']['deadline_s']:.0f}"
    ]
    secs = report["sections"]
    for name in SECTIONS:
        sec = secs.get(name, {"status": "not reached"})
        extra = sec.get("reason") or sec.get("error") or ""
        lines.append(f"  {name:12s} {sec['status']:8s} {sec.get('seconds', 0):6.1f} s  {extra[:100]}")
    env = secs.get("environment", {})
    if "versions" in env:
        v = env["versions"]
        lines.append(
            f"versions: python {v['python']}, torch {v['torch']}, torchvision {v['torchvision']}, CUDA {v['cuda']}, "
            f"cuDNN {v['cudnn']}, lmix {v['lmix']}, commit {(v['git_commit'] or '?')[:12]}, source {v['source_sha256_16']}"
        )
    if "matmul_bf16" in env and "copy" in env:
        lines.append(
            f"device: {env['device']['name']}; bf16 matmul {env['matmul_bf16']['tflop_s']:.1f} TFLOP/s "
            f"(n={env['matmul_bf16']['n']}), copy {env['copy']['gb_s']:.1f} GB/s"
        )
    sync = secs.get("sync_check", {})
    if sync.get("methods"):
        lines.append(
            f"sync check ({'sync debug mode error' if sync.get('checked') else 'CPU: steps only'}): {sync.get('summary', '')}"
        )
        for name, entry in sync["methods"].items():
            if entry["status"] == "fail":
                lines.append(f"  {name}: {entry.get('error', '')[:150]} at {entry.get('where')}")
    speed = secs.get("throughput", {})
    if speed.get("results"):
        lines.append(f"{'batch':>6s} {'method':14s} {'mode':9s} {'img/s':>10s} {'alone img/s':>12s} {'overhead':>9s}")
        for r in speed["results"]:
            alone = f"{r['model_alone_img_s']:12.0f}" if r["model_alone_img_s"] is not None else f"{'-':>12s}"
            over = f"{r['overhead_pct']:8.1f}%" if r["overhead_pct"] is not None else f"{'-':>9s}"
            lines.append(f"{r['batch']:6d} {r['method']:14s} {r['mode']:9s} {r['img_s']:10.0f} {alone} {over}")
    t4 = secs.get("table4", {})
    if t4.get("probe"):
        p = t4["probe"]
        lines.append(
            f"table4 probe: 1 worker {p['one_worker_img_s']:.0f} img/s; {p['workers']} workers {p['aggregate_img_s']:.0f} "
            f"img/s together (x{p['parallel_speedup']:.2f}); epochs {t4.get('epochs', '-')}, milestones {t4.get('milestones', '-')}"
        )
    if t4.get("runs"):
        lines.append(
            f"{'method':8s} {'seed':>4s} {'status':8s} {'final':>6s} {'best':>6s} {'paper final':>11s} {'paper best':>10s}"
        )

        def num(x: Any) -> str:
            return f"{x:.2f}" if isinstance(x, (int, float)) else "-"

        for r in t4["runs"]:
            lines.append(
                f"{r['method']:8s} {r['seed']:4d} {r['status']:8s} {num(r.get('final_acc')):>6s} {num(r.get('best_acc')):>6s} "
                f"{num(r['paper_final']):>11s} {num(r['paper_best']):>10s}"
            )
    for t in report.get("targets", []):
        value = f" (measured {t['value']:,.1f})" if "value" in t else f" ({t.get('reason', '')})"
        lines.append(f"{t['name']} {t['status']:4s} {t['what']}{value}")
    return "\n".join(lines)


# -- driver ------------------------------------------------------------------------------------------


def run_section(report: dict, name: str, fn: Callable[[dict, dict], None], ctx: dict, estimate_s: float) -> None:
    """Run one section if ``estimate_s`` fits the budget; record its status, time and any error."""
    budget, write = ctx["budget"], ctx["write"]
    sec: dict[str, Any] = {"status": "running", "estimate_s": estimate_s}
    report["sections"][name] = sec
    if not budget.fits(estimate_s):
        sec.update(
            status="skipped",
            reason=f"deadline: {max(0.0, budget.remaining()):.0f} s left, the section needs about {estimate_s:.0f} s",
        )
        write()
        return
    write()
    t0 = time.monotonic()
    try:
        fn(sec, ctx)
        if sec["status"] == "running":
            sec["status"] = "ok"
    except DeadlineReached as err:
        sec.update(status="timeout", reason=str(err))
    except Exception as err:  # noqa: BLE001 - the next sections still run
        sec.update(status="error", **_short_error(err), traceback=traceback.format_exc()[-4000:])
    finally:
        sec["seconds"] = time.monotonic() - t0
        write()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_gpu", help="folder for bench_gpu.json (default: runs/bench_gpu)")
    p.add_argument(
        "--data-root", default=str(REPO / "gpu-data"), help="Fashion-MNIST's folder or its parent (default: gpu-data)"
    )
    p.add_argument("--deadline-s", type=float, default=360.0, help="wall-clock budget of the whole call (default 360)")
    p.add_argument("--smoke", action="store_true", help="every section on the CPU with tiny sizes (CI)")
    p.add_argument("--jobs", type=int, default=0, help="Table 4 worker processes (default: one per run, at most 10)")
    p.add_argument("--table4-epochs", type=int, default=0, help="force this many Table 4 epochs (default: what fits)")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode on the GPU (default: default)")
    p.add_argument("--work-dir", default=None, help="scratch folder of the Table 4 runs (default: a temporary one)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ", ".join(SECTIONS))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.deadline_s <= 0 or args.jobs < 0 or args.table4_epochs < 0:
        p.error("--deadline-s must be > 0, --jobs and --table4-epochs >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main()
    if args.smoke:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("bench_gpu: no CUDA device; use --smoke for the CPU run", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if args.smoke:
        # One thread: tiny ops on a shared CPU run many times slower when OpenMP threads contend.
        torch.set_num_threads(1)

    cfg = settings(args.smoke, device)
    budget = Budget(args.deadline_s, reserve_s=8.0 if not args.smoke else 2.0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "meta": {
            "script": "benchmarks/bench_gpu.py",
            "argv": sys.argv[1:] if argv is None else list(argv),
            "smoke": args.smoke,
            "device": str(device),
            "deadline_s": args.deadline_s,
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": 0.0,
        },
        "sections": {},
        "targets": [],
    }

    def write() -> None:
        report["meta"]["elapsed_s"] = budget.elapsed()
        atomic_write_json(out / "bench_gpu.json", report)

    scratch = tempfile.TemporaryDirectory(prefix="bench_gpu_") if args.work_dir is None else None
    ctx = {
        "args": args,
        "device": device,
        "cfg": cfg,
        "budget": budget,
        "write": write,
        "compile_mode": args.compile_mode,
        "work_dir": args.work_dir or scratch.name,
        "keep_s": cfg["table4_keep_s"] if "table4" in args.sections.split(",") else 0.0,
    }
    old = signal.signal(signal.SIGALRM, _raise_deadline)
    signal.setitimer(signal.ITIMER_REAL, args.deadline_s)
    wanted = args.sections.split(",")
    est = cfg["estimate"]
    speed_estimate = est["eager_config"] * len(SPEED_METHODS) * len(cfg["speed_batches"])
    try:
        for name, fn, estimate in (
            ("environment", section_environment, est["environment"]),
            ("sync_check", section_sync_check, est["sync_check"]),
            ("throughput", section_throughput, speed_estimate),
            ("table4", section_table4, est["table4_min"]),
        ):
            if name in wanted:
                run_section(report, name, fn, ctx, estimate)
                _free(device)
    except DeadlineReached:  # the alarm went off between two sections' own handlers
        for sec in report["sections"].values():
            if sec["status"] == "running":
                sec["status"] = "timeout"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        report["targets"] = check_targets(report)
        write()
        if scratch is not None:
            scratch.cleanup()
    try:
        print(format_table(report), flush=True)
    except Exception as err:  # noqa: BLE001 - the JSON is written; never lose it to a formatting slip
        print(f"bench_gpu: could not format the table ({_short_error(err)['error']}); see the JSON", flush=True)
    print(f"full results: {out / 'bench_gpu.json'}")
    bad = [n for n, s in report["sections"].items() if s["status"] in ("error", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
