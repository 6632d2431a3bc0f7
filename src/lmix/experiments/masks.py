"""Mask diagnostics (``lmix masks``): what LMix's high-frequency emphasis k does to the masks.

Masks are 1-D (sequences, size (L,)), 2-D (images, (H, W)) or 3-D (volumes, (D, H, W)). For each
configuration (CutMix boxes, FMix = LMix with ``k = 0``, LMix at each k; each at each lam) we draw
``n`` masks and measure, per mask:

* ``regions``: connected regions of the mask (its ones), face connectivity: neighbours share a
  side, i.e. differ by one along one axis (runs in 1-D, 4-connectivity in 2-D, 6 in 3-D);
* ``complement_regions``: connected regions of its complement (its zeros);
* ``boundary``: the share of neighbour pairs (the same neighbours) whose two elements differ, out
  of the ``sum_a (n_a - 1) N / n_a`` pairs (``L - 1`` in 1-D, ``H (W - 1) + (H - 1) W`` in 2-D;
  0: one flat mask; a checkerboard: 1);
* ``largest``: the largest region of the mask as a share of the mask's elements;
* ``largest_complement``: the same for the complement;
* ``high_freq``: the share of the mean-removed mask's power at radial frequencies above
  ``HIGH_FREQ`` cycles per element (detail finer than 8 elements);

and the radial power spectrum (mean over masks of ``|rfftn(mask - mean)|^2``, normalised to sum
1, per integer radius ``round(f * max(size))``). Beside the lam asked for, each configuration
reports the area its masks really keep (the ``lam`` a mixer returns with its batch): exactly
the lam asked for Fourier masks (rounded to an element), more for CutMix, whose box is clipped at
the border (about 0.68 for lam = 0.5 in 2-D). Every configuration draws its Fourier noise
from a generator seeded with the same ``seed``, so FMix and the LMix k's see the same noise:
differences between k's are k's effect, not sampling noise.

Connected components: one ``scipy.ndimage.label`` call per batch of masks (see
:func:`connected_components`); everything else is torch, vectorised over the batch. The largest
study one may ask for: :mod:`lmix.experiments.mask_limits`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmix._checks import is_integer
from lmix.errors import LmixValueError
from lmix.experiments.mask_limits import EXAMPLE_MASKS, configurations, limit_problem
from lmix.mixing.masks import boxes, cutmix_sides, fourier_masks, frequency_magnitude

__all__ = [
    "connected_components",
    "boundary_share",
    "radial_power",
    "mask_statistics",
    "cutmix_masks",
    "MaskStudy",
    "run_mask_study",
    "render_mask_study",
    "interval",
    "clipped_note",
    "study_json",
    "write_study",
    "FILES",
    "STATISTICS",
    "statistics",
    "HIGH_FREQ",
]

HIGH_FREQ = 0.125  # cycles per element: structure finer than 8 pixels (steps, voxels)
# spatial axes -> (what a mask covers, its elements, CutMix's box): the words of the outputs
_WORDS = {1: ("sequence", "step", "segment"), 2: ("image", "pixel", "box"), 3: ("volume", "voxel", "cuboid")}
# The most mask elements (masks x elements per mask) measured at once: bounds the memory of the
# labelling and the spectra for large masks (3-D) without changing how 2-D masks are grouped.
MEASURE_ELEMENTS = 1 << 20
# The most radii a spectrum line of the figure draws (log-spaced); masks.json keeps every radius.
PLOTTED_RADII = 1000


def kept_area(dims: int = 2) -> str:
    """What the ``kept area`` column is, for masks with ``dims`` spatial axes."""
    whole, element, _ = _WORDS[dims]
    return f"share of the {whole} a mask keeps (the sample's own {element}s)"


def statistics(dims: int = 2) -> dict[str, tuple[str, str]]:
    """Statistic name -> (column heading, explanation) for masks with ``dims`` (1, 2 or 3) spatial axes."""
    whole, element, _ = _WORDS[dims]
    if dims == 1:
        regions, complement = "runs of ones (maximal segments of the mask's ones)", "runs of the mask's zeros"
        boundary = "share of the L - 1 pairs of neighbouring steps that differ"
        largest = "longest run of the ones, share of the sequence"
        largest_complement = "longest run of the zeros, share of the sequence"
    else:
        connectivity = "4-connectivity" if dims == 2 else "6-connectivity: voxels that share a face"
        regions, complement = (
            f"connected regions of the mask's ones ({connectivity})",
            "connected regions of the mask's zeros",
        )
        boundary = f"share of {2 * dims}-neighbour {element} pairs that differ"
        largest = f"largest region of the ones, share of the {whole}"
        largest_complement = f"largest region of the zeros, share of the {whole}"
    return {
        "regions": ("regions (mask)", regions),
        "complement_regions": ("regions (complement)", complement),
        "boundary": ("boundary share", boundary),
        "largest": ("largest region", largest),
        "largest_complement": ("largest region (complement)", largest_complement),
        "high_freq": ("high-freq power", f"share of the mask's power above {HIGH_FREQ:g} cycles/{element}"),
    }


KEPT_AREA = kept_area(2)
# name -> (column heading, explanation), in the words of images (statistics(dims) for the others)
STATISTICS: dict[str, tuple[str, str]] = statistics(2)
_SHAPES = "(B, L), (B, H, W) or (B, D, H, W)"


# ---------------------------------------------------------------------------------------------
# per-mask measurements
# ---------------------------------------------------------------------------------------------
def connected_components(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Number and largest size of the face-connected components of the true elements of every mask.

    Face connectivity: two elements are neighbours when they differ by one along one axis (runs
    in 1-D, 4-connectivity in 2-D, 6-connectivity in 3-D). One ``scipy.ndimage.label`` call
    labels the whole batch as one array of one more axis, whose structuring element connects
    elements only within a mask (the cross ``generate_binary_structure(d, 1)`` in the middle
    plane of the batch axis), so no component spans two masks; labels are then assigned to their
    masks with ``np.unique``.

    Args:
        masks: (B, L), (B, H, W) or (B, D, H, W) bool.

    Returns:
        ``count`` (B,) int64: components per mask; ``largest`` (B,) int64: elements in each mask's
        largest component (0 for a mask without true elements).
    """
    import numpy as np
    from scipy import ndimage

    if not isinstance(masks, torch.Tensor) or not 2 <= masks.ndim <= 4 or masks.dtype != torch.bool:
        raise LmixValueError(f"masks must be a bool tensor of shape {_SHAPES}, got {_describe(masks)}")
    b, dims = masks.shape[0], masks.ndim - 1
    structure = np.zeros((3,) * (dims + 1), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(dims, 1)
    labels, num = ndimage.label(masks.cpu().numpy(), structure=structure)
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    if ids.size and ids[0] == 0:  # label 0 is the background (absent when every element is true)
        ids, first = ids[1:], first[1:]
    plane = first // math.prod(masks.shape[1:])  # each component lies in one mask: the one of its first element
    size = np.bincount(flat, minlength=num + 1)[ids]
    count = np.bincount(plane, minlength=b)
    largest = np.zeros(b, dtype=np.int64)
    np.maximum.at(largest, plane, size)
    return torch.from_numpy(count.astype(np.int64)), torch.from_numpy(largest)


def _spatial(masks: object) -> tuple[int, ...]:
    """The spatial axes of a (B, *size) batch of masks, 1 to 3 of them."""
    if not isinstance(masks, torch.Tensor) or not 2 <= masks.ndim <= 4:
        raise LmixValueError(f"masks must be a tensor of shape {_SHAPES}, got {_describe(masks)}")
    return tuple(range(1, masks.ndim))


def boundary_share(masks: torch.Tensor) -> torch.Tensor:
    """(B,) float64 share of the face-neighbour pairs of each (B, *size) mask whose elements differ.

    The pairs: ``sum_a (n_a - 1) N / n_a`` over the axes of sides ``n_a`` (``N`` elements):
    ``L - 1`` in 1-D, ``H (W - 1) + (H - 1) W`` in 2-D.
    """
    axes = _spatial(masks)
    m = masks.bool()
    numel = math.prod(m.shape[1:])
    differ, pairs = 0, 0
    for axis in axes:
        n = m.shape[axis]
        differ = differ + (m.narrow(axis, 1, n - 1) != m.narrow(axis, 0, n - 1)).flatten(1).sum(1)
        pairs += (n - 1) * (numel // n)
    return differ.double() / max(pairs, 1)


def _radius(size: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(*size[:-1], size[-1]//2+1) integer radius ``round(f * max(size))`` of each rfftn bin."""
    return torch.round(frequency_magnitude(size, device=device) * max(size)).long()


def radial_power(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per mask, the power of the mean-removed mask per integer radius, and its share above ``HIGH_FREQ``.

    Args:
        masks: (B, L), (B, H, W) or (B, D, H, W) bool or float.

    Returns:
        ``power`` (B, R) float64, R = ``max(size) // 2 + 1``: summed ``|rfftn|^2`` of the bins at
        radius r (bins beyond the Nyquist sphere are left out), and ``high`` (B,) float64: the
        share of the total power at ``f > HIGH_FREQ`` (0 for a constant mask).
    """
    axes = _spatial(masks)
    size = tuple(masks.shape[1:])
    x = masks.double()
    x = x - x.mean(dim=axes, keepdim=True)
    spec = torch.fft.rfftn(x, dim=axes).abs().square()  # (B, *size[:-1], n//2+1)
    # rfftn keeps half of the spectrum: the other half mirrors every bin of the last axis but the
    # self-conjugate ones (0, and n/2 for an even last side n).
    n = size[-1]
    weight = torch.full((n // 2 + 1,), 2.0, dtype=torch.float64, device=masks.device)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    spec = spec * weight
    radius = _radius(size, masks.device)
    n_bins = max(size) // 2 + 1
    keep = (radius < n_bins).flatten()
    flat = spec.flatten(1)[:, keep]
    power = torch.zeros(spec.shape[0], n_bins, dtype=torch.float64, device=masks.device)
    power.scatter_add_(1, radius.flatten()[keep].expand(spec.shape[0], -1), flat)
    total = spec.flatten(1).sum(1)
    f = frequency_magnitude(size, device=masks.device).flatten()
    high = spec.flatten(1)[:, f > HIGH_FREQ].sum(1) / total.clamp_min(1e-300)
    return power, torch.where(total > 0, high, torch.zeros_like(high))


def mask_statistics(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every statistic of :func:`statistics` for each (B, *size) mask (1 to 3 spatial axes), plus ``power`` (B, R)."""
    _spatial(masks)
    m = masks.bool()
    hw = math.prod(m.shape[1:])
    regions, largest = connected_components(m)
    comp_regions, comp_largest = connected_components(~m)
    power, high = radial_power(m)
    return {
        "regions": regions.double(),
        "complement_regions": comp_regions.double(),
        "boundary": boundary_share(m),
        "largest": largest.double() / hw,
        "largest_complement": comp_largest.double() / hw,
        "high_freq": high,
        "power": power,
    }


def cutmix_masks(
    lam: torch.Tensor, size: tuple[int, ...], *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix masks as :class:`lmix.mixing.CutMix` builds them for a given lam, and the area each keeps.

    The box (a segment in 1-D, a cuboid in 3-D) has ``int(n * (1 - lam) ** (1 / d))`` elements
    along each axis of side ``n`` (``d`` axes: ``sqrt(1 - lam)`` in 2-D) around a uniform centre,
    clipped at the border; the mask is 1 outside it (the kept part).

    Args:
        lam: (B,) areas in (0, 1).
        size: (L,), (H, W) or (D, H, W).
        generator: draws the centres, one axis after the other.

    Returns:
        ((B, 1, *size) float32 masks, (B,) float32 kept share: the ``lam`` CutMix returns with its
        batch, larger than ``lam`` where the box is clipped).
    """
    sides = tuple(cutmix_sides(lam, size))  # CutMix's own sides
    centres = tuple(torch.randint(0, n, (lam.shape[0],), generator=generator) for n in size)
    return boxes(centres, sides, tuple(size))


def _describe(x: object) -> str:
    return f"{x.dtype} of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One configuration: its label, method (cutmix, fmix, lmix), k, the lam asked for and the statistics."""

    label: str
    method: str
    k: float | None
    lam: float
    values: dict[str, list[float]]  # statistic -> per-mask values
    spectrum: list[float]  # mean radial power, normalised to sum 1
    stats: dict[str, Any] = field(default_factory=dict)  # statistic -> Stats
    kept: Any = None  # Stats of the area each mask keeps (the mixer's exact lam)


@dataclass
class MaskStudy:
    """The settings and rows of one ``lmix masks`` run; ``size`` is (L,), (H, W) or (D, H, W)."""

    size: tuple[int, ...]
    ks: list[float]
    lams: list[float]
    n: int
    decay: float
    seed: int
    rows: list[Row]
    seconds: float = 0.0
    figures: list[str] = field(default_factory=list)

    @property
    def dims(self) -> int:
        """Spatial axes of the masks: 1 (sequences), 2 (images) or 3 (volumes)."""
        return len(self.size)


def size_text(size: Sequence[int]) -> str:
    """``length 256`` for a sequence, ``32x32`` for an image, ``16x32x32`` for a volume."""
    return f"length {size[0]}" if len(size) == 1 else "x".join(str(n) for n in size)


def _draw(
    method: str, k: float, lam: float, n: int, size: tuple[int, ...], decay: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, *size) bool masks and (n,) float64 the share of the mask each keeps (the mixer's lam)."""
    g = torch.Generator().manual_seed(seed)
    lam_t = torch.full((n,), lam, dtype=torch.float32)
    if method == "cutmix":
        masks, kept = cutmix_masks(lam_t, size, generator=g)
        return masks[:, 0].bool(), kept.double()
    masks = fourier_masks(lam_t, size, decay=decay, k=k, generator=g)[:, 0].bool()
    # A Fourier mask keeps exactly round(lam N) of its N elements.
    return masks, masks.double().mean(dim=tuple(range(1, masks.ndim)))


def run_mask_study(
    *,
    size: Sequence[int] = (32, 32),
    ks: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
    lams: Sequence[float] = (0.5,),
    n: int = 1000,
    decay: float = 3.0,
    seed: int = 0,
    chunk: int = 500,
) -> MaskStudy:
    """Draw ``n`` masks per configuration (CutMix, FMix = k 0, LMix at each k > 0; each lam) and measure them.

    Args:
        size: (L,) sequences, (H, W) images or (D, H, W) volumes, every side >= 2.
        ks: LMix emphasis values >= 0; 0 is FMix (always included).
        lams: mask areas in (0, 1).
        n: masks per configuration, >= 2 (for the intervals); the most masks and elements a
            study may ask for: :func:`lmix.experiments.mask_limits.limit_problem`.
        decay: the Fourier masks' low-pass decay (>= 0).
        seed: seed of every configuration's generator (the same noise for every k).
        chunk: masks measured at once (fewer where they hold more than ``MEASURE_ELEMENTS``
            elements together: bounds the memory at large sizes).
    """
    import time

    from lmix.experiments.report.stats import Stats

    if (
        isinstance(size, (str, bytes))
        or not isinstance(size, Sequence)
        or not 1 <= len(size) <= 3
        or not all(is_integer(s) and s >= 2 for s in size)
    ):
        raise LmixValueError(f"size must be 1 to 3 integers >= 2 ((L,), (H, W) or (D, H, W)), got {size!r}")
    size = tuple(int(s) for s in size)
    ks = sorted({float(k) for k in ks})
    if not ks or any(not math.isfinite(k) or k < 0 for k in ks):
        raise LmixValueError(f"k must be one or more numbers >= 0, got {ks!r}")
    lams = sorted({float(x) for x in lams})
    if not lams or any(not 0 < x < 1 for x in lams):
        raise LmixValueError(f"lam must be one or more numbers in (0, 1), got {lams!r}")
    if not is_integer(n) or n < 2:
        raise LmixValueError(f"n must be an integer >= 2 (masks per configuration), got {n!r}")
    if not math.isfinite(decay) or decay < 0:
        raise LmixValueError(f"decay must be a number >= 0, got {decay!r}")
    if not is_integer(seed) or not 0 <= seed < 2**64:  # what torch.Generator.manual_seed takes
        raise LmixValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    problem = limit_problem(size, n, configurations(ks, lams))
    if problem is not None:
        raise LmixValueError(problem)
    t0 = time.perf_counter()
    configs = [("cutmix", None, "CutMix")] + [
        ("fmix" if k == 0 else "lmix", k, "FMix (k=0)" if k == 0 else f"LMix k={k:g}") for k in sorted({0.0, *ks})
    ]
    names = list(statistics(len(size)))
    step = max(1, min(chunk, MEASURE_ELEMENTS // math.prod(size)))
    rows = []
    for lam in lams:
        for method, k, label in configs:
            masks, kept = _draw(method, 0.0 if k is None else k, lam, n, size, decay, seed)
            parts = [mask_statistics(masks[i : i + step]) for i in range(0, n, step)]
            values = {name: torch.cat([p[name] for p in parts]).tolist() for name in names}
            power = torch.cat([p["power"] for p in parts]).mean(0)
            spectrum = (power / power.sum().clamp_min(1e-300)).tolist()
            row = Row(label, method, k, lam, values, spectrum)
            row.stats = {name: Stats.of(vals) for name, vals in values.items()}
            row.kept = Stats.of(kept.tolist())
            rows.append(row)
    return MaskStudy(size, ks, lams, n, float(decay), seed, rows, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
# What each statistic can take. A 95% interval (mean +- t s / sqrt(n)) can reach beyond it, at
# small n or near a bound; the table clips it there (and says so).
_RANGES = {
    "kept_area": (0.0, 1.0),
    "regions": (0.0, math.inf),
    "complement_regions": (0.0, math.inf),
    "boundary": (0.0, 1.0),
    "largest": (0.0, 1.0),
    "largest_complement": (0.0, 1.0),
    "high_freq": (0.0, 1.0),
}


def interval(s: Any, name: str) -> tuple[float, float, bool]:
    """The 95% interval of the ``Stats`` ``s`` of statistic ``name`` (or ``kept_area``), clipped to what the
    statistic can take (shares in [0, 1], counts >= 0), and whether it was clipped."""
    lo, hi = _RANGES[name]
    low, high = s.mean - s.ci95, s.mean + s.ci95
    return max(low, lo), min(high, hi), low < lo or high > hi


def _ci(s: Any, digits: int, name: str) -> str:
    if s is None:
        return "-"
    if math.isnan(s.ci95):
        return f"{s.mean:.{digits}f}"
    low, high, _ = interval(s, name)
    return f"{s.mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _bar(s: Any, name: str) -> tuple[float, float]:
    """The error bar of the ``Stats`` ``s`` below and above its mean: the 95% half-width, clipped as :func:`interval`."""
    if math.isnan(s.ci95):
        return 0.0, 0.0
    low, high, clipped = interval(s, name)
    return (s.mean - low, high - s.mean) if clipped else (s.ci95, s.ci95)


def clipped_note(study: MaskStudy) -> str | None:
    """One line saying how many of the table's intervals are clipped to their statistic's range; None if none."""
    cells = [(r.kept, "kept_area") for r in study.rows] + [(r.stats[s], s) for r in study.rows for s in r.stats]
    clipped = sum(interval(st, name)[2] for st, name in cells if st is not None and not math.isnan(st.ci95))
    if not clipped:
        return None
    return (
        f"{clipped} of the {len(cells)} intervals reach beyond what their statistic can take and are clipped to it "
        f"(kept area and shares to [0, 1], region counts to >= 0): with n = {study.n} masks, mean +- t s / sqrt(n) "
        "is that wide."
    )


_DIGITS = {"regions": 2, "complement_regions": 2, "boundary": 4, "largest": 3, "largest_complement": 3, "high_freq": 4}


def table_lines(study: MaskStudy) -> list[str]:
    """The Markdown table: one row per configuration, mean [95% CI] per statistic.

    ``lam asked`` is the lam the masks were drawn for; ``kept area`` the share of the mask they
    keep, the exact lam a mixer reports (larger for CutMix, whose boxes are clipped at the border).
    Each interval is clipped to what its statistic can take (:func:`interval`, :func:`clipped_note`).
    """
    described = statistics(study.dims)
    names = list(described)
    lines = [
        "| masks | lam asked | kept area | " + " | ".join(described[s][0] for s in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for r in study.rows:
        lines.append(
            f"| {r.label} | {r.lam:g} | {_ci(r.kept, 3, 'kept_area')} | "
            + " | ".join(_ci(r.stats[s], _DIGITS[s], s) for s in names)
            + " |"
        )
    return lines


def render_mask_study(study: MaskStudy) -> str:
    """The study as Markdown: settings, the table, what each statistic is, the figures."""
    described = statistics(study.dims)
    out = [
        "# lmix masks",
        "",
        f"{study.n} masks per row, {size_text(study.size)}, decay {study.decay:g}, seed {study.seed} (the same Fourier noise "
        f"for FMix and every k); mean [95% CI] over the masks. {study.seconds:.1f} s.",
        "",
        *table_lines(study),
        "",
    ]
    note = clipped_note(study)
    if note is not None:
        out += [note, ""]
    out.append(
        f"- kept area: {kept_area(study.dims)}, the exact lam a mixer returns; CutMix keeps more than the lam "
        f"asked because its {_WORDS[study.dims][2]} is clipped at the border."
    )
    out += [f"- {heading}: {text}." for heading, text in described.values()]
    out.append("")
    if study.figures:
        out += [f"![{Path(f).stem}]({f})" for f in study.figures] + [""]
    return "\n".join(out)


def study_json(study: MaskStudy) -> dict[str, Any]:
    """Settings, and per row: the statistics (mean, std, n, ci95) and the normalised radial spectrum."""
    return {
        "size": list(study.size),
        "k": study.ks,
        "lam": study.lams,
        "n": study.n,
        "decay": study.decay,
        "seed": study.seed,
        "high_freq_cutoff": HIGH_FREQ,
        "seconds": study.seconds,
        "statistics": {
            "kept_area": kept_area(study.dims),
            **{s: d for s, (_, d) in statistics(study.dims).items()},
        },
        "rows": [
            {
                "label": r.label,
                "method": r.method,
                "k": r.k,
                "lam": r.lam,
                "kept_area": r.kept.to_dict() if r.kept else None,
                "stats": {s: (st.to_dict() if st else None) for s, st in r.stats.items()},
                "radial_spectrum": {  # cycles per image, or per sequence or volume
                    "radius_cycles_per_image": list(range(len(r.spectrum))),
                    "power_share": r.spectrum,
                },
            }
            for r in study.rows
        ],
        "figures": study.figures,
    }


def _save(fig: Any, path: Path) -> None:
    from lmix.experiments.io import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_statistics(study: MaskStudy, path: Path) -> None:
    """Each statistic against k (FMix at k = 0) with 95% CI bars per lam (clipped as in the table); CutMix dashed."""
    from matplotlib.figure import Figure

    described = statistics(study.dims)
    names = list(described)
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    axes = fig.subplots(2, 3).flatten()
    for ax, name in zip(axes, names):
        for i, lam in enumerate(study.lams):
            rows = [r for r in study.rows if r.lam == lam and r.method != "cutmix"]
            ks = [r.k for r in rows]
            bars = [_bar(r.stats[name], name) for r in rows]
            ax.errorbar(
                ks,
                [r.stats[name].mean for r in rows],
                yerr=[[down for down, _ in bars], [up for _, up in bars]],
                marker="o",
                ms=3,
                capsize=3,
                color=f"C{i}",
                label=f"FMix/LMix, lam={lam:g}",
            )
            cut = next(r for r in study.rows if r.lam == lam and r.method == "cutmix")
            ax.axhline(
                cut.stats[name].mean,
                color=f"C{i}",
                ls="--",
                lw=1,
                label=f"CutMix, lam={lam:g} (keeps {cut.kept.mean:.2f})",
            )
        ks = sorted({r.k for r in study.rows if r.k is not None})
        ax.set_xscale("symlog", linthresh=max(min([k for k in ks if k > 0], default=1.0), 1e-3))
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (0: FMix)")
        ax.set_title(described[name][0], fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Mask statistics against k: {study.n} masks of {size_text(study.size)} per point (mean, 95% CI)", fontsize=11
    )
    _save(fig, path)


def _plotted_radii(bins: int) -> list[int]:
    """The radii 1 .. bins - 1 a spectrum line draws: all of them, or ``PLOTTED_RADII`` log-spaced ones.

    Every radius of long sequences is too much for matplotlib: three lines of 100,000 radii took
    1.3 GB and 15 s, and at 500,000 radii Agg refuses to draw the path (OverflowError).
    """
    top = bins - 1
    if top <= PLOTTED_RADII:
        return list(range(1, bins))
    return sorted({round(top ** (i / (PLOTTED_RADII - 1))) for i in range(PLOTTED_RADII)})


def plot_spectra(study: MaskStudy, path: Path) -> None:
    """Radial power spectrum of the masks (share of power per radius), one line per configuration.

    Every radius up to ``PLOTTED_RADII`` of them; beyond, that many log-spaced radii (masks.json has all).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * len(study.lams), 4.4), layout="constrained")
    axes = fig.subplots(1, len(study.lams), squeeze=False)[0]
    for ax, lam in zip(axes, study.lams):
        for r in (r for r in study.rows if r.lam == lam):
            x = _plotted_radii(len(r.spectrum))
            style = {"ls": "--", "color": "k"} if r.method == "cutmix" else {}
            ax.plot(x, [r.spectrum[i] for i in x], lw=1.3, label=f"{r.label} (keeps {r.kept.mean:.2f})", **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        frequency = "frequency" if study.dims == 1 else "radial frequency"
        ax.set_xlabel(f"{frequency} (cycles per {_WORDS[study.dims][0]})")
        ax.set_ylabel("share of the mask's power")
        ax.set_title(f"lam = {lam:g} asked", fontsize=10)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_examples(study: MaskStudy, path: Path, *, per_row: int = EXAMPLE_MASKS) -> None:
    """A few masks per configuration (first lam), drawn with the study's seed (same noise for every k).

    Images: ``per_row`` masks per configuration. Sequences: ``per_row`` masks per configuration as
    strips, one row of elements each. Volumes: one mask per configuration, as the slices at depth
    0, D/4, D/2 and 3D/4.
    """
    from matplotlib.figure import Figure

    lam = study.lams[0]
    rows = [r for r in study.rows if r.lam == lam]
    if study.dims == 1:
        fig = Figure(figsize=(8.0, 0.55 + (0.16 * per_row + 0.3) * len(rows)), layout="constrained")
        axes = fig.subplots(len(rows), 1, squeeze=False, sharex=True)[:, 0]
        for ax, r in zip(axes, rows):
            masks, kept = _draw(r.method, r.k or 0.0, lam, per_row, study.size, study.decay, study.seed)
            ax.imshow(masks.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            for i in range(per_row - 1):  # a grey line between strips, so that adjacent ones stay apart
                ax.axhline(i + 0.5, color="0.55", lw=1.0)
            ax.set_yticks(range(per_row), [f"{x:.2f}" for x in kept.tolist()], fontsize=6)
            ax.set_ylabel(r.label, fontsize=7, rotation=0, ha="right", va="center")
            ax.tick_params(axis="x", labelsize=6)
        axes[-1].set_xlabel("position along the sequence", fontsize=7)
        note = "one strip per mask; at the left of each, the share of the sequence it keeps (the mixer's lam)"
    elif study.dims == 2:
        fig = Figure(figsize=(1.3 * per_row, 1.35 * len(rows)), layout="constrained")
        axes = fig.subplots(len(rows), per_row, squeeze=False)
        for i, r in enumerate(rows):
            masks, kept = _draw(r.method, r.k or 0.0, lam, per_row, study.size, study.decay, study.seed)
            for j in range(per_row):
                ax = axes[i][j]
                ax.imshow(masks[j].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"keeps {kept[j]:.2f}", fontsize=6, pad=2)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(r.label, fontsize=7)
        note = "above each, the share of the image it keeps (the mixer's lam)"
    else:
        depth = study.size[0]
        slices = sorted({i * depth // 4 for i in range(4)})
        fig = Figure(figsize=(1.3 * len(slices) + 0.6, 1.35 * len(rows) + 0.2), layout="constrained")
        axes = fig.subplots(len(rows), len(slices), squeeze=False)
        for i, r in enumerate(rows):
            masks, kept = _draw(r.method, r.k or 0.0, lam, 1, study.size, study.decay, study.seed)
            for j, z in enumerate(slices):
                ax = axes[i][j]
                ax.imshow(masks[0, z].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(f"depth {z}", fontsize=6, pad=2)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(f"{r.label}\nkeeps {kept[0]:.2f}", fontsize=7)
        note = f"one mask per row, at the left the share it keeps\nslices at depth {', '.join(map(str, slices))} of {depth}"
    fig.suptitle(f"example masks drawn for lam = {lam:g}; {note}", fontsize=9)
    _save(fig, path)


_FIGURES = {
    "fig_mask_statistics.png": plot_statistics,
    "fig_mask_spectra.png": plot_spectra,
    "fig_mask_examples.png": plot_examples,
}
#: The files of a study, masks.md (which names the others) first.
FILES = ("masks.md", "masks.json", *_FIGURES)


def write_study(study: MaskStudy, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``masks.md``, ``masks.json`` and the PNG figures (:data:`FILES`) into ``out_dir``; return the paths.

    Everything is written into a temporary folder first (:func:`lmix.experiments.io.write_folder`):
    a failure (a full disk, a folder in the way of a file) leaves ``out_dir`` as it was.

    Raises:
        WriteError: a file could not be written; nothing in ``out_dir`` changed.
    """
    from lmix.experiments.io import atomic_write_json, atomic_write_text, write_folder

    def write(folder: Path) -> list[str]:
        for name, plot in _FIGURES.items():
            plot(study, folder / name)
        study.figures = list(_FIGURES)
        atomic_write_text(folder / "masks.md", render_mask_study(study))
        atomic_write_json(folder / "masks.json", study_json(study))
        return list(FILES)

    return write_folder(out_dir, write)
