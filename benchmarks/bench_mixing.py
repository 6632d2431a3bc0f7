"""Speed of the lmix mixing core against an FMix-reference-style sampler, torchvision v2 and timm.

One process; every measurement is the median of ``--repeats`` timed calls after ``--warmup``
untimed ones. Two sections:

(a) Fourier masks per second: ``lmix.fourier_masks`` on a batch of ``--mask-batch`` masks
    (per-sample lam, k = 0 and k = 1) against ``reference_fmix_mask``, a numpy sampler written
    from the published FMix algorithm that makes one mask per call (as the FMix reference code
    does). One timed reference call makes ``--mask-batch`` masks one after the other, so that
    both sides produce the same number of masks per timed call.
(b) Milliseconds per call to mix a batch: every registered lmix mixer in each of its modes,
    ``lmix+mixup``, torchvision ``transforms.v2.MixUp``/``CutMix`` and ``timm.data.Mixup``
    (batch and elem modes; skipped with a note when timm is not installed).
(c) Milliseconds per collate call with timm's recipe ``--mixup 0.8 --cutmix 1.0`` (per-sample
    or per-batch switch with probability 0.5, label smoothing 0.1) and LMix in CutMix's place:
    ``lmix.integrations.timm.FastCollateMixup`` against timm's ``FastCollateMixup``, in elem and
    batch mode, plus lmix with LMix alone, timm's plain ``fast_collate`` (no mixing) and lmix's
    ``mix_on="device"`` collate (which leaves the mixing to the device), on a list of
    ``--collate-shapes`` uint8 (C, H, W) numpy images and int labels, as timm's prefetcher loader
    hands them over. Skipped with a note when timm is not installed.
(d) Milliseconds per call of the torchvision v2 transforms ``lmix.transforms.LMix``, ``FMix``,
    ``MixUp``, ``CutMix`` (per sample, and per batch) against torchvision's ``v2.MixUp`` /
    ``v2.CutMix`` on an ``--integration-shape`` float batch with int labels.

Peers' settings: torchvision MixUp/CutMix ``alpha=1, num_classes=10`` (one lam per batch, the
partner is the batch rolled by one); timm Mixup ``label_smoothing=0, num_classes=10`` once with
its default ``mixup_alpha=1, cutmix_alpha=0`` (Mixup) and once with ``mixup_alpha=0,
cutmix_alpha=1`` (CutMix). timm mixes the input tensor in place and its elem mode loops over
the batch in Python; the same input tensor is passed on every call (no copy is timed for it).
All peers also build (B, 10) one-hot targets, lmix returns ``labels_a, labels_b, lam``.

Targets, checked in every column:
  T1 per-sample LMix masks (k = 1) >= 6x the reference per mask at 32x32;
  T2 the same >= 4x at 224x224;
  T3 per-batch LMix within 2x of torchvision CutMix (ms per call), at every batch shape;
  T4 per-sample LMix at least 2x faster than timm's elem mode (the faster of its Mixup and
     CutMix configurations), at every batch shape.
  Collate (section (c)), at images of at most 64x64: T5 lmix's elem switch and T6 lmix with
  LMix alone at least 2x faster than timm's elem switch; at larger images: T7 lmix's elem
  switch within 2x of timm's, T8 lmix's batch switch no slower than timm's; at every shape:
  T9 the ``mix_on="device"`` collate within 10% of timm's plain ``fast_collate``.

Examples:
    python benchmarks/bench_mixing.py --threads 1 2 --json bench.json
    python benchmarks/bench_mixing.py --device cpu cuda     # adds a GPU column
    python benchmarks/bench_mixing.py --quick                # smoke test, seconds
    python benchmarks/bench_mixing.py --threads 1 --clock cpu --only masks collate
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

import lmix
from lmix.mixing.registry import accepted_params, mixer_class

NUM_CLASSES = 10
DECAY = 3.0
REFERENCE = "FMix reference-style (numpy)"


# -- the FMix reference algorithm, one mask per call -------------------------------------------


def reference_fmix_mask(lam: float, shape: tuple[int, int], decay: float, rng: np.random.Generator) -> np.ndarray:
    """One FMix mask, following the published algorithm step by step (numpy, float64).

    Written from the FMix paper's description (Harris et al. 2020, section 3 and its
    reference implementation's structure): everything, the frequency grid included, is
    computed on every call, as the reference does. The complex noise is taken on the last axis
    (the correct, isotropic form; the reference code's axis slip does not change its cost).

    Args:
        lam: share of ones, in [0, 1].
        shape: (H, W).
        decay: exponent of the 1 / f low-pass.
        rng: numpy random generator.

    Returns:
        (H, W) float64 mask of 0 and 1 with ``round(lam * H * W)`` ones.
    """
    h, w = shape
    # Radial frequency of the half spectrum that irfftn expects.
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fy * fy + fx * fx)
    # Complex Gaussian noise scaled by 1 / max(f, 1 / max(H, W)) ** decay.
    scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay
    noise = rng.standard_normal((h, w // 2 + 1, 2))
    spectrum = scale * (noise[..., 0] + 1j * noise[..., 1])
    grey = np.real(np.fft.irfftn(spectrum, s=(h, w), axes=(0, 1)))
    # Normalise to [0, 1] as the reference does (monotone, so it does not change the mask).
    grey = grey - grey.min()
    grey = grey / grey.max()
    # Top-n binarisation through a full argsort.
    order = grey.reshape(-1).argsort()[::-1]
    num = int(round(lam * h * w))
    mask = np.zeros(h * w)
    mask[order[:num]] = 1.0
    return mask.reshape(h, w)


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """Where a measurement runs: a device and a number of torch intra-op threads."""

    device: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.device}/{self.threads}t" if self.device == "cpu" else self.device


@dataclass
class Result:
    section: str  # "masks" or "mix"
    case: str  # "32x32" or "128x3x32x32"
    method: str
    column: str
    median_s: float
    calls: int
    items_per_call: int
    note: str = ""

    @property
    def value(self) -> float:
        """masks per second (section masks) or milliseconds per call (section mix)."""
        if self.section == "masks":
            return self.items_per_call / self.median_s
        return self.median_s * 1e3


@dataclass
class Target:
    name: str
    description: str
    column: str
    status: str  # PASS, FAIL or SKIP
    measured: str
    details: dict[str, Any] = field(default_factory=dict)


#: The clock of ``time_calls``: wall time (default) or, with ``--clock cpu``, this process's CPU
#: time, which other processes on shared cores do not inflate (meaningful with one thread).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock: list[Callable[[], float]] = [time.perf_counter]


def time_calls(fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int, device: str) -> dict[str, float]:
    """Median time in seconds (``--clock``) of each of ``fns`` over ``repeats`` calls, after ``warmup`` calls.

    The calls are interleaved (one of each in turn), so that a change of machine load during the
    run (other processes on shared cores) hits every method alike and ratios stay fair.
    """
    clock = _clock[0]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            sync()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# -- the cases -------------------------------------------------------------------------------


def lmix_mixer_specs() -> list[tuple[str, dict[str, Any]]]:
    """(label, create_mixer kwargs) for every registered mixer in each of its modes, plus lmix+mixup."""
    specs: list[tuple[str, dict[str, Any]]] = []
    for name in lmix.list_mixers():
        if "mode" in accepted_params(mixer_class(name)):
            specs += [(f"lmix {name} mode=sample", {"name": name, "mode": "sample"})]
            specs += [(f"lmix {name} mode=batch", {"name": name, "mode": "batch"})]
        else:
            specs.append((f"lmix {name}", {"name": name}))
    specs.append(("lmix lmix+mixup p=0.5", {"name": "lmix+mixup"}))
    return specs


def peer_callables(device: str) -> tuple[list[tuple[str, Callable]], list[str]]:
    """(label, callable(images, labels)) for torchvision and timm; notes on what was skipped."""
    from torchvision.transforms import v2

    peers: list[tuple[str, Callable]] = [
        ("torchvision MixUp", v2.MixUp(alpha=1.0, num_classes=NUM_CLASSES)),
        ("torchvision CutMix", v2.CutMix(alpha=1.0, num_classes=NUM_CLASSES)),
    ]
    notes = []
    try:
        from timm.data import Mixup as TimmMixup
    except ImportError:
        notes.append("timm is not installed (pip install -e '.[bench]'): timm rows and target T4 skipped")
    else:
        for mode in ("batch", "elem"):
            for label, mix_a, cut_a in (("mixup", 1.0, 0.0), ("cutmix", 0.0, 1.0)):
                fn = TimmMixup(
                    mixup_alpha=mix_a, cutmix_alpha=cut_a, mode=mode, label_smoothing=0.0, num_classes=NUM_CLASSES
                )
                peers.append((f"timm {label} mode={mode}", fn))
    return peers, notes


# -- running ---------------------------------------------------------------------------------


def run_masks(columns: Sequence[Column], sizes: Sequence[int], batch: int, repeats: int, warmup: int) -> list[Result]:
    results = []
    for size in sizes:
        case = f"{size}x{size}"
        lam_cpu = torch.rand(batch, generator=torch.Generator().manual_seed(size))
        lams = lam_cpu.tolist()
        rng = np.random.default_rng(0)

        def reference(size=size, lams=lams, rng=rng) -> None:
            for lam in lams:
                reference_fmix_mask(lam, (size, size), DECAY, rng)

        for col in columns:
            torch.set_num_threads(col.threads)
            gen = torch.Generator(device=col.device).manual_seed(0)
            lam = lam_cpu.to(col.device)
            fns: dict[str, Callable[[], object]] = {}
            for k in (0.0, 1.0):
                fns[f"lmix.fourier_masks k={k:g}"] = lambda lam=lam, k=k, gen=gen, size=size: lmix.fourier_masks(
                    lam, (size, size), decay=DECAY, k=k, generator=gen
                )
            # The reference is numpy on the CPU whatever the column; it is timed in every column,
            # interleaved with lmix, so that both see the same machine load.
            fns[REFERENCE] = reference
            medians = time_calls(fns, repeats=repeats, warmup=warmup, device=col.device)
            for method, sec in medians.items():
                note = "numpy, one mask per call" if method == REFERENCE else ""
                results.append(Result("masks", case, method, col.label, sec, repeats, batch, note))
    return results


def run_mixers(
    columns: Sequence[Column], shapes: Sequence[tuple[int, int, int, int]], repeats: int, warmup: int
) -> tuple[list[Result], list[str]]:
    results: list[Result] = []
    notes: list[str] = []
    for shape in shapes:
        case = "x".join(map(str, shape))
        for col in columns:
            torch.set_num_threads(col.threads)
            gen = torch.Generator(device=col.device).manual_seed(0)
            images = torch.rand(shape, generator=gen, device=col.device)
            labels = torch.randint(0, NUM_CLASSES, (shape[0],), generator=gen, device=col.device)
            cases: list[tuple[str, Callable]] = []
            for label, kwargs in lmix_mixer_specs():
                kwargs = dict(kwargs)
                mixer = lmix.create_mixer(kwargs.pop("name"), seed=0, **kwargs)
                cases.append((label, mixer))
            peers, peer_notes = peer_callables(col.device)
            notes += [n for n in peer_notes if n not in notes]
            for label, fn in peers:
                if label.startswith("timm") and "elem" in label and shape[0] % 2:
                    notes.append(f"timm elem mode needs an even batch: skipped at {case}")
                    continue
                cases.append((label, fn))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torchvision's beta-transforms notices
                medians = time_calls(
                    {label: (lambda fn=fn, x=images, y=labels: fn(x, y)) for label, fn in cases},
                    repeats=repeats,
                    warmup=warmup,
                    device=col.device,
                )
            for label, sec in medians.items():
                results.append(Result("mix", case, label, col.label, sec, repeats, shape[0]))
    return results, notes


#: Rows of section (c): label -> (which side, FastCollateMixup keywords); None: timm's ``fast_collate``.
COLLATE_ROWS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "timm elem switch": ("timm", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "elem"}),
    "lmix elem switch": ("lmix", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "elem"}),
    "lmix elem LMix alone": ("lmix", {"mixup_alpha": 0.0, "cutmix_alpha": 1.0, "mode": "elem"}),
    "timm batch switch": ("timm", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "batch"}),
    "lmix batch switch": ("lmix", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "batch"}),
    "timm fast_collate (no mixing)": ("timm", None),
    "lmix collate, mix_on=device": ("lmix", {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mode": "elem"}),
}


def collate_callables(num_classes: int) -> tuple[list[tuple[str, Callable]], list[str]]:
    """(label, collate_fn(batch)) for lmix's and timm's collates (``COLLATE_ROWS``); notes on what was skipped."""
    try:
        from timm.data import FastCollateMixup as TimmCollate
        from timm.data.loader import fast_collate

        from lmix.integrations.timm import FastCollateMixup
    except ImportError:
        return [], ["timm is not installed (pip install -e '.[bench]'): collate section and targets T5-T9 skipped"]
    fns: list[tuple[str, Callable]] = []
    for label, (side, kwargs) in COLLATE_ROWS.items():
        if kwargs is None:
            fns.append((label, fast_collate))
            continue
        kwargs = {**kwargs, "label_smoothing": 0.1, "num_classes": num_classes}
        if side == "timm":
            fns.append((label, TimmCollate(**kwargs)))
        else:
            mix_on = "device" if "mix_on=device" in label else "loader"
            fns.append((label, FastCollateMixup(**kwargs, method="lmix", seed=0, mix_on=mix_on)))
    return fns, []


def run_collate(
    columns: Sequence[Column], shapes: Sequence[tuple[int, int, int, int]], repeats: int, warmup: int
) -> tuple[list[Result], list[str]]:
    """Section (c): one collate call on a list of B uint8 (C, H, W) numpy images (CPU columns only)."""
    fns, notes = collate_callables(NUM_CLASSES)
    results: list[Result] = []
    for shape in shapes if fns else ():
        case = "x".join(map(str, shape))
        rng = np.random.default_rng(0)
        batch = [(rng.integers(0, 256, shape[1:], dtype=np.uint8), int(i % NUM_CLASSES)) for i in range(shape[0])]
        rows = fns
        if shape[0] % 2:
            notes.append(f"timm's FastCollateMixup needs an even batch: its rows skipped at {case}")
            rows = [(label, fn) for label, fn in fns if COLLATE_ROWS[label][1] is None or not label.startswith("timm")]
        for col in columns:
            if col.device != "cpu":
                continue  # a collate function runs in the DataLoader's CPU workers
            torch.set_num_threads(col.threads)
            medians = time_calls(
                {label: (lambda fn=fn, batch=batch: fn(batch)) for label, fn in rows},
                repeats=repeats,
                warmup=warmup,
                device="cpu",
            )
            for label, sec in medians.items():
                results.append(Result("collate", case, label, col.label, sec, repeats, shape[0]))
    return results, notes


def run_transforms(
    columns: Sequence[Column], shape: tuple[int, int, int, int], repeats: int, warmup: int
) -> list[Result]:
    """Section (d): lmix.transforms against torchvision's v2 MixUp / CutMix on one float batch."""
    from torchvision.transforms import v2

    from lmix import transforms as T

    case = "x".join(map(str, shape))
    results = []
    for col in columns:
        torch.set_num_threads(col.threads)
        gen = torch.Generator(device=col.device).manual_seed(0)
        images = torch.rand(shape, generator=gen, device=col.device)
        labels = torch.randint(0, NUM_CLASSES, (shape[0],), generator=gen, device=col.device)
        fns: dict[str, Callable] = {}
        for name in ("LMix", "FMix", "MixUp", "CutMix"):
            for mode in ("sample", "batch"):
                fns[f"lmix.transforms.{name} mode={mode}"] = getattr(T, name)(
                    num_classes=NUM_CLASSES, mode=mode, seed=0
                )
        fns["lmix.transforms.Cutout"] = T.Cutout(num_classes=NUM_CLASSES, seed=0)
        fns["torchvision v2.MixUp"] = v2.MixUp(alpha=1.0, num_classes=NUM_CLASSES)
        fns["torchvision v2.CutMix"] = v2.CutMix(alpha=1.0, num_classes=NUM_CLASSES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            medians = time_calls(
                {label: (lambda fn=fn, x=images, y=labels: fn(x, y)) for label, fn in fns.items()},
                repeats=repeats,
                warmup=warmup,
                device=col.device,
            )
        for label, sec in medians.items():
            results.append(Result("transforms", case, label, col.label, sec, repeats, shape[0]))
    return results


# -- targets and the table -------------------------------------------------------------------


def _find(results: Sequence[Result], section: str, case: str, method: str, column: str) -> Result | None:
    for r in results:
        if (r.section, r.case, r.method, r.column) == (section, case, method, column):
            return r
    return None


def check_targets(results: Sequence[Result], columns: Sequence[Column]) -> list[Target]:
    targets = []
    for col in columns:
        c = col.label
        for name, size, factor in (("T1", 32, 6.0), ("T2", 224, 4.0)):
            case = f"{size}x{size}"
            ours = _find(results, "masks", case, "lmix.fourier_masks k=1", c)
            ref = _find(results, "masks", case, REFERENCE, c)
            desc = f"per-sample LMix masks >= {factor:g}x the reference per mask at {case}"
            if ours is None or ref is None:
                targets.append(Target(name, desc, c, "SKIP", "not measured"))
                continue
            ratio = ours.value / ref.value
            status = "PASS" if ratio >= factor else "FAIL"
            targets.append(Target(name, desc, c, status, f"{ratio:.2f}x", {"ratio": ratio, "case": case}))
        mix_cases = sorted(
            {r.case for r in results if r.section == "mix"}, key=lambda s: math.prod(map(int, s.split("x")))
        )
        for case in mix_cases:
            ours = _find(results, "mix", case, "lmix lmix mode=batch", c)
            tv = _find(results, "mix", case, "torchvision CutMix", c)
            desc = f"per-batch LMix within 2x of torchvision CutMix at {case}"
            if ours is None or tv is None:
                targets.append(Target("T3", desc, c, "SKIP", "not measured"))
            else:
                ratio = ours.value / tv.value
                status = "PASS" if ratio <= 2.0 else "FAIL"
                targets.append(Target("T3", desc, c, status, f"{ratio:.2f}x the time", {"ratio": ratio, "case": case}))
            ours = _find(results, "mix", case, "lmix lmix mode=sample", c)
            elems = [
                r
                for r in results
                if (r.section, r.case, r.column) == ("mix", case, c) and r.method.endswith("mode=elem")
            ]
            desc = f"per-sample LMix >= 2x faster than timm elem mode (its faster config) at {case}"
            if ours is None or not elems:
                targets.append(Target("T4", desc, c, "SKIP", "timm not measured"))
            else:
                best = min(elems, key=lambda r: r.value)
                speedup = best.value / ours.value
                status = "PASS" if speedup >= 2.0 else "FAIL"
                targets.append(
                    Target(
                        "T4",
                        desc,
                        c,
                        status,
                        f"{speedup:.2f}x faster than {best.method}",
                        {"speedup": speedup, "case": case, "peer": best.method},
                    )
                )
        for case in dict.fromkeys(r.case for r in results if r.section == "collate" and r.column == c):
            targets += collate_targets(results, case, c)
    return targets


# (name, ours, peer, limit on ours / peer, description) of the collate targets, by image size.
SMALL_COLLATE_TARGETS = (
    ("T5", "lmix elem switch", "timm elem switch", 0.5, "lmix's elem switch >= 2x faster than timm's"),
    (
        "T6",
        "lmix elem LMix alone",
        "timm elem switch",
        0.5,
        "lmix with LMix alone >= 2x faster than timm's elem switch",
    ),
)
LARGE_COLLATE_TARGETS = (
    ("T7", "lmix elem switch", "timm elem switch", 2.0, "lmix's elem switch within 2x of timm's"),
    ("T8", "lmix batch switch", "timm batch switch", 1.0, "lmix's batch switch no slower than timm's"),
)
DEVICE_COLLATE_TARGET = (
    "T9",
    "lmix collate, mix_on=device",
    "timm fast_collate (no mixing)",
    1.1,
    "the mix_on=device collate within 10% of timm's fast_collate",
)


def collate_targets(results: Sequence[Result], case: str, column: str) -> list[Target]:
    """T5-T9 at one collate shape: T5/T6 for images of at most 64x64, T7/T8 above, T9 everywhere."""
    height = int(case.split("x")[2])
    rows = (*(SMALL_COLLATE_TARGETS if height <= 64 else LARGE_COLLATE_TARGETS), DEVICE_COLLATE_TARGET)
    out = []
    for name, ours_m, peer_m, limit, desc in rows:
        ours = _find(results, "collate", case, ours_m, column)
        peer = _find(results, "collate", case, peer_m, column)
        desc = f"{desc} at {case} uint8"
        if ours is None or peer is None:
            out.append(Target(name, desc, column, "SKIP", "not measured", {"case": case}))
            continue
        ratio = ours.value / peer.value
        status = "PASS" if ratio <= limit else "FAIL"
        out.append(Target(name, desc, column, status, f"{ratio:.2f}x the time", {"ratio": ratio, "case": case}))
    return out


# Speed-up rows of sections (c) and (d): (ours, peer, title); the cell is peer time / our time.
RATIO_ROWS = {
    "collate": [
        ("lmix elem switch", "timm elem switch", "speed-up, elem switch, lmix vs timm"),
        ("lmix elem LMix alone", "timm elem switch", "speed-up, lmix LMix alone vs timm elem switch"),
        ("lmix batch switch", "timm batch switch", "speed-up, batch switch, lmix vs timm"),
        ("lmix collate, mix_on=device", "timm fast_collate (no mixing)", "speed-up, device collate vs fast_collate"),
    ],
    "transforms": [
        ("lmix.transforms.LMix mode=sample", "torchvision v2.CutMix", "speed-up, LMix per sample vs tv CutMix"),
        ("lmix.transforms.MixUp mode=sample", "torchvision v2.MixUp", "speed-up, MixUp per sample vs tv MixUp"),
        ("lmix.transforms.CutMix mode=sample", "torchvision v2.CutMix", "speed-up, CutMix per sample vs tv CutMix"),
        ("lmix.transforms.MixUp mode=batch", "torchvision v2.MixUp", "speed-up, MixUp per batch vs tv MixUp"),
        ("lmix.transforms.CutMix mode=batch", "torchvision v2.CutMix", "speed-up, CutMix per batch vs tv CutMix"),
    ],
}


def format_table(results: Sequence[Result], columns: Sequence[Column], targets: Sequence[Target]) -> str:
    labels = [c.label for c in columns]
    lines: list[str] = []

    def row(first: str, cells: Sequence[str]) -> str:
        return f"{first:<44s}" + "".join(f"{cell:>12s}" for cell in cells)

    def section(title: str, name: str, fmt: str) -> None:
        cases = list(dict.fromkeys(r.case for r in results if r.section == name))
        if not cases:
            return
        lines.append(title)
        for case in cases:
            lines.append(row(case, labels))
            methods = list(dict.fromkeys(r.method for r in results if (r.section, r.case) == (name, case)))
            for method in methods:
                cells = []
                for lab in labels:
                    r = _find(results, name, case, method, lab)
                    cells.append(format(r.value, fmt) if r else "-")
                lines.append(row("  " + method, cells))
            if name in RATIO_ROWS:
                for ours_m, peer_m, title_r in RATIO_ROWS[name]:
                    cells = []
                    for lab in labels:
                        ours = _find(results, name, case, ours_m, lab)
                        peer = _find(results, name, case, peer_m, lab)
                        cells.append(f"{peer.value / ours.value:.2f}x" if ours and peer else "-")
                    lines.append(row("  " + title_r, cells))
            elif name == "masks":
                cells = []
                for lab in labels:
                    ours = _find(results, name, case, "lmix.fourier_masks k=1", lab)
                    ref = _find(results, name, case, REFERENCE, lab)
                    cells.append(f"{ours.value / ref.value:.2f}x" if ours and ref else "-")
                lines.append(row("  speed-up, LMix k=1 / reference", cells))
            else:
                for ours_m, peer_m, title_r in (
                    ("lmix lmix mode=batch", "torchvision CutMix", "time, LMix batch / torchvision CutMix"),
                    ("lmix lmix mode=sample", "timm mixup mode=elem", "speed-up, LMix sample vs timm mixup elem"),
                    ("lmix lmix mode=sample", "timm cutmix mode=elem", "speed-up, LMix sample vs timm cutmix elem"),
                ):
                    cells = []
                    for lab in labels:
                        ours = _find(results, name, case, ours_m, lab)
                        peer = _find(results, name, case, peer_m, lab)
                        if not (ours and peer):
                            cells.append("-")
                        elif title_r.startswith("time"):
                            cells.append(f"{ours.value / peer.value:.2f}x")
                        else:
                            cells.append(f"{peer.value / ours.value:.2f}x")
                    lines.append(row("  " + title_r, cells))
        lines.append("")

    section("(a) Fourier masks per second (higher is better)", "masks", ".0f")
    section("(b) milliseconds per call (lower is better)", "mix", ".2f")
    section("(c) milliseconds per collate call, uint8 numpy images (lower is better)", "collate", ".2f")
    section("(d) milliseconds per call, torchvision v2 transforms (lower is better)", "transforms", ".2f")
    lines.append("Targets")
    for t in targets:
        lines.append(f"  [{t.status}] {t.name} {t.column:<8s} {t.description}: {t.measured}")
    return "\n".join(lines)


def write_json_atomic(path: str, payload: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- command line ----------------------------------------------------------------------------


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1 or min(shape[2:]) < 2:
        raise argparse.ArgumentTypeError(f"expected BxCxHxW with B, C >= 1 and H, W >= 2, got {text!r}")
    return shape  # type: ignore[return-value]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


SECTIONS = ("masks", "mixers", "collate", "transforms")


def run_sections(
    skip: dict[str, bool],
    columns: Sequence[Column],
    sizes: Sequence[int],
    mask_batch: int,
    shapes: Sequence[tuple[int, int, int, int]],
    collate_shapes: Sequence[tuple[int, int, int, int]],
    integration_shape: tuple[int, int, int, int],
    *,
    repeats: int,
    warmup: int,
) -> tuple[list[Result], list[str]]:
    """Run every section not skipped; (results, notes)."""
    results: list[Result] = []
    notes: list[str] = []
    if not skip["masks"]:
        results += run_masks(columns, sizes, mask_batch, repeats, warmup)
    if not skip["mixers"]:
        mix_results, notes = run_mixers(columns, shapes, repeats, warmup)
        results += mix_results
    if not skip["collate"]:
        collate_results, collate_notes = run_collate(columns, collate_shapes, repeats, warmup)
        results += collate_results
        notes += collate_notes
    if not skip["transforms"]:
        results += run_transforms(columns, integration_shape, repeats, warmup)
    return results, notes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--repeats", type=_positive, default=None, help="timed calls per measurement (default 20; --quick 3)"
    )
    p.add_argument("--warmup", type=_non_negative, default=None, help="untimed calls first (default 3; --quick 1)")
    p.add_argument(
        "--threads",
        type=_positive,
        nargs="+",
        default=None,
        help="torch intra-op thread counts, one CPU column each (default: torch's current setting)",
    )
    p.add_argument(
        "--device",
        nargs="+",
        choices=("cpu", "cuda"),
        default=["cpu"],
        help="devices to measure; cuda adds a GPU column (default: cpu)",
    )
    p.add_argument(
        "--mask-sizes", type=_positive, nargs="+", default=None, help="square mask sizes (default 32 64 224)"
    )
    p.add_argument("--mask-batch", type=_positive, default=None, help="masks per lmix call (default 128; --quick 16)")
    p.add_argument(
        "--shapes",
        type=_shape,
        nargs="+",
        default=None,
        help="batch shapes BxCxHxW for section (b) (default 128x3x32x32 64x3x224x224)",
    )
    p.add_argument(
        "--collate-shapes",
        type=_shape,
        nargs="+",
        default=None,
        help="batch shapes BxCxHxW of section (c) (default 128x3x32x32 64x3x224x224; --quick 16x3x32x32)",
    )
    p.add_argument(
        "--integration-shape",
        type=_shape,
        default=None,
        help="batch shape BxCxHxW of section (d) (default 128x3x32x32; --quick 16x3x32x32)",
    )
    p.add_argument("--skip-masks", action="store_true", help="skip section (a)")
    p.add_argument("--skip-mixers", action="store_true", help="skip section (b)")
    p.add_argument("--skip-collate", action="store_true", help="skip section (c)")
    p.add_argument("--skip-transforms", action="store_true", help="skip section (d)")
    p.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=None,
        help="run only these sections (overrides the --skip-* flags)",
    )
    p.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall: wall time (default); cpu: this process's CPU time, not inflated by other processes on a\n"
        "shared machine (use with --threads 1 and CPU columns only)",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: few repeats, small batches")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if a target fails")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "cuda" in args.device and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to torch")
    if args.clock == "cpu" and "cuda" in args.device:
        parser.error("--clock cpu measures CPU time only: use the wall clock with --device cuda")
    quick = args.quick
    repeats = args.repeats or (3 if quick else 20)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    sizes = args.mask_sizes or [32, 64, 224]
    mask_batch = args.mask_batch or (16 if quick else 128)
    shapes = args.shapes or ([(16, 3, 32, 32), (8, 3, 224, 224)] if quick else [(128, 3, 32, 32), (64, 3, 224, 224)])
    integration_shape = args.integration_shape or ((16, 3, 32, 32) if quick else (128, 3, 32, 32))
    collate_shapes = args.collate_shapes or ([(16, 3, 32, 32)] if quick else [(128, 3, 32, 32), (64, 3, 224, 224)])
    default_threads = torch.get_num_threads()
    threads = args.threads or [default_threads]
    columns = [Column("cpu", t) for t in threads] if "cpu" in args.device else []
    if "cuda" in args.device:
        columns.append(Column("cuda", threads[0]))

    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "lmix": lmix.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_default_threads": default_threads,
        "threads": threads,
        "cuda_device": torch.cuda.get_device_name(0) if "cuda" in args.device else None,
        "repeats": repeats,
        "clock": args.clock,
        "warmup": warmup,
        "mask_batch": mask_batch,
        "integration_shape": list(integration_shape),
        "collate_shapes": [list(s) for s in collate_shapes],
        "quick": quick,
        "command": " ".join([os.path.basename(sys.argv[0] or "bench_mixing.py"), *(argv or sys.argv[1:])]),
    }
    print(
        f"lmix {meta['lmix']} | torch {meta['torch']} | numpy {meta['numpy']} | {meta['platform']} | "
        f"{meta['cpu_count']} CPUs | torch threads: default {default_threads}, measured {threads}"
        + (f" | GPU {meta['cuda_device']}" if meta["cuda_device"] else "")
    )
    clock_name = "wall time" if args.clock == "wall" else "process CPU time"
    print(
        f"median {clock_name} of {repeats} calls after {warmup} warm-up calls; "
        f"masks: batch of {mask_batch} per lmix call\n"
    )

    skip = {"masks": args.skip_masks, "mixers": args.skip_mixers}
    skip.update(collate=args.skip_collate, transforms=args.skip_transforms)
    if args.only:
        skip = {name: name not in args.only for name in SECTIONS}
    _clock[0] = CLOCKS[args.clock]
    try:
        results, notes = run_sections(
            skip, columns, sizes, mask_batch, shapes, collate_shapes, integration_shape, repeats=repeats, warmup=warmup
        )
    finally:
        _clock[0] = time.perf_counter
    torch.set_num_threads(default_threads)
    targets = check_targets(results, columns)
    print(format_table(results, columns, targets))
    for note in notes:
        print(f"note: {note}")
    if quick:
        print("note: --quick: too few repeats and too small batches for the targets to mean anything")
    cpu_cols = [c for c in columns if c.device == "cpu"]
    if len(cpu_cols) > 1:
        faster = {}
        for c in cpu_cols:
            faster[c.label] = sum(r.median_s for r in results if r.column == c.label and r.section == "mix")
            faster[c.label] += sum(
                r.median_s for r in results if r.column == c.label and r.method.startswith("lmix.fourier")
            )
        best = min(faster, key=faster.get)
        print(f"fastest thread setting over all lmix and peer timings: {best} (sum of medians {faster[best]:.3f} s)")
    if args.json:
        payload = {
            "meta": meta,
            "results": [{**asdict(r), "value": r.value} for r in results],
            "targets": [asdict(t) for t in targets],
            "notes": notes,
        }
        write_json_atomic(args.json, payload)
        print(f"wrote {args.json}")
    if args.strict and any(t.status == "FAIL" for t in targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
