"""Mask diagnostics (``lmix masks``): what LMix's high-frequency emphasis k does to the masks.

For each configuration (CutMix boxes, FMix = LMix with ``k = 0``, LMix at each k; each at each
lam) we draw ``n`` masks and measure, per mask:

* ``regions``: connected regions of the mask (its ones), 4-connectivity;
* ``complement_regions``: connected regions of its complement (its zeros);
* ``boundary``: the share of 4-neighbour pixel pairs whose two pixels differ, out of the
  ``H (W - 1) + (H - 1) W`` pairs (0: one flat mask; a checkerboard: 1);
* ``largest``: the largest region of the mask as a share of the image;
* ``largest_complement``: the same for the complement;
* ``high_freq``: the share of the mean-removed mask's power at radial frequencies above
  ``HIGH_FREQ`` cycles per pixel (detail finer than 8 pixels);

and the radial power spectrum (mean over masks of ``|rfft2(mask - mean)|^2``, normalised to sum
1, per integer radius ``round(f * max(H, W))``). Beside the lam asked for, each configuration
reports the area its masks really keep (the ``lam`` a mixer returns with its batch): exactly
the lam asked for Fourier masks (rounded to a pixel), more for CutMix, whose box is clipped at
the border (about 0.68 for lam = 0.5). Every configuration draws its Fourier noise
from a generator seeded with the same ``seed``, so FMix and the LMix k's see the same noise:
differences between k's are k's effect, not sampling noise.

Connected components: one ``scipy.ndimage.label`` call per batch of masks (see
:func:`connected_components`); everything else is torch, vectorised over the batch.
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
from lmix.mixing.masks import box_masks, fourier_masks, frequency_magnitude

__all__ = [
    "connected_components",
    "boundary_share",
    "radial_power",
    "mask_statistics",
    "cutmix_masks",
    "MaskStudy",
    "run_mask_study",
    "render_mask_study",
    "study_json",
    "write_study",
    "STATISTICS",
    "HIGH_FREQ",
]

HIGH_FREQ = 0.125  # cycles per pixel: structure finer than 8 pixels
KEPT_AREA = "share of the image a mask keeps (the sample's own pixels)"
# name -> (column heading, explanation)
STATISTICS: dict[str, tuple[str, str]] = {
    "regions": ("regions (mask)", "connected regions of the mask's ones (4-connectivity)"),
    "complement_regions": ("regions (complement)", "connected regions of the mask's zeros"),
    "boundary": ("boundary share", "share of 4-neighbour pixel pairs that differ"),
    "largest": ("largest region", "largest region of the ones, share of the image"),
    "largest_complement": ("largest region (complement)", "largest region of the zeros, share of the image"),
    "high_freq": ("high-freq power", f"share of the mask's power above {HIGH_FREQ:g} cycles/pixel"),
}


# ---------------------------------------------------------------------------------------------
# per-mask measurements
# ---------------------------------------------------------------------------------------------
def connected_components(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Number and largest size of the 4-connected components of the true pixels of every mask.

    One ``scipy.ndimage.label`` call labels the whole batch as a 3-D array whose structuring
    element connects pixels only within a mask (the 4-neighbour cross in the middle plane), so
    no component spans two masks; labels are then assigned to their masks with ``np.unique``.

    Args:
        masks: (B, H, W) bool.

    Returns:
        ``count`` (B,) int64: components per mask; ``largest`` (B,) int64: pixels in each mask's
        largest component (0 for a mask without true pixels).
    """
    import numpy as np
    from scipy import ndimage

    if not isinstance(masks, torch.Tensor) or masks.ndim != 3 or masks.dtype != torch.bool:
        raise LmixValueError(f"masks must be a bool tensor of shape (B, H, W), got {_describe(masks)}")
    b, h, w = masks.shape
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    labels, num = ndimage.label(masks.cpu().numpy(), structure=structure)
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    ids, first = ids[1:], first[1:]  # label 0 is the background
    plane = first // (h * w)  # each component lies in one mask: the one of its first pixel
    size = np.bincount(flat, minlength=num + 1)[ids]
    count = np.bincount(plane, minlength=b)
    largest = np.zeros(b, dtype=np.int64)
    np.maximum.at(largest, plane, size)
    return torch.from_numpy(count.astype(np.int64)), torch.from_numpy(largest)


def boundary_share(masks: torch.Tensor) -> torch.Tensor:
    """(B,) float64 share of 4-neighbour pixel pairs of each (B, H, W) mask whose pixels differ."""
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        raise LmixValueError(f"masks must be a tensor of shape (B, H, W), got {_describe(masks)}")
    _, h, w = masks.shape
    m = masks.bool()
    vertical = (m[:, 1:, :] != m[:, :-1, :]).flatten(1).sum(1)
    horizontal = (m[:, :, 1:] != m[:, :, :-1]).flatten(1).sum(1)
    pairs = h * (w - 1) + (h - 1) * w
    return (vertical + horizontal).double() / max(pairs, 1)


def _radius(size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(H, W//2+1) integer radius ``round(f * max(H, W))`` of each rfft2 bin."""
    return torch.round(frequency_magnitude(size, device=device) * max(size)).long()


def radial_power(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per mask, the power of the mean-removed mask per integer radius, and its share above ``HIGH_FREQ``.

    Args:
        masks: (B, H, W) bool or float.

    Returns:
        ``power`` (B, R) float64, R = ``max(H, W) // 2 + 1``: summed ``|rfft2|^2`` of the bins at
        radius r (bins beyond the Nyquist circle are left out), and ``high`` (B,) float64: the
        share of the total power at ``f > HIGH_FREQ`` (0 for a constant mask).
    """
    _, h, w = masks.shape
    x = masks.double()
    x = x - x.mean(dim=(1, 2), keepdim=True)
    spec = torch.fft.rfft2(x).abs().square()  # (B, H, W//2+1)
    # rfft2 keeps half of the plane: the other half mirrors every column but the self-conjugate ones.
    weight = torch.full((w // 2 + 1,), 2.0, dtype=torch.float64, device=masks.device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    spec = spec * weight
    radius = _radius((h, w), masks.device)
    n_bins = max(h, w) // 2 + 1
    keep = (radius < n_bins).flatten()
    flat = spec.flatten(1)[:, keep]
    power = torch.zeros(spec.shape[0], n_bins, dtype=torch.float64, device=masks.device)
    power.scatter_add_(1, radius.flatten()[keep].expand(spec.shape[0], -1), flat)
    total = spec.flatten(1).sum(1)
    f = frequency_magnitude((h, w), device=masks.device).flatten()
    high = spec.flatten(1)[:, f > HIGH_FREQ].sum(1) / total.clamp_min(1e-300)
    return power, torch.where(total > 0, high, torch.zeros_like(high))


def mask_statistics(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every statistic of :data:`STATISTICS` for each (B, H, W) mask, plus ``power`` (B, R)."""
    m = masks.bool()
    hw = m.shape[1] * m.shape[2]
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
    lam: torch.Tensor, size: tuple[int, int], *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix masks as :class:`lmix.mixing.CutMix` builds them for a given lam, and the area each keeps.

    The box has sides ``int(H sqrt(1 - lam))`` x ``int(W sqrt(1 - lam))`` around a uniform
    centre, clipped at the border; the mask is 1 outside it (the kept image).

    Returns:
        ((B, 1, H, W) float32 masks, (B,) float32 kept share of the image: the ``lam`` CutMix
        returns with its batch, larger than ``lam`` where the box is clipped).
    """
    h, w = size
    n = lam.shape[0]
    ratio = torch.sqrt(1.0 - lam.double())
    box_h, box_w = (h * ratio).long(), (w * ratio).long()
    cy = torch.randint(0, h, (n,), generator=generator)
    cx = torch.randint(0, w, (n,), generator=generator)
    return box_masks(cy, cx, box_h, box_w, (h, w))


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
    """The settings and rows of one ``lmix masks`` run."""

    size: tuple[int, int]
    ks: list[float]
    lams: list[float]
    n: int
    decay: float
    seed: int
    rows: list[Row]
    seconds: float = 0.0
    figures: list[str] = field(default_factory=list)


def _draw(
    method: str, k: float, lam: float, n: int, size: tuple[int, int], decay: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, H, W) bool masks and (n,) float64 the share of the image each keeps (the mixer's lam)."""
    g = torch.Generator().manual_seed(seed)
    lam_t = torch.full((n,), lam, dtype=torch.float32)
    if method == "cutmix":
        masks, kept = cutmix_masks(lam_t, size, generator=g)
        return masks[:, 0].bool(), kept.double()
    masks = fourier_masks(lam_t, size, decay=decay, k=k, generator=g)[:, 0].bool()
    return masks, masks.double().mean(dim=(1, 2))  # a Fourier mask keeps exactly round(lam H W) pixels


def run_mask_study(
    *,
    size: tuple[int, int] = (32, 32),
    ks: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
    lams: Sequence[float] = (0.5,),
    n: int = 1000,
    decay: float = 3.0,
    seed: int = 0,
    chunk: int = 500,
) -> MaskStudy:
    """Draw ``n`` masks per configuration (CutMix, FMix = k 0, LMix at each k > 0; each lam) and measure them.

    Args:
        size: (H, W), both >= 2.
        ks: LMix emphasis values >= 0; 0 is FMix (always included).
        lams: mask areas in (0, 1).
        n: masks per configuration, >= 2 (for the intervals).
        decay: the Fourier masks' low-pass decay (>= 0).
        seed: seed of every configuration's generator (the same noise for every k).
        chunk: masks measured at once (bounds the memory at large sizes).
    """
    import time

    from lmix.experiments.report.stats import Stats

    h, w = size
    if not (isinstance(h, int) and isinstance(w, int) and h >= 2 and w >= 2):
        raise LmixValueError(f"size must be two integers >= 2 (H W), got {size!r}")
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
    if not is_integer(seed) or seed < 0:
        raise LmixValueError(f"seed must be an integer >= 0, got {seed!r}")
    t0 = time.perf_counter()
    configs = [("cutmix", None, "CutMix")] + [
        ("fmix" if k == 0 else "lmix", k, "FMix (k=0)" if k == 0 else f"LMix k={k:g}") for k in sorted({0.0, *ks})
    ]
    rows = []
    for lam in lams:
        for method, k, label in configs:
            masks, kept = _draw(method, 0.0 if k is None else k, lam, n, size, decay, seed)
            parts = [mask_statistics(masks[i : i + chunk]) for i in range(0, n, chunk)]
            values = {name: torch.cat([p[name] for p in parts]).tolist() for name in STATISTICS}
            power = torch.cat([p["power"] for p in parts]).mean(0)
            spectrum = (power / power.sum().clamp_min(1e-300)).tolist()
            row = Row(label, method, k, lam, values, spectrum)
            row.stats = {name: Stats.of(vals) for name, vals in values.items()}
            row.kept = Stats.of(kept.tolist())
            rows.append(row)
    return MaskStudy((h, w), ks, lams, n, float(decay), seed, rows, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def _ci(s: Any, digits: int) -> str:
    if s is None:
        return "-"
    if math.isnan(s.ci95):
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} [{s.mean - s.ci95:.{digits}f}, {s.mean + s.ci95:.{digits}f}]"


_DIGITS = {"regions": 2, "complement_regions": 2, "boundary": 4, "largest": 3, "largest_complement": 3, "high_freq": 4}


def table_lines(study: MaskStudy) -> list[str]:
    """The Markdown table: one row per configuration, mean [95% CI] per statistic.

    ``lam asked`` is the lam the masks were drawn for; ``kept area`` the share of the image they
    keep, the exact lam a mixer reports (larger for CutMix, whose boxes are clipped at the border).
    """
    names = list(STATISTICS)
    lines = [
        "| masks | lam asked | kept area | " + " | ".join(STATISTICS[s][0] for s in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for r in study.rows:
        lines.append(
            f"| {r.label} | {r.lam:g} | {_ci(r.kept, 3)} | "
            + " | ".join(_ci(r.stats[s], _DIGITS[s]) for s in names)
            + " |"
        )
    return lines


def render_mask_study(study: MaskStudy) -> str:
    """The study as Markdown: settings, the table, what each statistic is, the figures."""
    h, w = study.size
    out = [
        "# lmix masks",
        "",
        f"{study.n} masks per row, {h}x{w}, decay {study.decay:g}, seed {study.seed} (the same Fourier noise "
        f"for FMix and every k); mean [95% CI] over the masks. {study.seconds:.1f} s.",
        "",
        *table_lines(study),
        "",
    ]
    out.append(
        f"- kept area: {KEPT_AREA}, the exact lam a mixer returns; CutMix keeps more than the lam asked "
        "because its box is clipped at the border."
    )
    out += [f"- {STATISTICS[s][0]}: {STATISTICS[s][1]}." for s in STATISTICS]
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
        "statistics": {"kept_area": KEPT_AREA, **{s: d for s, (_, d) in STATISTICS.items()}},
        "rows": [
            {
                "label": r.label,
                "method": r.method,
                "k": r.k,
                "lam": r.lam,
                "kept_area": r.kept.to_dict() if r.kept else None,
                "stats": {s: (st.to_dict() if st else None) for s, st in r.stats.items()},
                "radial_spectrum": {
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
    """Each statistic against k (FMix at k = 0) with 95% CI bars per lam; CutMix as a dashed line."""
    from matplotlib.figure import Figure

    names = list(STATISTICS)
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    axes = fig.subplots(2, 3).flatten()
    for ax, name in zip(axes, names):
        for i, lam in enumerate(study.lams):
            rows = [r for r in study.rows if r.lam == lam and r.method != "cutmix"]
            ks = [r.k for r in rows]
            ax.errorbar(
                ks,
                [r.stats[name].mean for r in rows],
                yerr=[0 if math.isnan(r.stats[name].ci95) else r.stats[name].ci95 for r in rows],
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
        ax.set_title(STATISTICS[name][0], fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    h, w = study.size
    fig.suptitle(f"Mask statistics against k: {study.n} masks of {h}x{w} per point (mean, 95% CI)", fontsize=11)
    _save(fig, path)


def plot_spectra(study: MaskStudy, path: Path) -> None:
    """Radial power spectrum of the masks (share of power per radius), one line per configuration."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4 * len(study.lams), 4.4), layout="constrained")
    axes = fig.subplots(1, len(study.lams), squeeze=False)[0]
    for ax, lam in zip(axes, study.lams):
        for r in (r for r in study.rows if r.lam == lam):
            x = list(range(1, len(r.spectrum)))
            style = {"ls": "--", "color": "k"} if r.method == "cutmix" else {}
            ax.plot(x, r.spectrum[1:], lw=1.3, label=f"{r.label} (keeps {r.kept.mean:.2f})", **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("radial frequency (cycles per image)")
        ax.set_ylabel("share of the mask's power")
        ax.set_title(f"lam = {lam:g} asked", fontsize=10)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_examples(study: MaskStudy, path: Path, *, per_row: int = 6) -> None:
    """A few masks per configuration (first lam), drawn with the study's seed (same noise for every k)."""
    from matplotlib.figure import Figure

    lam = study.lams[0]
    rows = [r for r in study.rows if r.lam == lam]
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
    fig.suptitle(
        f"example masks drawn for lam = {lam:g}; above each, the share of the image it keeps (the mixer's lam)",
        fontsize=9,
    )
    _save(fig, path)


def write_study(study: MaskStudy, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``masks.md``, ``masks.json`` and the PNG figures into ``out_dir`` (atomically); return the paths."""
    from lmix.experiments.io import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "fig_mask_statistics.png": plot_statistics,
        "fig_mask_spectra.png": plot_spectra,
        "fig_mask_examples.png": plot_examples,
    }
    for name, plot in figures.items():
        plot(study, out / name)
    study.figures = list(figures)
    atomic_write_text(out / "masks.md", render_mask_study(study))
    atomic_write_json(out / "masks.json", study_json(study))
    return [out / "masks.md", out / "masks.json"] + [out / f for f in study.figures]
