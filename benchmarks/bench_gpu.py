"""The GPU check of lmix in one call: speed, sync-freedom and a reduced Table 4.

The sections, in priority order (:data:`SECTIONS`): ``environment`` (versions, device, measured
matmul and copy rates), ``sync_check`` (every method's training step and the trainer's loop under
``torch.cuda.set_sync_debug_mode("error")``), ``throughput`` (the whole training step against the
model alone, eager and ``torch.compile``d) and ``table4`` (a reduced Table 4 on Fashion-MNIST,
trained by ``lmix sweep``'s job processes for as many epochs as fit). Each section is skipped when
its estimated cost does not fit the time left (``--deadline-s``), a failing section records its
error and the next one runs, ``OUT/bench_gpu.json`` is rewritten atomically after every section
and sub-result, and a short table is printed last.

How to run it on a GPU and read what it prints: docs/results-gpu.md. ``--smoke`` runs every
section on the CPU with tiny sizes (CI: tests/benchmarks/test_bench_gpu.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import gpu_table4 as table4
import lmix
from gpu_timing import (
    autocast_for,
    free,
    make_model,
    make_optimizer,
    model_step,
    optimizer_step,
    random_batches,
    result_row,
    sync,
    time_interleaved,
    timed,
    train_step,
    window_steps,
)
from lmix.data import DeviceLoader, available_cpus, dataset_info, load_tensors, resolve_root
from lmix.experiments.io import atomic_write_json
from lmix.experiments.sweep import RunOutcome
from lmix.experiments.train import load_yaml
from lmix.experiments.train.step import CompiledStep, eager_step, train_epoch

REPO = Path(__file__).resolve().parents[1]
SYNC_METHODS = ("none", "mixup", "cutmix", "fmix", "lmix", "lmix+mixup", "cutout", "patchup", "manifold_mixup")
SPEED_METHODS = ("none", "mixup", "cutmix", "fmix", "lmix", "lmix+mixup")
TARGETS = {"batch512_img_s": 60_000.0, "batch128_img_s": 30_000.0, "lmix_overhead_pct": 3.0, "device_mix_pct": 3.0}


class DeadlineReached(BaseException):
    """Raised in the main thread when the deadline has passed.

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


@dataclass(frozen=True)
class Settings:
    """Sizes and cost estimates (seconds) of the real GPU run or of the CPU smoke run."""

    model: str
    model_kwargs: dict[str, Any]
    matmul_n: int
    copy_mib: int
    sync_batch: int
    sync_steps: int
    speed_batches: tuple[int, ...]
    windows: int
    window_s: float
    max_window_steps: int
    warmup: int
    compile_backend: str  # "eager": dynamo's tracing and guards without inductor's code generation
    compiled: tuple[str, ...]
    estimate: dict[str, float]
    table4_keep_s: float  # what the compiles leave for Table 4 (process starts, probes, some epochs)
    table4_seeds: tuple[int, ...]
    table4_batch: int | None  # None: the paper config's (128)
    table4_jobs: int
    probe_steps: int
    max_epochs: int
    run_overhead_s: float  # a job process's start, data, model and files
    mix224: tuple[str, int, int]  # the device-side mix section: (model, batch, image side)

    def window(self, step: Callable[[int], Any], device: torch.device) -> tuple[int, float]:
        """Warm up ``step``; (steps per timed window, the warm-up's seconds per step)."""
        return window_steps(step, device, warmup=self.warmup, window_s=self.window_s, max_steps=self.max_window_steps)


GPU = Settings(
    model="preact_resnet18",
    model_kwargs={},
    matmul_n=8192,
    copy_mib=1024,
    sync_batch=64,
    sync_steps=3,
    speed_batches=(512, 128),
    windows=5,
    window_s=0.15,
    max_window_steps=60,
    warmup=8,
    compile_backend="inductor",
    compiled=("alone", "lmix", "none"),
    estimate={
        "environment": 20,
        "sync_check": 30,
        "eager_config": 3,
        "compile": 50,
        "device_mix": 40,
        "table4_min": 60,
    },
    table4_keep_s=150,
    table4_seeds=(0, 1),
    table4_batch=None,
    table4_jobs=10,
    probe_steps=100,
    max_epochs=200,
    run_overhead_s=15.0,
    mix224=("resnet50", 256, 224),
)
SMOKE = Settings(
    model="preact_resnet_tiny",
    model_kwargs={"width": 4},
    matmul_n=256,
    copy_mib=4,
    sync_batch=8,
    sync_steps=1,
    speed_batches=(8,),
    windows=1,
    window_s=0.0,
    max_window_steps=1,
    warmup=1,
    compile_backend="eager",
    compiled=("alone", "lmix"),
    estimate={"environment": 2, "sync_check": 10, "eager_config": 1, "compile": 10, "device_mix": 5, "table4_min": 10},
    table4_keep_s=10,
    table4_seeds=(0,),
    table4_batch=16,
    table4_jobs=2,
    probe_steps=2,
    max_epochs=2,
    run_overhead_s=6.0,
    mix224=("preact_resnet_tiny", 4, 32),
)


@dataclass
class Context:
    """What every section gets: the arguments, the device, the settings, the budget and ``write``."""

    args: argparse.Namespace
    device: torch.device
    cfg: Settings
    budget: Budget
    write: Callable[[], None]
    work_dir: Path
    keep_s: float = 0.0  # seconds the throughput section leaves for the sections after it


# -- small helpers ---------------------------------------------------------------------------------


def _short_error(err: BaseException) -> dict[str, Any]:
    """The error, and the innermost lmix or benchmark line it went through (where it synced)."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "lmix" in f.filename or "benchmarks" in f.filename]
    where = f"{ours[-1].filename.split('src/')[-1]}:{ours[-1].lineno} ({ours[-1].name})" if ours else None
    return {"error": f"{type(err).__name__}: {str(err).strip()[:600]}", "where": where}


def source_digest() -> str:
    """sha256 (16 hex) of the lmix sources and this script: identifies the code that ran without git."""
    h = hashlib.sha256()
    package = Path(lmix.__file__).resolve().parent
    files = [(str(p.relative_to(package.parent)), p) for p in sorted(package.rglob("*.py"))]
    for name, path in [*files, ("benchmarks/bench_gpu.py", Path(__file__).resolve())]:
        h.update(name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def git_commit() -> str | None:
    """``$LMIX_GIT_COMMIT`` (for a copy of the tree without ``.git``), else ``git rev-parse HEAD``."""
    commit = os.environ.get("LMIX_GIT_COMMIT")
    if commit:
        return commit
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# -- environment -----------------------------------------------------------------------------------


def section_environment(sec: dict, ctx: Context) -> None:
    """Versions, the device, and a measured bf16 matmul rate and device copy bandwidth."""
    import torchvision

    device, cfg = ctx.device, ctx.cfg
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
    n = cfg.matmul_n
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g) for _ in range(2))
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    median = _median_time(lambda: torch.mm(a, b, out=c), device)
    sec["matmul_bf16"] = {"n": n, "median_s": median, "tflop_s": 2 * n**3 / median / 1e12}
    src = torch.rand(cfg.copy_mib * 2**20 // 4, device=device, generator=g)
    dst = torch.empty_like(src)
    median = _median_time(lambda: dst.copy_(src), device)
    moved = 2 * src.numel() * src.element_size()  # bytes read + bytes written
    sec["copy"] = {"mib": cfg.copy_mib, "median_s": median, "gb_s": moved / median / 1e9}


def _median_time(fn: Callable[[], Any], device: torch.device) -> float:
    for _ in range(3):
        fn()
    return statistics.median(timed(fn, device) for _ in range(10))


def environment_lines(sec: dict) -> list[str]:
    lines = []
    if "versions" in sec:
        v = sec["versions"]
        lines.append(
            f"versions: python {v['python']}, torch {v['torch']}, torchvision {v['torchvision']}, CUDA {v['cuda']}, "
            f"cuDNN {v['cudnn']}, lmix {v['lmix']}, commit {(v['git_commit'] or '?')[:12]}, source {v['source_sha256_16']}"
        )
    if "matmul_bf16" in sec and "copy" in sec:
        lines.append(
            f"device: {sec['device']['name']}; bf16 matmul {sec['matmul_bf16']['tflop_s']:.1f} TFLOP/s "
            f"(n={sec['matmul_bf16']['n']}), copy {sec['copy']['gb_s']:.1f} GB/s"
        )
    return lines


# -- sync check ------------------------------------------------------------------------------------


@contextlib.contextmanager
def sync_debug(device: torch.device) -> Iterator[None]:
    """Sync debug mode 'error' on a GPU (every host-device sync raises); nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def section_sync_check(sec: dict, ctx: Context) -> None:
    """Every method's training step, then the trainer's loop, under sync debug mode 'error'."""
    device, cfg = ctx.device, ctx.cfg
    checked = device.type == "cuda"
    sec.update(checked=checked, steps=cfg.sync_steps, batch=cfg.sync_batch, methods={})
    if not checked:
        sec["note"] = "sync debug mode is CUDA-only: on the CPU the steps ran without the check"
    autocast = autocast_for(device)
    data = random_batches(cfg.sync_steps + 1, cfg.sync_batch, device, seed=1)
    model = make_model(cfg.model, device, **cfg.model_kwargs)
    for name in SYNC_METHODS:
        try:
            mixer = lmix.create_mixer(name, seed=0)
            opt = make_optimizer(model, device)
            # One step outside the check: first-use set-up (generators, cuDNN plans) may sync once.
            train_step(model, mixer, opt, *data[0], autocast=autocast)
            sync(device)
            with sync_debug(device):
                for x, y in data[1:]:
                    train_step(model, mixer, opt, x, y, autocast=autocast)
            sync(device)
            sec["methods"][name] = {"status": "pass" if checked else "ran"}
        except Exception as err:  # noqa: BLE001 - a method's failure is a result, not the section's
            sec["methods"][name] = {"status": "fail", **_short_error(err)}
        ctx.write()
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

    def __iter__(self) -> Iterator[Any]:
        yield self.first
        yield from self.batches


def _sync_check_trainer(ctx: Context, model: torch.nn.Module, autocast: Any) -> dict[str, dict[str, Any]]:
    """The trainer's loop (``train_epoch`` over a ``DeviceLoader``) and the loader's epoch set-up, checked."""
    device, cfg = ctx.device, ctx.cfg
    ok = "pass" if device.type == "cuda" else "ran"
    step_key = "trainer.train_epoch (lmix, DeviceLoader): per step"
    setup_key = "DeviceLoader epoch set-up (once per epoch, a sync allowed)"
    out: dict[str, dict[str, Any]] = {}
    loader = None
    try:
        g = torch.Generator().manual_seed(2)
        n = cfg.sync_batch * cfg.sync_steps
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (n,), generator=g)
        loader = DeviceLoader(
            images, labels, info=dataset_info("cifar10"), batch_size=cfg.sync_batch, train=True, device=device, seed=0
        )
        opt = make_optimizer(model, device)
        kwargs = dict(
            optimizer=opt,
            scaler=torch.amp.GradScaler(device.type, enabled=False),
            scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0),
        )
        mixer = lmix.create_mixer("lmix", seed=0)
        step = eager_step(model, mixer, autocast=autocast, memory_format=torch.channels_last)
        loader.set_epoch(0)
        train_epoch(model, loader, step, **kwargs)  # warm-up epoch outside the check
        sync(device)
        loader.set_epoch(1)
        started = _Started(loader)
        with sync_debug(device):
            train_epoch(model, started, step, **kwargs)
        sync(device)
        out[step_key] = {"status": ok, "steps": cfg.sync_steps}
    except Exception as err:  # noqa: BLE001
        out[step_key] = {"status": "fail", **_short_error(err)}
    if loader is None:
        return out
    try:
        loader.set_epoch(2)
        with sync_debug(device):
            next(iter(loader))
        sync(device)
        out[setup_key] = {"status": ok}
    except Exception as err:  # noqa: BLE001
        out[setup_key] = {"status": "fail", **_short_error(err)}
    return out


def sync_check_lines(sec: dict) -> list[str]:
    if not sec.get("methods"):
        return []
    how = "sync debug mode error" if sec.get("checked") else "CPU: steps only"
    lines = [f"sync check ({how}): {sec.get('summary', '')}"]
    for name, entry in sec["methods"].items():
        if entry["status"] == "fail":
            lines.append(f"  {name}: {entry.get('error', '')[:150]} at {entry.get('where')}")
    return lines


# -- throughput ------------------------------------------------------------------------------------


def section_throughput(sec: dict, ctx: Context) -> None:
    """img/s of the whole training step against the model alone: every method eager, then compiled."""
    device, cfg = ctx.device, ctx.cfg
    sec.update(model=cfg.model, input="3x32x32 random uint8 -> normalised float32, channels_last")
    sec["amp"] = "bf16" if device.type == "cuda" else "none"
    sec["optimizer"] = "SGD fused" if device.type == "cuda" else "SGD"
    sec["results"], sec["skipped"], sec["errors"] = [], [], []
    for batch in cfg.speed_batches:
        _eager_rows(sec, ctx, batch)
        free(device)
    _compiled_rows(sec, ctx)
    if sec["skipped"] or sec["errors"]:
        sec["status"] = "partial"


def _eager_rows(sec: dict, ctx: Context, batch: int) -> None:
    """Every method at ``batch``, eager, each timed against the model alone."""
    device, cfg, autocast = ctx.device, ctx.cfg, autocast_for(ctx.device)
    data = random_batches(4, batch, device, seed=batch)
    model = make_model(cfg.model, device, **cfg.model_kwargs)
    opt = make_optimizer(model, device)

    def alone(i: int) -> None:
        model_step(model, opt, *data[i % len(data)], autocast=autocast)

    steps, per_step = cfg.window(alone, device)
    for method in SPEED_METHODS:
        cost = 2 * (cfg.warmup + steps * cfg.windows) * per_step * 1.5 + cfg.estimate["eager_config"]
        if not ctx.budget.fits(cost):
            sec["skipped"].append({"batch": batch, "method": method, "mode": "eager", "reason": "deadline"})
            continue
        try:
            mixer = lmix.create_mixer(method, seed=0)

            def whole(i: int, mixer=mixer) -> None:
                train_step(model, mixer, opt, *data[i % len(data)], autocast=autocast)

            cfg.window(whole, device)
            secs = time_interleaved({"whole": whole, "alone": alone}, steps=steps, windows=cfg.windows, device=device)
            sec["results"].append(
                result_row(batch, method, "eager", secs["whole"], secs["alone"], steps, "eager model alone")
            )
        except Exception as err:  # noqa: BLE001
            sec["errors"].append({"batch": batch, "method": method, "mode": "eager", **_short_error(err)})
        ctx.write()


@dataclass
class _CompiledBatch:
    """One batch size's compiled steps, their shared model and data, and the window they are timed in."""

    batch: int
    data: list[tuple[torch.Tensor, torch.Tensor]]
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    steps: dict[str, Callable[[int], Any]] = field(default_factory=dict)
    window: int | None = None
    alone_reported: bool = False


def _compiled_rows(sec: dict, ctx: Context) -> None:
    """Compiled, with the randomness drawn eagerly outside the graph: the model alone and lmix at
    every batch size first (the targets), then the rest; each compile starts only if it leaves
    ``ctx.keep_s`` for the sections after this one."""
    import torch._dynamo as dynamo

    # Every compiled variant keeps its own static-shape graphs: no recompilation turns the batch
    # dimension dynamic, and no cache limit falls back to eager.
    for knob, value in (("cache_size_limit", 64), ("recompile_limit", 64), ("automatic_dynamic_shapes", False)):
        if hasattr(dynamo.config, knob):
            setattr(dynamo.config, knob, value)
    device, cfg = ctx.device, ctx.cfg
    sec["compile"] = {
        "backend": cfg.compile_backend,
        "mode": ctx.args.compile_mode,
        "seconds": {},
        "implementation": {},
        "graph_breaks": {},
    }
    first = [n for n in cfg.compiled if n in ("alone", "lmix")]
    later = [n for n in cfg.compiled if n not in first]
    states = {}
    for k, batch in enumerate(cfg.speed_batches):
        model = make_model(cfg.model, device, **cfg.model_kwargs)
        states[batch] = st = _CompiledBatch(
            batch, random_batches(4, batch, device, seed=batch), model, make_optimizer(model, device)
        )
        # At the later batch sizes lmix first: its rate is a target even if the time runs out
        # before its reference (then it is timed alone, with no overhead figure).
        for name in first if k == 0 else first[::-1]:
            _compile_and_warm(sec, ctx, st, name, ctx.keep_s)
        _time_against_alone(sec, ctx, st, [n for n in first if n != "alone"])
    for st in states.values():
        for name in later:
            _compile_and_warm(sec, ctx, st, name, ctx.keep_s + cfg.estimate["compile"])
        _time_against_alone(sec, ctx, st, later)


def _compile_and_warm(sec: dict, ctx: Context, st: _CompiledBatch, name: str, keep_s: float) -> None:
    compiled = sec["compile"]
    compile_s = max(compiled["seconds"].values(), default=ctx.cfg.estimate["compile"])  # measured beats guessed
    if not ctx.budget.fits(compile_s * 1.3 + 5 + keep_s):
        sec["skipped"].append({"batch": st.batch, "method": name, "mode": "compiled", "reason": "deadline"})
        return
    try:
        before = _graph_breaks()
        step, implementation = compiled_step(name, st, ctx)
        t0 = time.perf_counter()
        window, _ = ctx.cfg.window(step, ctx.device)
        key = f"{name}@{st.batch}"
        compiled["seconds"][key] = time.perf_counter() - t0
        compiled["implementation"][key] = implementation
        compiled["graph_breaks"][key] = {
            k: v - before.get(k, 0) for k, v in _graph_breaks().items() if v > before.get(k, 0)
        }
        st.window = st.window or window
        st.steps[name] = step
    except Exception as err:  # noqa: BLE001
        sec["errors"].append({"batch": st.batch, "method": name, "mode": "compiled", **_short_error(err)})
    ctx.write()


def _time_against_alone(sec: dict, ctx: Context, st: _CompiledBatch, names: list[str]) -> None:
    names = [n for n in names if n in st.steps]
    has_alone = "alone" in st.steps
    if not names and not (has_alone and not st.alone_reported):
        return
    steps_by_name = {n: st.steps[n] for n in (["alone"] if has_alone else []) + names}
    secs = time_interleaved(steps_by_name, steps=st.window, windows=ctx.cfg.windows, device=ctx.device)
    alone = secs.get("alone")
    for name in names:
        ref = "compiled model alone" if has_alone else None
        sec["results"].append(result_row(st.batch, name, "compiled", secs[name], alone, st.window, ref))
    if has_alone and not st.alone_reported:
        st.alone_reported = True
        sec["results"].append(result_row(st.batch, "(model alone)", "compiled", alone, alone, st.window, "itself"))
    ctx.write()


def compiled_step(name: str, st: _CompiledBatch, ctx: Context) -> tuple[Callable[[int], Any], str]:
    """A training step whose forward is ``torch.compile``d, and what implements it.

    ``name`` is "alone" (the model and plain cross-entropy, compiled here) or a mixer (the
    trainer's :class:`CompiledStep`: the parameters drawn eagerly, ``mixer.apply`` + model + loss
    compiled).
    """
    cfg, model, opt, data = ctx.cfg, st.model, st.opt, st.data
    mode = None if ctx.args.compile_mode == "default" else ctx.args.compile_mode
    if name == "alone":
        autocast = autocast_for(ctx.device)

        def forward(x, y):
            with autocast:
                logits = model(x)
            return F.cross_entropy(logits.float(), y)

        fwd = torch.compile(forward, backend=cfg.compile_backend, mode=mode, dynamic=False)

        def step_alone(i: int) -> None:
            optimizer_step(opt, fwd(*data[i % len(data)]))

        return step_alone, "bench_gpu (model + cross-entropy)"
    whole = CompiledStep(
        model,
        lmix.create_mixer(name, seed=0),
        amp_dtype=torch.bfloat16 if ctx.device.type == "cuda" else None,
        memory_format=torch.channels_last,
        mode=ctx.args.compile_mode,
        backend=cfg.compile_backend,
    )

    def step_trainer(i: int) -> None:
        _, loss, _ = whole(*data[i % len(data)])
        optimizer_step(opt, loss)

    return step_trainer, "lmix.experiments.train.step.CompiledStep"


def _graph_breaks() -> dict[str, int]:
    """dynamo's graph-break reasons so far."""
    from torch._dynamo.utils import counters

    return {str(k)[:300]: int(v) for k, v in counters.get("graph_break", {}).items()}


def throughput_lines(sec: dict) -> list[str]:
    if not sec.get("results"):
        return []
    lines = [f"{'batch':>6s} {'method':14s} {'mode':9s} {'img/s':>10s} {'alone img/s':>12s} {'overhead':>9s}"]
    for r in sec["results"]:
        alone = f"{r['model_alone_img_s']:12.0f}" if r["model_alone_img_s"] is not None else f"{'-':>12s}"
        over = f"{r['overhead_pct']:8.1f}%" if r["overhead_pct"] is not None else f"{'-':>9s}"
        lines.append(f"{r['batch']:6d} {r['method']:14s} {r['mode']:9s} {r['img_s']:10.0f} {alone} {over}")
    return lines


# -- the device-side mix at ImageNet size ----------------------------------------------------------

#: (row name, mixer) of the device-mix section: per-sample LMix, and timm's recipe with LMix in
#: CutMix's place (a per-sample 50/50 switch with Mixup), as ``--mix-on device`` runs them.
DEVICE_MIXERS = (
    ("lmix", lambda: lmix.create_mixer("lmix", seed=0)),
    ("mixup+lmix sample", lambda: lmix.create_mixer("mixup+lmix", mode="sample", seed=0)),
)


def _imagenet_model(name: str, device: torch.device) -> torch.nn.Module:
    """torchvision's ResNet-50 (1000 classes) on a GPU; a tiny lmix model for ``--smoke``."""
    torch.manual_seed(0)
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50(num_classes=1000)
    else:
        model = lmix.create_model(name, num_classes=1000, in_channels=3, width=4)
    return model.to(device).to(memory_format=torch.channels_last)


def section_device_mix(sec: dict, ctx: Context) -> None:
    """The whole step of a ResNet-50 at 224 with the batch mixed on the device, against the model alone.

    What ``--mix-on device`` costs: the mixer's call (per-sample Fourier masks for the whole batch)
    and the mixed loss inside the training step, timed in interleaved windows with the model's own
    step on the same (normalised, channels_last) batch; plus the mixer's call alone.
    """
    device, cfg = ctx.device, ctx.cfg
    name, batch, side = cfg.mix224
    autocast = autocast_for(device)
    sec.update(model=name, batch=batch, image=f"3x{side}x{side}", results=[], errors=[])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, side, side, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), generator=g).to(device)
    model = _imagenet_model(name, device)
    opt = make_optimizer(model, device)

    def alone(i: int) -> None:
        model_step(model, opt, x, y, autocast=autocast)

    steps, _ = cfg.window(alone, device)
    for label, make in DEVICE_MIXERS:
        try:
            mixer = make()

            def whole(i: int, mixer=mixer) -> None:
                train_step(model, mixer, opt, x, y, autocast=autocast)

            def mix_only(i: int, mixer=mixer) -> None:
                mixer(x, y)

            cfg.window(whole, device)
            secs = time_interleaved(
                {"whole": whole, "alone": alone, "mix": mix_only}, steps=steps, windows=cfg.windows, device=device
            )
            row = result_row(batch, label, "eager", secs["whole"], secs["alone"], steps, "eager model alone")
            row["mix_ms"] = 1e3 * statistics.median(secs["mix"])
            sec["results"].append(row)
        except Exception as err:  # noqa: BLE001
            sec["errors"].append({"method": label, **_short_error(err)})
        ctx.write()
    free(device)
    if sec["errors"]:
        sec["status"] = "partial"


def device_mix_lines(sec: dict) -> list[str]:
    if not sec.get("results"):
        return []
    lines = [f"device mix, {sec['model']} at {sec['image']}, batch {sec['batch']}:"]
    for r in sec["results"]:
        over = f"{r['overhead_pct']:+.1f}%" if r["overhead_pct"] is not None else "-"
        lines.append(
            f"  {r['method']:18s} step {r['img_s']:9.0f} img/s, model alone {r['model_alone_img_s']:9.0f} img/s "
            f"({over}); the mix alone {r['mix_ms']:.2f} ms"
        )
    return lines


# -- reduced Table 4 (benchmarks/gpu_table4.py) ---------------------------------------------------


def section_table4(sec: dict, ctx: Context) -> None:
    """The paper's Table 4 config, methods x seeds, for as many epochs as a probe says fit."""
    paper_epochs, paper_milestones, config_path = table4.paper_schedule()
    work = ctx.work_dir / "table4"
    shutil.rmtree(work, ignore_errors=True)  # our own scratch folder from an earlier call
    work.mkdir(parents=True)
    data_root = _table4_data(sec, ctx, work)
    if data_root is None:
        return
    jobs = ctx.args.jobs or min(ctx.cfg.table4_jobs, len(table4.METHODS) * len(ctx.cfg.table4_seeds))
    sec.update(
        config=f"configs/paper/{config_path.name}",
        data_root=str(data_root),
        paper_epochs=paper_epochs,
        paper_milestones=paper_milestones,
        jobs=jobs,
        runs=[],
    )
    sweep = _table4_sweep(ctx, config_path, data_root, work, jobs)
    plan = _plan_epochs(sec, ctx, data_root, _probe(sec, ctx, sweep, config_path))
    if plan["epochs"] < 1:
        sec.update(status="skipped", reason=f"not one epoch fits: {plan}")
        return
    epochs = plan["epochs"]
    milestones = table4.scale_milestones(paper_milestones, paper_epochs, epochs)
    sec.update(epochs=epochs, milestones=milestones)
    grid = {"method": list(table4.METHODS), "seed": plan["seeds"]}
    runs = sweep.runs("runs", grid, epochs=epochs, milestones=milestones)

    def record(outcome: RunOutcome) -> None:
        sec["runs"].append(table4.outcome_row(outcome))
        ctx.write()

    try:
        sweep.train(runs, jobs, record)
    except DeadlineReached:
        sec["status"] = "timeout"
        raise
    finally:
        sec["runs"] = table4.complete_rows(sec["runs"], runs)
        sec["means"] = table4.means(sec["runs"])
    if any(r["status"] != "ok" for r in sec["runs"]):
        sec["status"] = "partial"


def _table4_sweep(ctx: Context, config_path: Path, data_root: Path, work: Path, jobs: int) -> table4.Table4Sweep:
    """The packaged config with this machine's settings over it (and the smoke run's tiny model)."""
    cfg = ctx.cfg
    # checkpoint_every: only the last epoch's checkpoint (always written)
    base = {"data_root": str(data_root), "device": str(ctx.device), "progress": False, "eval_train": 0}
    base["checkpoint_every"] = 10**6
    if ctx.args.smoke:
        base.update(model=cfg.model, width=cfg.model_kwargs["width"], batch_size=cfg.table4_batch)
    threads = 1 if ctx.args.smoke else max(1, available_cpus() // jobs)
    return table4.Table4Sweep(config_path, base, work, threads)


def _probe(sec: dict, ctx: Context, sweep: table4.Table4Sweep, config_path: Path) -> float:
    """The slowest job's training img/s with every job running (one short epoch each)."""
    cfg, jobs = ctx.cfg, sec["jobs"]
    batch = cfg.table4_batch or int(load_yaml(config_path)["batch_size"])
    t0 = time.perf_counter()
    rates = sweep.probe(jobs, cfg.probe_steps * batch)
    sec["probe"] = {"steps": cfg.probe_steps, "batch": batch, "seconds": time.perf_counter() - t0, "jobs": jobs}
    sec["probe"].update(per_job_img_s=rates, aggregate_img_s=sum(rates))
    ctx.write()
    return min(rates)


def _table4_data(sec: dict, ctx: Context, work: Path) -> Path | None:
    """Fashion-MNIST's folder (a tiny fake one for ``--smoke``); None when the section is skipped."""
    if ctx.args.smoke:
        table4.write_fake_fashion_mnist(work / "smoke-data", n_train=64, n_test=32)
        return work / "smoke-data"
    data_root = Path(ctx.args.data_root)
    try:
        resolve_root("fashion_mnist", data_root)
    except FileNotFoundError as err:
        sec.update(status="skipped", reason=f"{err} (docs/results-gpu.md says where to copy it)")
        return None
    return data_root


def _plan_epochs(sec: dict, ctx: Context, data_root: Path, rate: float) -> dict[str, Any]:
    """The epochs that fit at the probe's rate with every job running; fewer seeds only when not one does."""
    n_train = len(load_tensors("fashion_mnist", root=data_root, train=True))
    n_eval = len(load_tensors("fashion_mnist", root=data_root, train=False))
    seeds = list(ctx.cfg.table4_seeds)
    for n_seeds in range(len(seeds), 0, -1):
        runs = len(table4.METHODS) * n_seeds
        plan = table4.plan_epochs(
            available_s=ctx.budget.remaining() - ctx.budget.reserve_s,
            img_s_per_run=rate,
            n_train=n_train,
            n_eval=n_eval,
            runs=runs,
            jobs=sec["jobs"],
            run_overhead_s=ctx.cfg.run_overhead_s,
            max_epochs=ctx.cfg.max_epochs,
        )
        if ctx.args.table4_epochs:
            plan.update(epochs=ctx.args.table4_epochs, forced=True)
        if plan["epochs"] >= 1:
            break
    sec["plan"] = plan = {**plan, "img_s_per_run": rate, "seeds": seeds[:n_seeds], "runs": runs}
    return plan


# -- the sections, the targets and the final table -------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A timed section: ``run(sec, ctx)`` fills its JSON entry ``sec``; ``lines(sec)`` its part of the table."""

    name: str
    run: Callable[[dict, Context], None]
    estimate: Callable[[Settings], float]  # seconds it needs at least; skipped when they do not fit
    lines: Callable[[dict], list[str]] = lambda sec: []


# In priority order. A new section: its function, and one line here.
SECTIONS = (
    Section("environment", section_environment, lambda cfg: cfg.estimate["environment"], environment_lines),
    Section("sync_check", section_sync_check, lambda cfg: cfg.estimate["sync_check"], sync_check_lines),
    Section(
        "throughput",
        section_throughput,
        lambda cfg: cfg.estimate["eager_config"] * len(SPEED_METHODS) * len(cfg.speed_batches),
        throughput_lines,
    ),
    Section("device_mix", section_device_mix, lambda cfg: cfg.estimate["device_mix"], device_mix_lines),
    Section("table4", section_table4, lambda cfg: cfg.estimate["table4_min"], table4.table_lines),
)


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/FAIL/SKIP of the targets (docs/results-gpu.md) from the throughput results (SKIP off a GPU)."""
    rows = report["sections"].get("throughput", {}).get("results", [])
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
    goal = TARGETS["device_mix_pct"]
    target = {
        "name": "T4",
        "what": f"per-sample LMix mixed on the device within {goal:.0f}% of a ResNet-50 step at 224",
    }
    rows = report["sections"].get("device_mix", {}).get("results", [])
    row = next((r for r in rows if r["method"] == "lmix" and r["overhead_pct"] is not None), None)
    if row is None or not on_gpu:
        target.update(status="SKIP", reason="not measured" if on_gpu else "not on a GPU")
    else:
        target.update(status="PASS" if row["overhead_pct"] <= goal else "FAIL", value=row["overhead_pct"])
    out.append(target)
    return out


def format_table(report: dict[str, Any]) -> str:
    """The table printed last: each section's status and time, each section's lines, the targets."""
    meta, secs = report["meta"], report["sections"]
    lines = [f"bench_gpu: {meta['device']}, {meta['elapsed_s']:.0f} s of {meta['deadline_s']:.0f}"]
    for section in SECTIONS:
        sec = secs.get(section.name, {"status": "not reached"})
        extra = sec.get("reason") or sec.get("error") or ""
        lines.append(f"  {section.name:12s} {sec['status']:8s} {sec.get('seconds', 0):6.1f} s  {extra[:100]}")
    for section in SECTIONS:
        lines += section.lines(secs.get(section.name, {}))
    for t in report.get("targets", []):
        value = f" (measured {t['value']:,.1f})" if "value" in t else f" ({t.get('reason', '')})"
        lines.append(f"{t['name']} {t['status']:4s} {t['what']}{value}")
    return "\n".join(lines)


# -- driver ----------------------------------------------------------------------------------------


def run_section(report: dict, section: Section, ctx: Context) -> None:
    """Run one section if its estimate fits the budget; record its status, time and any error."""
    estimate_s = section.estimate(ctx.cfg)
    sec: dict[str, Any] = {"status": "running", "estimate_s": estimate_s}
    report["sections"][section.name] = sec
    if not ctx.budget.fits(estimate_s):
        left = max(0.0, ctx.budget.remaining())
        sec.update(status="skipped", reason=f"deadline: {left:.0f} s left, the section needs about {estimate_s:.0f} s")
        ctx.write()
        return
    ctx.write()
    t0 = time.monotonic()
    try:
        section.run(sec, ctx)
        if sec["status"] == "running":
            sec["status"] = "ok"
    except DeadlineReached as err:
        sec.update(status="timeout", reason=str(err))
    except Exception as err:  # noqa: BLE001 - the next sections still run
        sec.update(status="error", **_short_error(err), traceback=traceback.format_exc()[-4000:])
    finally:
        sec["seconds"] = time.monotonic() - t0
        ctx.write()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in SECTIONS]
    p = argparse.ArgumentParser(
        description="The GPU check of lmix: speed, sync-freedom and a reduced Table 4 (docs/results-gpu.md)."
    )
    p.add_argument("--out", default="runs/bench_gpu", help="folder for bench_gpu.json (default: runs/bench_gpu)")
    p.add_argument(
        "--data-root", default=str(REPO / "gpu-data"), help="Fashion-MNIST's folder or its parent (default: gpu-data)"
    )
    p.add_argument("--deadline-s", type=float, default=360.0, help="wall-clock budget of the whole call (default 360)")
    p.add_argument("--smoke", action="store_true", help="every section on the CPU with tiny sizes (CI)")
    p.add_argument("--jobs", type=int, default=0, help="Table 4 job processes (default: one per run, at most 10)")
    p.add_argument("--table4-epochs", type=int, default=0, help="force this many Table 4 epochs (default: what fits)")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode on the GPU (default: default)")
    p.add_argument("--work-dir", default=None, help="scratch folder of the Table 4 runs (default: a temporary one)")
    p.add_argument("--sections", default=",".join(names), help="comma-separated subset of " + ", ".join(names))
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(names)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(names)}")
    if args.deadline_s <= 0 or args.jobs < 0 or args.table4_epochs < 0:
        p.error("--deadline-s must be > 0, --jobs and --table4-epochs >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # tiny ops on a shared CPU run many times slower when OpenMP threads contend
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("bench_gpu: no CUDA device; use --smoke for the CPU run", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    cfg = SMOKE if args.smoke else GPU
    budget = Budget(args.deadline_s, reserve_s=2.0 if args.smoke else 8.0)
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

    wanted = args.sections.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as scratch:
        ctx = Context(args, device, cfg, budget, write, Path(args.work_dir or scratch))
        ctx.keep_s = cfg.table4_keep_s if "table4" in wanted else 0.0
        _run_sections(report, [s for s in SECTIONS if s.name in wanted], ctx)
    try:
        print(format_table(report), flush=True)
    except Exception as err:  # noqa: BLE001 - the JSON is written; never lose it to a formatting slip
        print(f"bench_gpu: could not format the table ({_short_error(err)['error']}); see the JSON", flush=True)
    print(f"full results: {out / 'bench_gpu.json'}")
    bad = [n for n, s in report["sections"].items() if s["status"] in ("error", "timeout")]
    return 1 if bad else 0


def _run_sections(report: dict, sections: list[Section], ctx: Context) -> None:
    """The sections in order under an alarm at the deadline (less the reserve for the final writes)."""
    old = signal.signal(signal.SIGALRM, _raise_deadline)
    signal.setitimer(signal.ITIMER_REAL, max(0.1, ctx.budget.deadline_s - ctx.budget.reserve_s))
    try:
        for section in sections:
            run_section(report, section, ctx)
            free(ctx.device)
    except DeadlineReached:  # the alarm went off between two sections' own handlers
        for sec in report["sections"].values():
            if sec["status"] == "running":
                sec["status"] = "timeout"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        report["targets"] = check_targets(report)
        ctx.write()


if __name__ == "__main__":
    sys.exit(main())
