"""The input-space mixers: none, Mixup, CutMix, Cutout, LMix and FMix.

Each one implements ``sample`` (its parameters for a batch); the mixing itself is
``lmix.mixing.base.Mixer.apply`` (select or blend), which ``LMix`` extends with its optional
sharpening. ``MixChoice`` (``lmix.mixing.choice``) combines them. Every one takes (B, C, L)
sequences, (B, C, H, W) images and (B, C, D, H, W) volumes: CutMix and Cutout cut segments,
rectangles or cuboids, LMix and FMix draw 1-, 2- or 3-D Fourier masks.
"""

from __future__ import annotations

import torch

from lmix.errors import LmixValueError
from lmix.mixing.base import STANDARD_APPLIES, Mixer, MixParams
from lmix.mixing.batch import MixedBatch
from lmix.mixing.masks import boxes, cutmix_sides, fourier_top_masks, sharpen
from lmix.mixing.sampling import sample_beta, sample_beta_lams
from lmix.mixing.validation import (
    box_sides,
    check_alpha,
    check_box_size,
    check_decay,
    check_flag,
    check_k,
    check_max_soft,
    check_mode,
    check_pairing,
)

__all__ = ["NoMix", "Mixup", "CutMix", "Cutout", "LMix", "FMix"]


class NoMix(Mixer):
    """No mixing: images unchanged, ``labels_b = labels_a``, ``lam = 1``."""

    name = "none"

    def sample(self, batch_size, image_size, *, device, generator):
        return MixParams(perm=torch.arange(batch_size, device=device), lam=torch.ones(batch_size, device=device))

    def apply(self, images, labels, params):
        return MixedBatch(images, labels, labels, params.lam, params=params)

    def apply_extra(self, tensor, params):
        return tensor


class Mixup(Mixer):
    """Mixup (Zhang et al. 2018): ``x = lam x + (1 - lam) x[perm]``, ``lam ~ Beta(alpha, alpha)``.

    Args:
        alpha: Beta concentration, > 0.
        mode: ``"sample"`` (one lam and partner per sample) or ``"batch"`` (one lam per batch).
        pairing: how partners are chosen: ``"random"`` (a uniform permutation, the default),
            ``"no_self"`` (a random cycle: no sample is its own partner), ``"flip"`` (``i`` with
            ``B - 1 - i``, as timm) or ``"roll"`` (``i`` with ``i - 1``, as torchvision v2).
        seed: seed of the mixer's own generator (``None``: non-deterministic).
    """

    name = "mixup"
    blends = True

    def __init__(
        self, *, alpha: float = 1.0, mode: str = "sample", pairing: str = "random", seed: int | None = None
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.mode = check_mode(mode)
        self.pairing = check_pairing(pairing)

    def sample(self, batch_size, image_size, *, device, generator):
        perm = self.sample_partners(batch_size, generator=generator, device=device)
        lam = sample_beta_lams(self.alpha, self.mode, batch_size, device=device, generator=generator)
        return MixParams(perm=perm, lam=lam)

    def extra_repr(self):
        return f"alpha={self.alpha}, mode={self.mode!r}, pairing={self.pairing!r}"


class CutMix(Mixer):
    """CutMix (Yun et al. 2019): paste a box of the partner into each image.

    In N-D the box is a segment (sequences), a rectangle (images) or a cuboid (volumes).

    Args:
        alpha: Beta concentration for the box volume when ``size`` is None, > 0.
        size: ``None`` for the CutMix paper's box (side ratio ``(1 - lam) ** (1 / d)`` on each of
            the d spatial axes, ``sqrt(1 - lam)`` for images, so that the box holds ``1 - lam`` of
            the pixels before clipping; uniform centre, clipped at the border) or a fixed box: an
            int ``s`` (a cube of side s in any dimension) or one side per spatial axis (``(h, w)``
            for images), with a uniform centre, also clipped. ``lam`` is always the share actually kept.
        mode: ``"sample"`` or ``"batch"``.
        box_rounding: ``"exact"`` (a box of exactly ``cut_h x cut_w`` pixels before clipping,
            rows ``cy - cut_h // 2`` to ``cy - cut_h // 2 + cut_h``) or ``"reference"``
            (clovaai/CutMix-PyTorch's ``rand_bbox``: rows ``cy - cut_h // 2`` to
            ``cy + cut_h // 2``, i.e. ``2 * (cut_h // 2)`` pixels, one fewer for odd sides), on
            every axis.
        pairing: how partners are chosen: ``"random"`` (a uniform permutation, the default),
            ``"no_self"`` (a random cycle: no sample is its own partner), ``"flip"`` (``i`` with
            ``B - 1 - i``, as timm) or ``"roll"`` (``i`` with ``i - 1``, as torchvision v2).
        seed: seed of the mixer's own generator.
    """

    name = "cutmix"

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        size: int | tuple[int, ...] | None = None,
        mode: str = "sample",
        pairing: str = "random",
        box_rounding: str = "exact",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.size = None if size is None else check_box_size(size, name="size")
        self.mode = check_mode(mode)
        self.pairing = check_pairing(pairing)
        if box_rounding not in ("exact", "reference"):
            raise LmixValueError(
                "box_rounding must be 'exact' (a box of exactly the cut size) or 'reference' (clovaai/CutMix-PyTorch's "
                f"rand_bbox: centre +- cut // 2), got {box_rounding!r}"
            )
        self.box_rounding = str(box_rounding)

    def sample(self, batch_size, image_size, *, device, generator):
        size = tuple(image_size)
        d = len(size)
        n = batch_size if self.mode == "sample" else 1
        gdev = generator.device
        perm = self.sample_partners(batch_size, generator=generator, device=device)
        if self.size is None:
            sides = cutmix_sides(sample_beta(self.alpha, n, generator=generator, device=gdev), size)
        else:
            sides = [torch.full((n,), s, dtype=torch.long, device=gdev) for s in box_sides(self.size, d)]
        if self.box_rounding == "reference":
            # rand_bbox spans [c - cut // 2, c + cut // 2): boxes' start is the same, its length 2 * (cut // 2).
            sides = [s // 2 * 2 for s in sides]
        centres = [torch.randint(0, side, (n,), generator=generator, device=gdev) for side in size]
        keep, lam = boxes(tuple(c.to(device) for c in centres), tuple(s.to(device) for s in sides), size)
        return MixParams(perm=perm, lam=lam.expand(batch_size).contiguous(), mask=keep.bool())

    def extra_repr(self):
        rounding = f", box_rounding={self.box_rounding!r}" if self.box_rounding != "exact" else ""
        return f"alpha={self.alpha}, size={self.size}, mode={self.mode!r}, pairing={self.pairing!r}{rounding}"


class Cutout(Mixer):
    """Cutout (DeVries & Taylor 2017): zero a square per sample; the square may leave the image.

    Labels are not mixed (``lam = 1``). In N-D the square is a segment or a cube.

    Args:
        size: side of the square (an int: a cube of that side in any dimension) or one side per
            spatial axis (``(h, w)`` for images), > 0.
        seed: seed of the mixer's own generator.
    """

    name = "cutout"

    def __init__(self, *, size: int | tuple[int, ...] = 16, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.size = check_box_size(size, name="size")

    def sample(self, batch_size, image_size, *, device, generator):
        size = tuple(image_size)
        gdev = generator.device
        centres = tuple(
            torch.randint(0, side, (batch_size,), generator=generator, device=gdev).to(device) for side in size
        )
        sides = tuple(
            torch.full((batch_size,), s, dtype=torch.long, device=device) for s in box_sides(self.size, len(size))
        )
        keep, _ = boxes(centres, sides, size)
        return MixParams(
            perm=torch.arange(batch_size, device=device),
            lam=torch.ones(batch_size, device=device),
            mask=keep,  # float 0/1: a product is several times faster than torch.where on CPU
            erase=True,
        )

    def extra_repr(self):
        return f"size={self.size}"


class LMix(Mixer):
    """LMix: FMix masks with high-frequency emphasis (docs/method.md), in 1, 2 or 3 spatial dimensions.

    Args:
        alpha: Beta concentration of the mask area, > 0.
        decay: low-pass exponent delta, >= 0 (the paper uses 3).
        k: high-frequency emphasis of the mask spectrum, >= 0 (``k = 0`` is FMix).
        image_k: sharpening of the mixed images, ``1 + image_k * H_hp`` per channel, >= 0
            (0: off).
        max_soft: soft mask edges, in [0, 0.5] (the FMix reference's ``max_soft``; 0, the default:
            binary masks). Around the threshold the mask ramps linearly from 1 to 0 over
            ``2 * floor(N * min(max_soft, lam, 1 - lam))`` pixels (``masks.soft_top_mask``) and the
            images are blended pixel by pixel with it; ``lam`` is the mask's exact mean,
            ``round(lam * N) / N`` as for binary masks.
        reformulate: the FMix reference's reformulation: the mask area is drawn from
            ``Beta(alpha + 1, alpha)`` (mean ``(alpha + 1) / (2 alpha + 1)``) and the target is
            the sample's own label alone (``batch.lam = 1``; the area is the mask's mean), as the
            reference's ``fmix_loss(..., reformulate=True)``. Default False.
        mode: ``"sample"`` (one lam, partner and mask per sample) or ``"batch"``.
        pairing: how partners are chosen: ``"random"`` (a uniform permutation, the default),
            ``"no_self"`` (a random cycle: no sample is its own partner), ``"flip"`` (``i`` with
            ``B - 1 - i``, as timm) or ``"roll"`` (``i`` with ``i - 1``, as torchvision v2).
        seed: seed of the mixer's own generator.
    """

    name = "lmix"

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        decay: float = 3.0,
        k: float = 1.0,
        image_k: float = 0.0,
        max_soft: float = 0.0,
        reformulate: bool = False,
        mode: str = "sample",
        pairing: str = "random",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.decay = check_decay(decay)
        self.k = check_k(k, name="k")
        self.image_k = check_k(image_k, name="image_k")
        self.max_soft = check_max_soft(max_soft)
        self.reformulate = check_flag(reformulate, name="reformulate")
        self.mode = check_mode(mode)
        self.pairing = check_pairing(pairing)

    def sample(self, batch_size, image_size, *, device, generator):
        n = batch_size if self.mode == "sample" else 1
        perm = self.sample_partners(batch_size, generator=generator, device=device)
        if self.reformulate:
            lam = sample_beta(self.alpha + 1.0, n, beta=self.alpha, generator=generator, device=device)
        else:
            lam = sample_beta(self.alpha, n, generator=generator, device=device)
        mask, area = fourier_top_masks(
            lam, tuple(image_size), decay=self.decay, k=self.k, generator=generator, max_soft=self.max_soft
        )
        if self.reformulate:
            area = torch.ones_like(area)  # the target is the sample's own label
        return MixParams(perm=perm, lam=area.expand(batch_size).contiguous(), mask=mask)

    def apply(self, images, labels, params):
        batch = super().apply(images, labels, params)
        if self.image_k > 0:
            batch.images = sharpen(batch.images, decay=self.decay, k=self.image_k)
        return batch

    def _soft_repr(self) -> str:
        soft = f", max_soft={self.max_soft}" if self.max_soft else ""
        return soft + (", reformulate=True" if self.reformulate else "")

    def extra_repr(self):
        return (
            f"alpha={self.alpha}, decay={self.decay}, k={self.k}, image_k={self.image_k}, mode={self.mode!r}, "
            f"pairing={self.pairing!r}{self._soft_repr()}"
        )


class FMix(LMix):
    """FMix (Harris et al. 2020) with isotropic masks: LMix with ``k = 0`` and no sharpening.

    Args:
        alpha: Beta concentration of the mask area, > 0.
        decay: low-pass exponent delta, >= 0.
        max_soft: soft mask edges, in [0, 0.5] (0: binary masks; see ``LMix``).
        reformulate: the FMix reference's reformulation (area from ``Beta(alpha + 1, alpha)``,
            target the sample's own label; see ``LMix``).
        mode: ``"sample"`` or ``"batch"``.
        pairing: how partners are chosen: ``"random"`` (a uniform permutation, the default),
            ``"no_self"`` (a random cycle: no sample is its own partner), ``"flip"`` (``i`` with
            ``B - 1 - i``, as timm) or ``"roll"`` (``i`` with ``i - 1``, as torchvision v2).
        seed: seed of the mixer's own generator.
    """

    name = "fmix"

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        decay: float = 3.0,
        max_soft: float = 0.0,
        reformulate: bool = False,
        mode: str = "sample",
        pairing: str = "random",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            alpha=alpha,
            decay=decay,
            k=0.0,
            image_k=0.0,
            max_soft=max_soft,
            reformulate=reformulate,
            mode=mode,
            pairing=pairing,
            seed=seed,
        )

    def extra_repr(self):
        return (
            f"alpha={self.alpha}, decay={self.decay}, mode={self.mode!r}, pairing={self.pairing!r}{self._soft_repr()}"
        )


#: The mask/blend ``apply`` of these mixers is standard (``MixChoice(mode="sample")`` combines them).
STANDARD_APPLIES.extend([NoMix.apply, LMix.apply])
