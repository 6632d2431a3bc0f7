"""The ``lmix show --dataset`` picture: masks and mixed sequences of every method, and the effect of k.

Each method's mask of a (B, C, L) batch is a strip (white: the sample's own steps, black: its
partner's) drawn above a line plot of the sample, its partner and the mixed sequence. Content is
built with the same mixers as the image grid (:func:`lmix.experiments.viz.grid.mix_every_method`)
and drawn with matplotlib's object API on the Agg canvas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

import lmix
from lmix.errors import LmixValueError
from lmix.experiments.viz.grid import (
    DEFAULT_KS,
    _describe,
    _fmt,
    check_mask_options,
    mix_every_method,
    options_caption,
    sample_mask,
)

__all__ = ["SequencePanel", "SequenceContent", "sample_sequence_batch", "build_sequence_content", "sequence_figure"]

OWN, PARTNER, MIXED = "C0", "C1", "k"


@dataclass
class SequencePanel:
    """One mixed sample: its mask (L,) weights in [0, 1], and channel 0 of the sequences (L,)."""

    mask: np.ndarray
    own: np.ndarray
    partner: np.ndarray | None  # None where the partner is all zeros (Cutout)
    mixed: np.ndarray
    title: str = ""


@dataclass
class SequenceContent:
    """Rows (label, panels) of mixed samples, the LMix masks for several k, and the captions."""

    rows: list[tuple[str, list[SequencePanel]]] = field(default_factory=list)
    k_masks: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (label, (L,) mask)
    k_title: str = "LMix masks for several k, same noise, λ=0.5, decay=3"
    title: str = ""
    caption: str = ""


def sample_sequence_batch(name: str, count: int = 8) -> torch.Tensor:
    """``count`` training series of time-series data set ``name``, the classes taken in turn.

    The first series of each class, then the second of each, and so on, so that neighbours in
    the batch (and most partners) belong to different classes.

    Returns:
        (n, C, L) float32, n = ``min(count, number of series)``.

    Raises:
        MissingTimeseriesExtraError: sktime (the ``timeseries`` extra) is not installed.
        LmixValueError: ``name`` is not a time-series data set.
    """
    from lmix.data.timeseries import read_timeseries

    values, labels, _ = read_timeseries(name, train=True)
    per_class = [torch.nonzero(labels == c).flatten().tolist() for c in labels.unique(sorted=True).tolist()]
    order: list[int] = []
    for rank in range(max(map(len, per_class))):
        order += [indices[rank] for indices in per_class if rank < len(indices)]
    return values[order[:count]]


def _exact_lam(mask: np.ndarray, lam: float, erase: bool, mixup: bool, reformulate: bool = False) -> str:
    """The title's lam: ``own/L = lam`` for a mask, where the count is the exact share (a soft
    mask's weights sum to it exactly); under ``reformulate`` the label is the own one (``lam = 1``)
    and the count is the area only."""
    length = mask.shape[0]
    if mixup:
        return f"λ={lam:.3f}"
    own = int(round(float(mask.sum())))
    if erase:
        return f"{length - own}/{length} steps zeroed"
    if reformulate:
        return f"area={own}/{length}, λ={lam:g}"
    return f"λ={own}/{length}={lam:.3f}"


def build_sequence_content(
    series: torch.Tensor,
    *,
    seed: int = 0,
    show: int = 3,
    ks: tuple[float, ...] = DEFAULT_KS,
    source: str = "",
    mask_options: Mapping[str, object] | None = None,
) -> SequenceContent:
    """Mix ``series`` with every method and collect what to draw.

    Rows: for each method the mask and the sequences (own, partner, mixed: channel 0) of the
    first ``show`` samples (per-sample mode, the methods' defaults, partners a random cycle so
    that no series is mixed with itself); then LMix masks for each k in ``ks`` from the same noise
    at lam = 0.5.

    Args:
        series: (B, C, L) float batch, B >= 2, L >= 2.
        seed: seed of every mixer and of the noise of the k masks.
        show: samples shown per method.
        ks: mask emphasis values of the k masks.
        source: where the series come from, for the title.
        mask_options: ``max_soft`` and ``reformulate`` for LMix and FMix (``grid.MASK_OPTIONS``);
            ``max_soft`` also softens the k masks.
    """
    if series.ndim != 3 or series.shape[0] < 2 or series.shape[2] < 2 or not series.is_floating_point():
        raise LmixValueError(f"series must be a float tensor of shape (B >= 2, C, L >= 2), got {tuple(series.shape)}")
    options = check_mask_options(mask_options)
    b, channels, length = series.shape
    show = min(show, b)
    content = SequenceContent()
    for label, mixer, params, batch in mix_every_method(series, seed=seed, mask_options=options):
        panels = []
        for i in range(show):
            lam = float(batch.lam[i])
            mask = sample_mask(params, i, lam, (length,))
            j = int(params.perm[i])
            title = _exact_lam(mask, lam, params.erase, params.mask is None, getattr(mixer, "reformulate", False))
            title = f"#{i}, {title}" if params.erase else f"#{i}+#{j}, {title}"
            partner = None if params.erase else series[j, 0].numpy()
            panels.append(SequencePanel(mask, series[i, 0].numpy(), partner, batch.images[i, 0].numpy(), title))
        content.rows.append((f"{label}\n{_describe(mixer)}", panels))

    half = torch.tensor([0.5])
    soft = float(options["max_soft"])  # type: ignore[arg-type]
    for k in ks:
        gen = torch.Generator().manual_seed(seed)
        mask = lmix.fourier_masks(half, (length,), decay=3.0, k=k, max_soft=soft, generator=gen)[0, 0].numpy()
        content.k_masks.append((f"k={_fmt(k)}" + (" (FMix)" if k == 0 else ""), mask))
    if soft:
        content.k_title += f", max_soft={_fmt(soft)}"

    channel = f"channel 0 of {channels}" if channels > 1 else "one channel"
    content.title = f"Mixed-sample augmentation of sequences with lmix: {source or f'{b} series'} (seed {seed})"
    content.caption = (
        "strips: white = the sample's own steps, black = its partner's (Mixup: the weight λ as a grey level; "
        f"Cutout: black = zeroed). λ = exact share of the sample's own steps and label. Lines: {channel}."
        + options_caption(options)
    )
    return content


def sequence_figure(content: SequenceContent, *, panel_inches: float = 3.2) -> Figure:
    """Render ``content`` as a matplotlib ``Figure`` (Agg canvas attached)."""
    ncols = max(len(panels) for _, panels in content.rows)
    margin = 1.5  # inches on the left for the row labels
    row_inches, k_inches = 1.75, 0.25 * len(content.k_masks) + 0.45
    height = len(content.rows) * row_inches + k_inches + 1.0
    fig = Figure(figsize=(ncols * panel_inches + margin, height))
    FigureCanvasAgg(fig)
    outer = fig.add_gridspec(
        len(content.rows) + 1,
        1,
        height_ratios=[row_inches] * len(content.rows) + [k_inches],
        left=margin / fig.get_figwidth(),
        right=0.99,
        top=1 - 0.6 / height,
        bottom=0.75 / height,
        hspace=0.45,
    )
    for r, (label, panels) in enumerate(content.rows):
        inner = outer[r].subgridspec(2, ncols, height_ratios=[1, 4], hspace=0.06, wspace=0.12)
        for c, panel in enumerate(panels):
            strip = fig.add_subplot(inner[0, c])
            length = panel.mask.shape[0]
            strip.imshow(
                panel.mask[None, :],
                cmap="gray",
                vmin=0.0,
                vmax=1.0,
                aspect="auto",
                interpolation="nearest",
                extent=(-0.5, length - 0.5, 0, 1),
            )
            strip.set_xticks([])
            strip.set_yticks([])
            strip.set_title(panel.title, fontsize=7, pad=2)
            plot = fig.add_subplot(inner[1, c], sharex=strip)
            steps = np.arange(length)
            if panel.partner is not None:
                plot.plot(steps, panel.partner, color=PARTNER, lw=0.8, alpha=0.8)
            plot.plot(steps, panel.own, color=OWN, lw=0.8, alpha=0.8)
            plot.plot(steps, panel.mixed, color=MIXED, lw=1.1)
            plot.set_xlim(-0.5, length - 0.5)
            plot.tick_params(labelsize=6)
            if r < len(content.rows) - 1:
                plot.tick_params(labelbottom=False)
            if c == 0:  # left of the plot's tick labels
                plot.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7, labelpad=6)
    k_ax = fig.add_subplot(outer[-1])
    masks = np.stack([mask for _, mask in content.k_masks])
    k_ax.imshow(masks, cmap="gray", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    for i in range(len(content.k_masks) - 1):  # a grey line between strips, so that adjacent ones stay apart
        k_ax.axhline(i + 0.5, color="0.55", lw=1.0)
    k_ax.set_yticks(range(len(content.k_masks)), [label for label, _ in content.k_masks], fontsize=7)
    k_ax.tick_params(axis="x", labelsize=6)
    k_ax.set_xlabel("step", fontsize=7)
    k_ax.set_title(content.k_title, fontsize=8, pad=3)
    handles = [
        Line2D([], [], color=OWN, lw=1, label="the sample"),
        Line2D([], [], color=PARTNER, lw=1, label="its partner"),
        Line2D([], [], color=MIXED, lw=1.2, label="mixed"),
    ]
    fig.legend(handles=handles, loc="upper right", ncols=3, fontsize=7, frameon=False, bbox_to_anchor=(0.99, 1.0))
    fig.suptitle(content.title, fontsize=11, x=0.02, ha="left", y=1 - 0.08 / height, va="top")
    fig.text(0.5, 0.004, content.caption, ha="center", va="bottom", fontsize=7, wrap=True)
    return fig
