"""The ``lmix show --volume`` picture: 3-D masks and mixed volumes, as slices along the depth axis.

A volume batch (B, C, D, H, W) (here short clips, depth = time) is mixed with every method; each
method's row shows one sample's 3-D mask and mixed volume at a few depths. The rows are a
:class:`~lmix.experiments.viz.grid.GridContent`, drawn by the image grid's ``mixing_figure``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lmix.errors import LmixValueError
from lmix.experiments.viz.grid import (
    GridContent,
    GridRow,
    Panel,
    _describe,
    _rgb,
    check_mask_options,
    mix_every_method,
    mix_title,
    options_caption,
    sample_mask,
)

__all__ = ["depth_slices", "build_volume_content"]


def depth_slices(depth: int, count: int = 4) -> list[int]:
    """``count`` depths spread evenly from the first slice: 0, D/4, D/2, 3D/4 for four (fewer if D is small)."""
    return sorted({i * depth // count for i in range(count)})


def build_volume_content(
    volumes: torch.Tensor, *, seed: int = 0, sample: int = 0, mask_options: Mapping[str, object] | None = None
) -> GridContent:
    """Mix ``volumes`` with every method and collect slices of one sample's mask and mixed volume.

    Rows: each volume's slices at :func:`depth_slices`; then for each method (per-sample mode,
    defaults, partners a random cycle) the mask and the mixed volume of sample ``sample`` at the
    same depths, side by side.

    Args:
        volumes: (B, 3, D, H, W) float batch in [0, 1], B >= 2, D >= 2.
        seed: seed of every mixer.
        sample: the sample whose mask and mix are shown.
        mask_options: ``max_soft`` and ``reformulate`` for LMix and FMix (``grid.MASK_OPTIONS``).
    """
    if volumes.ndim != 5 or volumes.shape[1] != 3 or volumes.shape[0] < 2 or volumes.shape[2] < 2:
        raise LmixValueError(f"volumes must have shape (B >= 2, 3, D >= 2, H, W), got {tuple(volumes.shape)}")
    options = check_mask_options(mask_options)
    b, _, depth, h, w = volumes.shape
    slices = depth_slices(depth)
    content = GridContent()
    for v in range(b):
        content.rows.append(GridRow(f"volume #{v}", [Panel(_rgb(volumes[v, :, z]), f"depth {z}") for z in slices]))
    i = sample
    for label, mixer, params, batch in mix_every_method(volumes, seed=seed, mask_options=options):
        lam = float(batch.lam[i])
        mask = sample_mask(params, i, lam, (depth, h, w))
        if params.erase:
            what = f"#{i}, {100 * (1 - mask.mean()):.0f}% erased"
        else:
            what = f"#{i}+#{int(params.perm[i])}, {mix_title(mixer, mask, lam, digits=3)}"
        panels = []
        for z in slices:
            panels += [Panel(mask[z], f"mask, depth {z}"), Panel(_rgb(batch.images[i, :, z]), f"mixed, depth {z}")]
        content.rows.append(GridRow(f"{label}\n{what}\n{_describe(mixer)}", panels))
    content.title = f"Mixing volumes (B, C, D, H, W) with lmix: 3-D masks, slices along depth (seed {seed})"
    content.caption = (
        "Each volume is a clip panning across a photo (depth = time). Masks: white = the sample's own voxels, "
        "black = its partner's (Mixup: λ as a grey level; Cutout: black = zeroed); one 3-D mask per sample. "
        "λ = exact share of the sample's own voxels and label." + options_caption(options)
    )
    return content
