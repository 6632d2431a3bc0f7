"""The ``lmix show`` picture: masks and mixed images of every method, and the effect of k.

Content (what is drawn) is built by ``build_grid_content`` with the public mixer API
(``create_mixer``, ``sample``/``apply``, ``fourier_masks``) and rendered by ``mixing_figure``
with matplotlib's object API on the Agg canvas (no pyplot, the user's backend is left alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import lmix
from lmix.errors import LmixValueError
from lmix.experiments.io import atomic_write
from lmix.mixing.batch import MixedBatch, MixParams

__all__ = [
    "Panel",
    "GridContent",
    "build_grid_content",
    "check_mask_options",
    "mix_every_method",
    "mixing_figure",
    "save_figure",
]

# (row label, registry name, parameters): the methods of the paper's Fig. 1-2, defaults otherwise,
# except that partners form a random cycle: a small batch drawn with a uniform permutation would
# show images mixed with themselves (a third of them, on average, with 3 images).
METHODS = (
    ("LMix", "lmix", {"pairing": "no_self"}),
    ("FMix", "fmix", {"pairing": "no_self"}),
    ("CutMix", "cutmix", {"pairing": "no_self"}),
    ("Mixup", "mixup", {"pairing": "no_self"}),
    ("Cutout", "cutout", {}),
)
DEFAULT_KS = (0.0, 0.5, 1.0, 2.0, 4.0)
#: The Fourier-mask options ``lmix show`` can set, with their defaults (binary masks, lam from
#: Beta(alpha, alpha)): they apply to the methods that take them, LMix and FMix.
MASK_OPTIONS = {"max_soft": 0.0, "reformulate": False}


@dataclass
class Panel:
    """One picture of the grid: (H, W) grey or (H, W, 3) RGB values in [0, 1]."""

    pixels: np.ndarray
    title: str = ""


@dataclass
class GridRow:
    label: str
    panels: list[Panel]


@dataclass
class GridContent:
    """Rows of panels and the captions of the figure."""

    rows: list[GridRow] = field(default_factory=list)
    title: str = ""
    caption: str = ""

    @property
    def columns(self) -> int:
        return max(len(r.panels) for r in self.rows)


def _rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float array clipped to [0, 1] (sharpening overshoots)."""
    return image.detach().to(torch.float32).clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()


def _fmt(x: float) -> str:
    return f"{x:g}"


def _describe(mixer: lmix.Mixer) -> str:
    """The mixer's hyperparameters, one per line, e.g. ``alpha=1``."""
    from lmix.mixing.registry import accepted_params

    items = []
    for name in sorted(accepted_params(type(mixer)) - {"seed"}, key=list(vars(mixer)).index):
        value = getattr(mixer, name)
        if isinstance(value, tuple):
            text = "x".join(map(str, value))
        elif isinstance(value, float):
            text = _fmt(value)
        else:
            text = str(value)
        items.append(f"{name}={text}")
    return "\n".join(items)


def check_mask_options(mask_options: Mapping[str, object] | None) -> dict[str, object]:
    """The Fourier-mask options of a figure, checked as the mixers check them, defaults filled in.

    Raises:
        LmixValueError: an unknown option, or a value the mixers refuse (their message).
    """
    options = dict(MASK_OPTIONS)
    unknown = sorted(set(mask_options or {}) - set(MASK_OPTIONS))
    if unknown:
        raise LmixValueError(f"unknown mask option(s) {unknown}; allowed: {sorted(MASK_OPTIONS)}")
    options.update(mask_options or {})
    lmix.create_mixer("lmix", **options)  # the mixers' own checks and messages
    return options


def _options_for(name: str, options: Mapping[str, object]) -> dict[str, object]:
    """The ones of ``options`` that method ``name`` takes, where they differ from the default."""
    from lmix.mixing.registry import accepted_params, mixer_class

    taken = accepted_params(mixer_class(name))
    return {key: value for key, value in options.items() if key in taken and value != MASK_OPTIONS[key]}


def mix_title(mixer: lmix.Mixer, mask: np.ndarray, lam: float, digits: int = 2) -> str:
    """The ``λ=...`` part of a mixed sample's title: its label share ``lam``, which is the mask's
    area, except under ``reformulate`` (own label only, ``lam = 1``): then the area and that."""
    if getattr(mixer, "reformulate", False):
        return f"area={mask.mean():.{digits}f}, λ={lam:g}"
    return f"λ={lam:.{digits}f}"


def mix_every_method(
    inputs: torch.Tensor, *, seed: int, mask_options: Mapping[str, object] | None = None
) -> list[tuple[str, lmix.Mixer, MixParams, MixedBatch]]:
    """Mix ``inputs`` with each method of :data:`METHODS`: (row label, mixer, its parameters, the mixed batch).

    Labels are the sample indices. Cutout's fixed box is half of every side (the paper's 16x16
    square on 32x32 CIFAR).

    Args:
        inputs: (B, C, *spatial) batch, 1 to 3 spatial axes, B >= 2.
        seed: seed of every mixer.
        mask_options: ``max_soft`` and ``reformulate`` (see :data:`MASK_OPTIONS`), given to the
            methods that take them (LMix and FMix).
    """
    options = check_mask_options(mask_options)
    b, spatial = inputs.shape[0], tuple(inputs.shape[2:])
    labels = torch.arange(b, device=inputs.device)
    mixed = []
    for label, name, params in METHODS:
        params = {**params, **_options_for(name, options)}
        if name == "cutout":
            params["size"] = tuple(max(1, n // 2) for n in spatial)
        mixer = lmix.create_mixer(name, seed=seed, **params)
        mix_params = mixer.sample(b, spatial, device=inputs.device, generator=mixer.generator_for(inputs.device))
        mixed.append((label, mixer, mix_params, mixer.apply(inputs, labels, mix_params)))
    return mixed


def sample_mask(params: MixParams, i: int, lam: float, spatial: tuple[int, ...]) -> np.ndarray:
    """Sample ``i``'s mask as float weights of shape ``spatial``: the share of its own element (Mixup: ``lam``)."""
    if params.mask is None:  # Mixup: every element has weight lam
        return np.full(spatial, lam)
    return params.mask[i if params.mask.shape[0] > 1 else 0, 0].to(torch.float32).cpu().numpy()


def build_grid_content(
    images: torch.Tensor,
    *,
    seed: int = 0,
    show: int = 4,
    ks: tuple[float, ...] = DEFAULT_KS,
    image_ks: tuple[float, ...] = DEFAULT_KS,
    mask_options: Mapping[str, object] | None = None,
) -> GridContent:
    """Mix ``images`` with every method and collect what to draw.

    Rows: the input batch; for each method the mask and the mixed image of the first ``show``
    samples (per-sample mode, the methods' defaults, partners a random cycle so that no image is
    mixed with itself); LMix masks for each k in ``ks`` with the same noise and lam = 0.5; one
    LMix-mixed image sharpened with each ``image_ks``.

    Args:
        images: (B, 3, H, W) float batch in [0, 1], B >= 2.
        seed: seed of every mixer and of the noise of the k row.
        show: samples shown per method row.
        ks: mask emphasis values for the k row.
        image_ks: sharpening values for the image_k row.
        mask_options: ``max_soft`` and ``reformulate`` for LMix and FMix (:data:`MASK_OPTIONS`);
            ``max_soft`` also softens the k row's masks.

    Returns:
        The ``GridContent`` to pass to ``mixing_figure``.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 2:
        raise LmixValueError(f"images must have shape (B >= 2, 3, H, W), got {tuple(images.shape)}")
    options = check_mask_options(mask_options)
    b, _, h, w = images.shape
    show = min(show, b)
    labels = torch.arange(b)
    content = GridContent()
    content.rows.append(GridRow("batch", [Panel(_rgb(images[i]), f"#{i}") for i in range(b)]))

    for label, mixer, mix_params, batch in mix_every_method(images, seed=seed, mask_options=options):
        panels = []
        for i in range(show):
            lam = float(batch.lam[i])
            mask = sample_mask(mix_params, i, lam, (h, w))
            j = int(mix_params.perm[i])
            if mix_params.erase:
                title = f"#{i}, {100 * (1 - mask.mean()):.0f}% erased"
            else:
                title = f"#{i}+#{j}, {mix_title(mixer, mask, lam)}"
            panels += [Panel(mask, "mask"), Panel(_rgb(batch.images[i]), title)]
        row_label = f"{label}\n{_describe(mixer)}"
        content.rows.append(GridRow(row_label, panels))

    half = torch.tensor([0.5])
    soft = float(options["max_soft"])  # type: ignore[arg-type]
    k_panels = []
    for k in ks:
        gen = torch.Generator().manual_seed(seed)
        mask = lmix.fourier_masks(half, (h, w), decay=3.0, k=k, max_soft=soft, generator=gen)[0, 0]
        k_panels.append(Panel(mask.numpy(), f"k={_fmt(k)}" + (" (FMix)" if k == 0 else "")))
    soft_label = f"\nmax_soft={_fmt(soft)}" if soft else ""
    content.rows.append(GridRow(f"LMix masks\nsame noise\nλ=0.5, decay=3{soft_label}", k_panels))

    sharp_panels = []
    for image_k in image_ks:
        lmix_options = _options_for("lmix", options)
        mixer = lmix.create_mixer("lmix", seed=seed, image_k=image_k, pairing="no_self", **lmix_options)
        batch = mixer(images, labels)
        sharp_panels.append(Panel(_rgb(batch.images[0]), f"image_k={_fmt(image_k)}"))
    content.rows.append(GridRow("LMix image\nsharpening", sharp_panels))

    content.title = f"Mixed-sample augmentation with lmix (seed {seed})"
    content.caption = (
        "masks: white = the sample's own pixels, black = its partner's (Mixup: the weight λ as a grey level; "
        "Cutout: black = zeroed). λ = exact share of the sample's own image and label." + options_caption(options)
    )
    return content


def options_caption(options: Mapping[str, object]) -> str:
    """What the figure's captions add for non-default mask options ("" for none)."""
    text = ""
    soft = float(options["max_soft"])  # type: ignore[arg-type]
    if soft:
        text += (
            f" LMix/FMix masks have soft edges (max_soft={_fmt(soft)}): grey pixels are weights ramping from 1 to 0."
        )
    if options["reformulate"]:
        text += (
            " reformulate: LMix/FMix areas drawn from Beta(α+1, α) and the label is the sample's own (λ=1), "
            "area = share of its own pixels."
        )
    return text


def mixing_figure(content: GridContent, *, panel_inches: float = 1.45) -> Figure:
    """Render ``content`` as a matplotlib ``Figure`` (Agg canvas attached)."""
    nrows, ncols = len(content.rows), content.columns
    margin = 1.5  # inches on the left for the row labels
    fig = Figure(figsize=(ncols * panel_inches + margin, nrows * (panel_inches + 0.22) + 0.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, row in enumerate(content.rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row.panels):
                ax.set_axis_off()
                continue
            panel = row.panels[c]
            if panel.pixels.ndim == 2:
                ax.imshow(panel.pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(panel.pixels, interpolation="nearest")
            ax.set_title(panel.title, fontsize=7, pad=2)
            for spine in ax.spines.values():
                spine.set_linewidth(0.4)
            if c == 0:
                ax.set_ylabel(row.label, rotation=0, ha="right", va="center", fontsize=8, labelpad=6)
    fig.suptitle(content.title, fontsize=12, y=0.995)
    fig.text(0.5, 0.004, content.caption, ha="center", va="bottom", fontsize=7, wrap=True)
    left = (margin - 0.1) / fig.get_figwidth()
    fig.subplots_adjust(left=left, right=0.995, top=1 - 0.45 / fig.get_figheight(), bottom=0.35 / fig.get_figheight())
    fig.subplots_adjust(wspace=0.06, hspace=0.22)
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file in the same folder, then ``os.replace``).

    The parent folder is created if needed. Returns the path written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise LmixValueError(f"the output must be a .png file, got {str(path)!r}")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return path
