"""Helpers for the mixing tests: registry-driven mixer configurations, images whose mixing can be
read back from the output, spectrum statistics, and a re-creation of the FMix reference's sampler."""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch

import lmix
from lmix.mixing.registry import mixer_class

# Combination mixers are not in the registry's list, but are built by create_mixer: test them too.
COMBINATIONS = ("lmix+mixup",)


def has_batch_mode(name: str) -> bool:
    """A registered mixer has a per-batch mode iff its constructor accepts ``mode``."""
    return "mode" in inspect.signature(mixer_class(name).__init__).parameters


def accepts(name: str, param: str) -> bool:
    return param in inspect.signature(mixer_class(name).__init__).parameters


def mixer_configs(*, combinations: bool = False) -> list[tuple[str, dict]]:
    """(name, params) for every registered mixer, once per mode where it has one."""
    configs: list[tuple[str, dict]] = []
    for name in lmix.list_mixers():
        if has_batch_mode(name):
            configs += [(name, {"mode": "sample"}), (name, {"mode": "batch"})]
        else:
            configs.append((name, {}))
    if combinations:
        configs += [(name, {}) for name in COMBINATIONS]
    return configs


def config_id(config: tuple[str, dict]) -> str:
    name, params = config
    return "-".join([name, *(str(v) for v in params.values())])


def mixing_names() -> list[str]:
    """Registered mixers that mix two samples (the ones with a per-sample and a per-batch mode)."""
    return [name for name in lmix.list_mixers() if has_batch_mode(name)]


def kind_of(mixer: lmix.Mixer, size: tuple[int, int] = (8, 8)) -> str:
    """'erase', 'blend' (pixel-wise convex combination), 'mask', 'soft' (interpolated mask) or 'identity'."""
    params = mixer.sample(4, size, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    if params.erase:
        return "erase"
    if getattr(params, "mix_lam", None) is not None:
        return "soft"  # soft PatchUp: the mask's blocks are interpolated, not swapped
    if params.mask is None:
        if bool((params.lam == 1).all()) and bool((params.perm == torch.arange(4)).all()):
            return "identity"
        return "blend"
    return "mask"


def constant_images(
    b: int, c: int, h: int, w: int, *, dtype=torch.float32, device="cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images constant per (sample, channel) with distinct values, and labels ``arange(B)``.

    Values ``i + 1 + c / 4`` are exact in bfloat16 for B <= 64, so every output pixel can be traced
    back to its source(s), and ``labels_b`` is the partner's index.

    Returns:
        images (B, C, H, W), labels (B,) int64, values (B, C) float64.
    """
    values = torch.arange(1, b + 1, dtype=torch.float64)[:, None] + torch.arange(c, dtype=torch.float64)[None, :] / 4
    images = values[:, :, None, None].expand(b, c, h, w).to(device=device, dtype=dtype).contiguous()
    return images, torch.arange(b, device=device), values


def kept_masks(out: torch.Tensor, values: torch.Tensor, partners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks read back from the output of a mask mixer applied to ``constant_images``.

    Returns:
        (B, H, W) bool, True where the sample's own value is kept (checked equal across channels);
        (B,) bool, True where the partner differs from the sample (elsewhere the mask is unknowable).
    """
    own = values.to(out.device, torch.float64)[:, :, None, None]
    kept = out.double() == own
    assert bool((kept == kept[:, :1]).all()), "mask differs between channels"
    return kept[:, 0], partners.cpu() != torch.arange(out.shape[0])


def bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(y1, y2, x1, x2) half-open bounding box of the True pixels of a non-empty (H, W) bool mask."""
    rows = mask.any(dim=1).nonzero().flatten()
    cols = mask.any(dim=0).nonzero().flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def tolerance(dtype: torch.dtype) -> float:
    return {torch.float16: 1e-3, torch.bfloat16: 8e-3}.get(dtype, 1e-6)


# -- spectra -----------------------------------------------------------------------------------


def mean_power(masks: torch.Tensor) -> torch.Tensor:
    """(H, W) average power spectrum (fft2, fftfreq order) of (N, ..., H, W) images, mean removed."""
    m = masks.reshape(-1, *masks.shape[-2:]).double()
    m = m - m.mean(dim=(-2, -1), keepdim=True)
    return (torch.fft.fft2(m).abs() ** 2).mean(0)


def anisotropy(masks: torch.Tensor) -> dict[str, float]:
    """Isotropy statistics of square (N, ..., H, W) masks; each is ~1 for an isotropic mask.

    * ``axes_r``: power at (fy=r, fx=0) over power at (fy=0, fx=r), r = 1..3 (the two axes);
    * ``diag_y_r`` / ``diag_x_r``: the ring through (3, 4), (4, 3) (r = 5) or (6, 8), (8, 6)
      (r = 10), off the axes, over the fy (resp. fx) axis at the same radius;
    * ``gradient``: energy of vertical over horizontal finite differences.
    """
    p = mean_power(masks)
    h, w = p.shape
    assert h == w and h >= 24, "the statistics need square masks of at least 24x24"
    stats: dict[str, float] = {}
    for r in (1, 2, 3):
        stats[f"axes_{r}"] = float(p[r, 0] / p[0, r])
    for r, (a, b) in ((5, (3, 4)), (10, (6, 8))):
        ring = (p[a, b] + p[b, a] + p[-a, b] + p[-b, a]) / 4
        stats[f"diag_y_{r}"] = float(ring / p[r, 0])
        stats[f"diag_x_{r}"] = float(ring / p[0, r])
    m = masks.reshape(-1, h, w).double()
    gy = (m[:, 1:, :] - m[:, :-1, :]).pow(2).mean()
    gx = (m[:, :, 1:] - m[:, :, :-1]).pow(2).mean()
    stats["gradient"] = float(gy / gx)
    return stats


def worst_log_ratio(stats: dict[str, float]) -> tuple[str, float]:
    """The statistic furthest from 1 (in log scale) and its |log|."""
    name = max(stats, key=lambda k: abs(math.log(stats[k])))
    return name, abs(math.log(stats[name]))


def reference_fmix_masks(lams: np.ndarray, size: tuple[int, int], *, decay: float = 3.0, seed: int = 0) -> np.ndarray:
    """(N, H, W) masks from a re-creation of ecs-vlc/FMix ``fmix.py`` (``fftfreqnd``,
    ``get_spectrum``, ``make_low_freq_image``, ``binarise_mask``), one mask per call, with its axis
    bug kept: ``spectrum[:, 0] + 1j * spectrum[:, 1]`` indexes the real/imaginary parts on the
    height axis instead of the last axis, so only two horizontal frequencies survive ``irfftn``.
    Randomness from a local numpy Generator instead of the reference's global ``np.random``."""
    rng = np.random.default_rng(seed)
    h, w = size
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 2] if w % 2 == 1 else np.fft.fftfreq(w)[: w // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = np.ones(1) / (np.maximum(freqs, np.array([1.0 / max(w, h)])) ** decay)
    masks = []
    for lam in lams:
        param = rng.standard_normal([1, *freqs.shape, 2])
        spectrum = np.expand_dims(scale, -1)[None, :] * param
        spectrum = spectrum[:, 0] + 1j * spectrum[:, 1]  # the bug: axis 1 is the height axis
        # irfftn over the last two axes, as numpy < 2 did for ``irfftn(spectrum, shape)``.
        grey = np.real(np.fft.irfftn(spectrum, (h, w), axes=(-2, -1)))[:1, :h, :w]
        grey = (grey - grey.min()) / (grey - grey.min()).max()
        idx = grey.reshape(-1).argsort()[::-1]
        flat = np.zeros(h * w)
        flat[idx[: round(float(lam) * h * w)]] = 1
        masks.append(flat.reshape(h, w))
    return np.stack(masks)
