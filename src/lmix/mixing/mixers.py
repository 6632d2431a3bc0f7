"""Mixers: parameter sampling (``sample``) separated from application (``apply``).

Every mixer is called as ``mixer(images, labels, generator=None) -> MixedBatch``. Without a
generator it uses its own, seeded from ``seed`` (or non-deterministically), one per device, so
the global RNG is never touched and the state can be checkpointed (``state_dict``).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from lmix._checks import check_probability
from lmix._seeds import derive_mixer_seed
from lmix.errors import LmixTypeError, LmixValueError
from lmix.mixing.batch import MixedBatch, mixed_cross_entropy
from lmix.mixing.masks import box_masks, fourier_noise, sharpen, top_mask
from lmix.mixing.sampling import sample_beta, sample_beta_lams, sample_pairing
from lmix.mixing.validation import (
    check_alpha,
    check_batch,
    check_box_size,
    check_decay,
    check_extras,
    check_k,
    check_mode,
    check_pairing,
)

__all__ = ["MixParams", "ChoiceParams", "Mixer", "NoMix", "Mixup", "CutMix", "Cutout", "LMix", "FMix", "MixChoice"]


_INT_OF_SIZE = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _select_into(mask: torch.Tensor, images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``torch.where(mask, images, out)``, written into ``out`` (a fresh tensor the caller owns).

    A bitwise select on the integer views, in place and without a temporary (a fresh
    full-size buffer costs page faults on CPU): ``out ^= x; out &= ~m; out ^= x`` leaves ``x``
    where ``m`` is all ones and ``out`` elsewhere. The same bits as ``torch.where`` for every
    value (inf and NaN included) and several times faster on CPU, whose ``where`` kernel is
    slow with a mask broadcast over the channels.

    Args:
        mask: (B or 1, 1, H, W) bool, True where ``images`` is kept.
        images: (B, C, H, W) floating point.
        out: (B, C, H, W) contiguous, same dtype as ``images``.
    """
    itype = _INT_OF_SIZE[images.element_size()]
    bits, source = out.view(itype), images.view(itype)
    bits ^= source
    bits &= mask.to(itype).sub_(1)  # 0 where the sample's own pixel is kept, all ones elsewhere
    bits ^= source
    return out


_WORKER_TAG = 0x6C6D_6978_776B  # distinct constants: a worker stream never equals a forked one
_FORK_TAG = 0x6C6D_6978_666B
_WORKER_KEY = "@worker-seed="


def _new_generator(key: str, seed: int) -> torch.Generator:
    """A generator on the device named by a cache key (``"cuda:0"``, ``"cpu@worker-seed=..."``)."""
    gen = torch.Generator(device=key.split(_WORKER_KEY, 1)[0])
    gen.manual_seed(seed)
    return gen


@dataclass
class MixParams:
    """Sampled parameters for one batch.

    Attributes:
        perm: (B,) int64 partner index of every sample.
        lam: (B,) float32 exact share of the sample's own image/label.
        mask: (B, 1, H, W) or (1, 1, H, W) bool, True where the sample's own pixel is kept
            (for ``erase``: float, 1 where kept, 0 where zeroed); ``None`` for a pixel-wise
            convex combination (Mixup) with weights ``lam``.
        erase: if True the partner is an all-zero image and labels are not mixed (Cutout).
    """

    perm: torch.Tensor
    lam: torch.Tensor
    mask: torch.Tensor | None = None
    erase: bool = False


class Mixer:
    """Base class of every mixing method: ``mixer(images, labels) -> MixedBatch``.

    A call is two halves: :meth:`sample` draws the batch's :class:`MixParams` (partners, lam,
    masks) from a ``torch.Generator``, and :meth:`apply` mixes the images with them; a subclass
    implements ``sample`` (and ``apply`` when it does more than select-and-blend). The mixer
    owns one generator per device, seeded from ``seed`` (see :meth:`generator_for`); the global
    RNG is never used. :meth:`state_dict` / :meth:`load_state_dict` checkpoint the generators,
    :meth:`fork` gives a DDP rank its own stream. Hyperparameters are keyword-only and validated.

    Args:
        seed: seed of the mixer's own generators (a non-negative integer); ``None`` draws one
            non-deterministically.

    Attributes:
        name: the registry name (``create_mixer(name)``).
        uses_model: True for mixers that act inside the model (PatchUp): they run the forward
            pass themselves in ``forward_loss(model, images, labels)``.
    """

    name: ClassVar[str] = "base"
    #: True for mixers that act inside the model (PatchUp): the trainer then calls
    #: ``forward_loss(model, images, labels, label_smoothing=...)`` instead of mixing the input.
    uses_model: ClassVar[bool] = False
    #: How partners are chosen (``sampling.sample_pairing``); set by the mixers that take ``pairing``.
    pairing: str = "random"

    def __init__(self, *, seed: int | None = None) -> None:
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
            raise LmixValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        if seed is None:
            seed = torch.Generator().seed()  # non-deterministic, leaves the global RNG alone
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}

    # -- randomness ---------------------------------------------------------------------
    def generator_for(self, device: torch.device | str) -> torch.Generator:
        """The mixer's own generator on ``device`` (created and seeded on first use).

        In the main process it is seeded with ``seed``. Inside a ``DataLoader`` worker
        (``torch.utils.data.get_worker_info()`` is not None) it is seeded with a hash of ``seed``
        and the worker's ``seed``, which torch derives from the DataLoader's generator (or the
        global seed) and changes for every worker and every epoch: each worker and each epoch
        then draws its own stream, and a run repeats exactly given the same DataLoader
        generator. Generators are cached per (device, worker seed): a persistent worker keeps
        advancing its stream across epochs, a new worker (new epoch) starts a fresh one.
        """
        key = str(torch.device(device))
        info = torch.utils.data.get_worker_info()
        seed = self.seed
        if info is not None:
            key = f"{key}{_WORKER_KEY}{info.seed}"
            seed = derive_mixer_seed(self.seed, info.seed, _WORKER_TAG)
        gen = self._generators.get(key)
        if gen is None:
            gen = _new_generator(key, seed)
            self._generators[key] = gen
        return gen

    def fork(self, index: int) -> Mixer:
        """A copy of this mixer whose stream is independent of this one's and of other indices'.

        The copy's ``seed`` (and that of every component of a ``MixChoice``) is derived
        deterministically from ``(seed, index)``; its generators start fresh. Use it to give
        every DDP rank its own masks when not training with ``lmix train`` (which seeds ranks
        itself): build the same mixer with the same seed on every rank, then
        ``mixer = mixer.fork(rank)``. Without it every rank would draw the same partners, lams
        and masks for its shard of the batch. DataLoader workers need no fork (see
        ``generator_for``).

        Args:
            index: a non-negative integer, e.g. the DDP rank.

        Returns:
            A new mixer of the same type and hyperparameters.
        """
        if not isinstance(index, numbers.Integral) or isinstance(index, bool) or index < 0:
            raise LmixValueError(f"fork index must be a non-negative integer (e.g. the DDP rank), got {index!r}")
        twin = copy.deepcopy(self)
        for mixer in twin._tree():
            mixer.seed = derive_mixer_seed(mixer.seed, int(index), _FORK_TAG)
            mixer._generators = {}
        return twin

    def _tree(self) -> list[Mixer]:
        """This mixer and the mixers it delegates to (``MixChoice``'s components)."""
        return [self]

    def state_dict(self) -> dict[str, Any]:
        """Seed and generator states, for bit-exact resume."""
        return {"seed": self.seed, "generators": {k: g.get_state() for k, g in self._generators.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (generators are recreated on their devices)."""
        self.seed = int(state["seed"])
        self._generators = {}
        for key, gen_state in state["generators"].items():
            gen = _new_generator(key, self.seed)
            gen.set_state(gen_state.cpu() if isinstance(gen_state, torch.Tensor) else gen_state)
            self._generators[key] = gen

    # -- the two halves -----------------------------------------------------------------
    def sample_partners(self, batch_size: int, *, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """(B,) int64 partner index of every sample, by the mixer's ``pairing``, on ``device``."""
        return sample_pairing(self.pairing, batch_size, generator=generator, device=device)

    def sample(
        self, batch_size: int, size: tuple[int, int], *, device: torch.device, generator: torch.Generator
    ) -> MixParams:
        """Draw the mixing parameters for a batch of ``batch_size`` images of ``size`` (H, W)."""
        raise NotImplementedError

    def apply(self, images: torch.Tensor, labels: torch.Tensor, params: MixParams) -> MixedBatch:
        """Mix (B, C, H, W) ``images`` and (B,) ``labels`` with sampled ``params``."""
        if params.erase:
            mixed = images * params.mask.to(images.dtype)
            return MixedBatch(mixed, labels, labels, params.lam)
        # index_select, not images[perm]: the same copy, several times faster on CPU.
        partner = images.index_select(0, params.perm)
        # Without autograd the partner copy is ours: mix into it instead of allocating again.
        in_place = not (images.requires_grad and torch.is_grad_enabled())
        lam = params.lam
        if params.mask is None:
            weight = lam.to(images.dtype)
            if in_place:
                mixed = partner.lerp_(images, weight.view(-1, 1, 1, 1))
            else:
                mixed = torch.lerp(partner, images, weight.view(-1, 1, 1, 1))
            # In float16/bfloat16 the weight actually applied is the rounded one: report that.
            lam = weight.to(torch.float32)
        elif in_place and images.device.type == "cpu":
            mixed = _select_into(params.mask, images, partner)
        else:
            mixed = torch.where(params.mask, images, partner)
        return MixedBatch(mixed, labels, labels.index_select(0, params.perm), lam)

    def apply_extra(self, tensor: torch.Tensor, params: MixParams) -> torch.Tensor:
        """Mix an extra tensor (segmentation map, depth, ...) like the images were mixed.

        For users who ``sample`` once and apply the parameters to several tensors; ``mixer(...,
        extras=[...])`` calls it for every extra. Mask methods (CutMix, LMix, FMix) take each
        pixel from the sample or its partner as the images' mask does; Mixup blends floating
        tensors with the same weight and rejects integer ones (a blend of class indices is
        meaningless: pass one-hot or soft maps); Cutout multiplies floating tensors by its mask
        and leaves integer ones (labels) unchanged; ``none`` returns the tensor unchanged. LMix's
        ``image_k`` sharpening is for images only and is not applied to extras.

        Args:
            tensor: (B, ..., H, W) of any dtype (floating required for Mixup), on the device of
                ``params``.
            params: what ``sample`` returned for the batch.

        Returns:
            A new tensor of ``tensor``'s shape and dtype (``tensor`` itself where unchanged).
        """
        if type(self).apply not in _STANDARD_APPLIES and type(self).apply_extra is Mixer.apply_extra:
            raise NotImplementedError(
                f"{type(self).__name__} overrides apply but not apply_extra: extras cannot be mixed like its images"
            )
        b = params.perm.shape[0]
        if tensor.ndim < 3 or tensor.shape[0] != b:
            raise LmixValueError(
                f"an extra tensor must have shape (B, ..., H, W) with B = {b}, got {tuple(tensor.shape)}"
            )
        ones = (1,) * (tensor.ndim - 1)
        if params.mask is not None:
            if tuple(params.mask.shape[-2:]) != tuple(tensor.shape[-2:]):
                raise LmixValueError(
                    f"an extra tensor must have the images' (H, W) = {tuple(params.mask.shape[-2:])}, "
                    f"got shape {tuple(tensor.shape)}"
                )
            mask = params.mask.reshape(params.mask.shape[0], *ones[:-2], *tensor.shape[-2:])
        if params.erase:
            return tensor * mask.to(tensor.dtype) if tensor.is_floating_point() else tensor
        partner = tensor.index_select(0, params.perm)
        if params.mask is not None:
            return torch.where(mask, tensor, partner)
        if not tensor.is_floating_point():
            raise LmixValueError(
                f"{type(self).__name__} blends pixels and cannot mix an integer extra tensor (dtype {tensor.dtype}); "
                "pass a floating one (e.g. one-hot or soft maps) or use a mask method (cutmix, lmix, fmix)"
            )
        return torch.lerp(partner, tensor, params.lam.to(tensor.dtype).view(b, *ones))

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        extras: Sequence[torch.Tensor] | None = None,
    ) -> MixedBatch:
        """Mix a batch.

        Args:
            images: (B, C, H, W) floating point, any device.
            labels: (B,) integer class indices on the same device.
            generator: source of randomness; default: the mixer's own for ``images.device``.
            extras: tensors shaped (B, ..., H, W) (e.g. (B, H, W) int64 segmentation maps or
                (B, C, H, W) float maps) mixed with the same partners and masks, see
                ``apply_extra``.

        Returns:
            ``MixedBatch`` with (B, C, H, W) images, (B,) labels_a, labels_b, lam, and the mixed
            ``extras`` in order.
        """
        images, labels = check_batch(images, labels)
        extras = check_extras(extras, images)
        if generator is None:
            generator = self.generator_for(images.device)
        params = self.sample(images.shape[0], tuple(images.shape[-2:]), device=images.device, generator=generator)
        batch = self.apply(images, labels, params)
        if extras:
            batch.extras = tuple(self.apply_extra(t, params) for t in extras)
        return batch

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class NoMix(Mixer):
    """No mixing: images unchanged, ``labels_b = labels_a``, ``lam = 1``."""

    name = "none"

    def sample(self, batch_size, size, *, device, generator):
        return MixParams(perm=torch.arange(batch_size, device=device), lam=torch.ones(batch_size, device=device))

    def apply(self, images, labels, params):
        return MixedBatch(images, labels, labels, params.lam)

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

    def __init__(
        self, *, alpha: float = 1.0, mode: str = "sample", pairing: str = "random", seed: int | None = None
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.mode = check_mode(mode)
        self.pairing = check_pairing(pairing)

    def sample(self, batch_size, size, *, device, generator):
        perm = self.sample_partners(batch_size, generator=generator, device=device)
        lam = sample_beta_lams(self.alpha, self.mode, batch_size, device=device, generator=generator)
        return MixParams(perm=perm, lam=lam)

    def extra_repr(self):
        return f"alpha={self.alpha}, mode={self.mode!r}, pairing={self.pairing!r}"


class CutMix(Mixer):
    """CutMix (Yun et al. 2019): paste a box of the partner into each image.

    Args:
        alpha: Beta concentration for the box area when ``size`` is None, > 0.
        size: ``None`` for the CutMix paper's box (side ratio ``sqrt(1 - lam)``, uniform centre,
            clipped at the border) or a fixed box ``(h, w)`` / side ``s`` with a uniform centre,
            also clipped. ``lam`` is always the area actually kept.
        mode: ``"sample"`` or ``"batch"``.
        box_rounding: ``"exact"`` (a box of exactly ``cut_h x cut_w`` pixels before clipping,
            rows ``cy - cut_h // 2`` to ``cy - cut_h // 2 + cut_h``) or ``"reference"``
            (clovaai/CutMix-PyTorch's ``rand_bbox``: rows ``cy - cut_h // 2`` to
            ``cy + cut_h // 2``, i.e. ``2 * (cut_h // 2)`` pixels, one fewer for odd sides).
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
        size: int | tuple[int, int] | None = None,
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

    def sample(self, batch_size, size, *, device, generator):
        h, w = size
        n = batch_size if self.mode == "sample" else 1
        gdev = generator.device
        perm = self.sample_partners(batch_size, generator=generator, device=device)
        if self.size is None:
            lam0 = sample_beta(self.alpha, n, generator=generator, device=gdev)
            ratio = torch.sqrt(1.0 - lam0.double())
            box_h = (h * ratio).long()
            box_w = (w * ratio).long()
        else:
            box_h = torch.full((n,), self.size[0], dtype=torch.long, device=gdev)
            box_w = torch.full((n,), self.size[1], dtype=torch.long, device=gdev)
        if self.box_rounding == "reference":
            # rand_bbox spans [c - cut // 2, c + cut // 2): box_masks' start is the same, its length 2 * (cut // 2).
            box_h, box_w = box_h // 2 * 2, box_w // 2 * 2
        cy = torch.randint(0, h, (n,), generator=generator, device=gdev)
        cx = torch.randint(0, w, (n,), generator=generator, device=gdev)
        keep, lam = box_masks(*(t.to(device) for t in (cy, cx, box_h, box_w)), (h, w))
        return MixParams(perm=perm, lam=lam.expand(batch_size).contiguous(), mask=keep.bool())

    def extra_repr(self):
        rounding = f", box_rounding={self.box_rounding!r}" if self.box_rounding != "exact" else ""
        return f"alpha={self.alpha}, size={self.size}, mode={self.mode!r}, pairing={self.pairing!r}{rounding}"


class Cutout(Mixer):
    """Cutout (DeVries & Taylor 2017): zero a square per sample; the square may leave the image.

    Labels are not mixed (``lam = 1``).

    Args:
        size: side of the square (or ``(h, w)``), > 0.
        seed: seed of the mixer's own generator.
    """

    name = "cutout"

    def __init__(self, *, size: int | tuple[int, int] = 16, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.size = check_box_size(size, name="size")

    def sample(self, batch_size, size, *, device, generator):
        h, w = size
        gdev = generator.device
        cy = torch.randint(0, h, (batch_size,), generator=generator, device=gdev).to(device)
        cx = torch.randint(0, w, (batch_size,), generator=generator, device=gdev).to(device)
        bh = torch.full((batch_size,), self.size[0], dtype=torch.long, device=device)
        bw = torch.full((batch_size,), self.size[1], dtype=torch.long, device=device)
        keep, _ = box_masks(cy, cx, bh, bw, (h, w))
        return MixParams(
            perm=torch.arange(batch_size, device=device),
            lam=torch.ones(batch_size, device=device),
            mask=keep,  # float 0/1: a product is several times faster than torch.where on CPU
            erase=True,
        )

    def extra_repr(self):
        return f"size={self.size}"


class LMix(Mixer):
    """LMix: FMix masks with high-frequency emphasis (SPEC section 1).

    Args:
        alpha: Beta concentration of the mask area, > 0.
        decay: low-pass exponent delta, >= 0 (the paper uses 3).
        k: high-frequency emphasis of the mask spectrum, >= 0 (``k = 0`` is FMix).
        image_k: sharpening of the mixed images, ``1 + image_k * H_hp`` per channel, >= 0
            (0: off).
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
        mode: str = "sample",
        pairing: str = "random",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.decay = check_decay(decay)
        self.k = check_k(k, name="k")
        self.image_k = check_k(image_k, name="image_k")
        self.mode = check_mode(mode)
        self.pairing = check_pairing(pairing)

    def sample(self, batch_size, size, *, device, generator):
        n = batch_size if self.mode == "sample" else 1
        perm = self.sample_partners(batch_size, generator=generator, device=device)
        lam = sample_beta(self.alpha, n, generator=generator, device=device)
        grey = fourier_noise(n, size, decay=self.decay, k=self.k, generator=generator, device=device)
        mask, area = top_mask(grey, lam)
        return MixParams(perm=perm, lam=area.expand(batch_size).contiguous(), mask=mask)

    def apply(self, images, labels, params):
        batch = super().apply(images, labels, params)
        if self.image_k > 0:
            batch.images = sharpen(batch.images, decay=self.decay, k=self.image_k)
        return batch

    def extra_repr(self):
        return (
            f"alpha={self.alpha}, decay={self.decay}, k={self.k}, image_k={self.image_k}, mode={self.mode!r}, "
            f"pairing={self.pairing!r}"
        )


class FMix(LMix):
    """FMix (Harris et al. 2020) with isotropic masks: LMix with ``k = 0`` and no sharpening.

    Args:
        alpha: Beta concentration of the mask area, > 0.
        decay: low-pass exponent delta, >= 0.
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
        mode: str = "sample",
        pairing: str = "random",
        seed: int | None = None,
    ) -> None:
        super().__init__(alpha=alpha, decay=decay, k=0.0, image_k=0.0, mode=mode, pairing=pairing, seed=seed)

    def extra_repr(self):
        return f"alpha={self.alpha}, decay={self.decay}, mode={self.mode!r}, pairing={self.pairing!r}"


#: ``apply`` methods that mix with a mask or a per-sample weight only (``Mixer.apply_extra``
#: and ``MixChoice(granularity="sample")`` rely on that).
_STANDARD_APPLIES = (Mixer.apply, NoMix.apply, LMix.apply)


@dataclass
class ChoiceParams(MixParams):
    """Parameters drawn by a ``MixChoice``.

    ``perm`` and ``lam`` are those of the mixed batch. With ``granularity="batch"``, ``index`` is
    the component chosen for the batch and ``inner`` its own parameters (``mask`` and ``erase``
    are copied from them). With ``granularity="sample"``:

    Attributes:
        index: the component used for the whole batch (``granularity="batch"``), else None.
        inner: that component's parameters, else None.
        choice: (B,) int64 component of every sample (``granularity="sample"``), else None.
        components: every component's parameters (per-sample; their ``perm`` is ignored: all
            share ``perm``).
    """

    index: int | None = None
    inner: MixParams | None = None
    choice: torch.Tensor | None = None
    components: tuple[MixParams, ...] = ()


def _standard_apply(mixer: Mixer) -> bool:
    return type(mixer).apply in _STANDARD_APPLIES and not mixer.uses_model


class MixChoice(Mixer):
    """Apply one of several mixers per batch (the paper's LMix + Mixup, section 4.2) or per sample.

    Args:
        mixers: two or more mixers.
        p: selection probabilities (default: uniform); ignored when alternating.
        schedule: ``"random"`` (draw a mixer with probabilities ``p``) or ``"alternate"``
            (cycle through ``mixers`` in order, one per batch; batch granularity only).
        granularity: ``"batch"`` (one mixer for the whole batch) or ``"sample"`` (one per
            sample, timm's ``switch_prob`` recipe: ``create_mixer("mixup+cutmix",
            granularity="sample", p=[0.5, 0.5])``). Per sample, every component draws its
            parameters for the whole batch, all share one partner permutation (drawn with the
            first component's ``pairing`` that has one), and each sample takes the mask or Mixup
            weight, ``lam`` and label pairing of its own component, combined into one weight map
            and applied by a single ``torch.where`` (masks only) or ``torch.lerp`` (with a
            blend such as Mixup). Only input-space mixers with the standard ``apply`` (none,
            Mixup, CutMix, Cutout, LMix, FMix, and subclasses that keep their ``apply``);
            Cutout samples get a zero partner and keep their label, ``none`` samples are
            unchanged, LMix's ``image_k`` sharpening applies to LMix's samples only.
        seed: seed of the choice's own generators (the components keep their own for their
            parameters when no generator is passed).

    Randomness: with ``granularity="batch"`` the choice is drawn on the CPU (the choice's own
    CPU generator, or the passed generator), so choosing costs no host-device synchronisation
    unless a non-CPU generator is passed explicitly. With ``"sample"`` the per-sample choice
    and the shared partners are drawn on the images' device and never read back.
    """

    name = "choice"

    def __init__(
        self,
        mixers: Sequence[Mixer],
        *,
        p: Sequence[float] | None = None,
        schedule: str = "random",
        granularity: str = "batch",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        mixers = list(mixers)
        if len(mixers) < 2 or not all(isinstance(m, Mixer) for m in mixers):
            raise LmixValueError(f"mixers must be a sequence of at least two Mixer instances, got {mixers!r}")
        if schedule not in ("random", "alternate"):
            raise LmixValueError(f"schedule must be 'random' or 'alternate', got {schedule!r}")
        if granularity not in ("batch", "sample"):
            raise LmixValueError(
                f"granularity must be 'batch' (one mixer per batch) or 'sample' (one per sample), got {granularity!r}"
            )
        if granularity == "sample":
            if schedule != "random":
                raise LmixValueError("schedule='alternate' needs granularity='batch'; per sample the choice is random")
            bad = [m for m in mixers if not _standard_apply(m)]
            if bad:
                raise LmixValueError(
                    "granularity='sample' combines input-space mixers with the standard mask/blend apply (none, "
                    f"mixup, cutmix, cutout, lmix, fmix); not supported: {', '.join(repr(m) for m in bad)}"
                )
        if p is None:
            p = [1.0 / len(mixers)] * len(mixers)
        p = [check_probability(x, name="p") for x in p]
        if len(p) != len(mixers) or abs(sum(p) - 1.0) > 1e-6:
            raise LmixValueError(f"p must hold one probability per mixer ({len(mixers)}) summing to 1, got {p}")
        self.mixers = mixers
        self.p = p
        self.schedule = schedule
        self.granularity = granularity
        self.calls = 0
        # The first component that pairs samples sets the shared pairing of per-sample mixing.
        self.pairing = next((m.pairing for m in mixers if "pairing" in vars(m)), "random")

    def _tree(self) -> list[Mixer]:
        return [self, *(m for sub in self.mixers for m in sub._tree())]

    @property
    def uses_model(self) -> bool:  # type: ignore[override]
        return any(m.uses_model for m in self.mixers)

    # -- choosing ---------------------------------------------------------------------------
    def choose(self, generator: torch.Generator) -> int:
        """Index of the mixer for the next batch (``granularity="batch"``).

        Drawn with ``generator``: on a CPU generator (the default, see ``_control``) this reads
        no device memory; a CUDA generator passed explicitly costs one synchronisation.
        """
        if self.schedule == "alternate":
            return self.calls % len(self.mixers)
        probs = torch.tensor(self.p, dtype=torch.float32)
        if generator.device.type != "cpu":
            probs = probs.to(generator.device)
        return int(torch.multinomial(probs, 1, generator=generator).item())

    def choose_per_sample(self, batch_size: int, *, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """(B,) int64 component index of every sample, drawn with ``p`` on ``generator``'s device.

        Thresholds on one uniform per sample, compared with Python floats: no copy to the
        device and no read-back.
        """
        u = torch.rand(batch_size, generator=generator, device=generator.device).to(device)
        choice = torch.zeros(batch_size, dtype=torch.int64, device=device)
        edge = 0.0
        for p in self.p[:-1]:
            edge += p
            choice += u >= edge
        return choice

    def _control(self, generator: torch.Generator | None) -> torch.Generator:
        return generator if generator is not None else self.generator_for("cpu")

    def _next(self, generator: torch.Generator | None) -> Mixer:
        index = self.choose(self._control(generator))
        self.calls += 1
        return self.mixers[index]

    # -- sampling and applying ------------------------------------------------------------
    def _sample_per_sample(
        self,
        batch_size: int,
        size: tuple[int, int],
        *,
        device: torch.device,
        generator: torch.Generator,
        component_generators: Sequence[torch.Generator],
    ) -> ChoiceParams:
        perm = self.sample_partners(batch_size, device=device, generator=generator)
        choice = self.choose_per_sample(batch_size, device=device, generator=generator)
        comps = tuple(
            m.sample(batch_size, size, device=device, generator=g)
            for m, g in zip(self.mixers, component_generators, strict=True)
        )
        lam = comps[0].lam
        for c in range(1, len(comps)):
            lam = torch.where(choice == c, comps[c].lam, lam)
        return ChoiceParams(perm=perm, lam=lam, choice=choice, components=comps)

    def sample(self, batch_size, size, *, device, generator):
        """Draw the choice and the chosen component's (or every component's) parameters.

        With ``granularity="batch"`` this advances the schedule as a call does.
        """
        if self.granularity == "sample":
            return self._sample_per_sample(
                batch_size,
                size,
                device=device,
                generator=generator,
                component_generators=[generator] * len(self.mixers),
            )
        index = self.choose(generator)
        self.calls += 1
        inner = self.mixers[index].sample(batch_size, size, device=device, generator=generator)
        return ChoiceParams(
            perm=inner.perm, lam=inner.lam, mask=inner.mask, erase=inner.erase, index=index, inner=inner
        )

    def _weight_map(
        self,
        params: ChoiceParams,
        like: torch.Tensor,
        *,
        blend_dtype: torch.dtype | None,
        erase_keeps: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample own-share map and lam of the chosen components.

        Args:
            params: per-sample parameters from ``sample``.
            like: (B, ..., H, W) tensor the map must broadcast against.
            blend_dtype: dtype of a float map (with a blend component), None for a bool map.
            erase_keeps: Cutout samples keep every pixel (integer extras) instead of their mask.

        Returns:
            ((B, 1, ..., H, W) weight, bool when ``blend_dtype`` is None, else of
            ``blend_dtype``; (B,) float32 lam, with Mixup's weight as rounded to ``blend_dtype``).
        """
        b, spatial = like.shape[0], like.shape[-2:]
        ones = (1,) * (like.ndim - 1)
        weight: torch.Tensor | None = None
        lam = params.lam
        for c, (mixer, cp) in enumerate(zip(self.mixers, params.components, strict=True)):
            if isinstance(mixer, NoMix) or (cp.erase and erase_keeps):
                w_c = torch.ones((1,) * like.ndim, dtype=blend_dtype or torch.bool, device=like.device)
            elif cp.mask is not None:
                w_c = cp.mask.reshape(cp.mask.shape[0], *ones[:-2], *spatial)
                w_c = w_c.to(torch.bool) if blend_dtype is None else w_c.to(blend_dtype)
            else:  # a blend: only reached with blend_dtype set
                w_c = cp.lam.to(blend_dtype).view(b, *ones)
                lam = torch.where(params.choice == c, w_c.view(b).to(torch.float32), lam)
            pick = (params.choice == c).view(b, *ones)
            weight = w_c.expand(b, *w_c.shape[1:]) if weight is None else torch.where(pick, w_c, weight)
        assert weight is not None
        return weight, lam

    def _blends(self, params: ChoiceParams) -> bool:
        """Whether a component mixes by a per-sample weight (Mixup) rather than a mask."""
        return any(cp.mask is None and not isinstance(m, NoMix) for m, cp in zip(self.mixers, params.components))

    def apply(self, images, labels, params):
        """Mix with parameters from ``sample``: the chosen component's ``apply`` per batch, or one
        weight map and a single ``where``/``lerp`` per sample."""
        if not isinstance(params, ChoiceParams):
            raise LmixTypeError(
                f"MixChoice.apply needs the ChoiceParams its sample() returns, got {type(params).__name__}"
            )
        if params.index is not None:
            return self.mixers[params.index].apply(images, labels, params.inner)
        b = images.shape[0]
        blend = self._blends(params)
        weight, lam = self._weight_map(params, images, blend_dtype=images.dtype if blend else None)
        partner = images.index_select(0, params.perm)
        keep_labels = torch.zeros(b, dtype=torch.bool, device=images.device)
        for c, (mixer, cp) in enumerate(zip(self.mixers, params.components, strict=True)):
            if cp.erase or isinstance(mixer, NoMix):
                keep_labels |= params.choice == c
            if cp.erase:  # Cutout: the partner is a zero image
                partner = partner.masked_fill((params.choice == c).view(b, 1, 1, 1), 0)
        mixed = torch.lerp(partner, images, weight) if blend else torch.where(weight, images, partner)
        for c, mixer in enumerate(self.mixers):
            if isinstance(mixer, LMix) and mixer.image_k > 0:
                sharp = sharpen(mixed, decay=mixer.decay, k=mixer.image_k)
                mixed = torch.where((params.choice == c).view(b, 1, 1, 1), sharp, mixed)
        labels_b = torch.where(keep_labels, labels, labels.index_select(0, params.perm))
        return MixedBatch(mixed, labels, labels_b, lam)

    def apply_extra(self, tensor, params):
        """Mix an extra (B, ..., H, W) tensor as the images: the chosen component's
        ``apply_extra`` per batch, or per sample that of each sample's component (integer
        tensors need mask components only: none, Cutout, CutMix, LMix, FMix)."""
        if not isinstance(params, ChoiceParams):
            raise LmixTypeError(f"MixChoice needs the ChoiceParams its sample() returns, got {type(params).__name__}")
        if params.index is not None:
            return self.mixers[params.index].apply_extra(tensor, params.inner)
        b = params.perm.shape[0]
        if tensor.ndim < 3 or tensor.shape[0] != b:
            raise LmixValueError(
                f"an extra tensor must have shape (B, ..., H, W) with B = {b}, got {tuple(tensor.shape)}"
            )
        floating = tensor.is_floating_point()
        blend = self._blends(params)
        if blend and not floating:
            raise LmixValueError(
                f"{self!r} blends pixels (Mixup) in some samples and cannot mix an integer extra tensor (dtype "
                f"{tensor.dtype}); pass a floating one (e.g. one-hot or soft maps)"
            )
        weight, _ = self._weight_map(
            params, tensor, blend_dtype=tensor.dtype if blend else None, erase_keeps=not floating
        )
        partner = tensor.index_select(0, params.perm)
        if floating:
            for c, cp in enumerate(params.components):
                if cp.erase:
                    partner = partner.masked_fill((params.choice == c).view(b, *(1,) * (tensor.ndim - 1)), 0)
        return torch.lerp(partner, tensor, weight) if blend else torch.where(weight, tensor, partner)

    def __call__(self, images, labels, generator=None, *, extras=None):
        images, labels = check_batch(images, labels)
        if self.granularity == "sample":
            extras = check_extras(extras, images)
            own = generator is None
            gen = self.generator_for(images.device) if own else generator
            params = self._sample_per_sample(
                images.shape[0],
                tuple(images.shape[-2:]),
                device=images.device,
                generator=gen,
                component_generators=[m.generator_for(images.device) if own else generator for m in self.mixers],
            )
            batch = self.apply(images, labels, params)
            if extras:
                batch.extras = tuple(self.apply_extra(t, params) for t in extras)
            return batch
        mixer = self._next(generator)
        # Components of other authors may predate ``extras``: pass it only when given.
        if extras is None:
            return mixer(images, labels, generator=generator)
        return mixer(images, labels, generator=generator, extras=extras)

    def forward_loss(self, model, images, labels, *, label_smoothing: float = 0.0, generator=None):
        """The training forward pass: per batch, the chosen mixer's own ``forward_loss`` for a
        mixer that acts inside the model (PatchUp), else mix the input, run the model, mixed loss.

        Returns:
            (tuple[torch.Tensor, torch.Tensor, MixedBatch]): (B, K) logits, the scalar loss and
                the ``MixedBatch``, as ``PatchUp.forward_loss``.
        """
        check_batch(images, labels)
        if self.granularity == "sample":
            batch = self(images, labels, generator=generator)
        else:
            mixer = self._next(generator)
            if mixer.uses_model:
                return mixer.forward_loss(model, images, labels, label_smoothing=label_smoothing, generator=generator)
            batch = mixer(images, labels, generator=generator)
        logits = model(batch.images)
        return logits, mixed_cross_entropy(logits, batch, label_smoothing=label_smoothing), batch

    def state_dict(self):
        state = super().state_dict()
        state["calls"] = self.calls
        state["mixers"] = [m.state_dict() for m in self.mixers]
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.calls = int(state["calls"])
        for mixer, sub in zip(self.mixers, state["mixers"], strict=True):
            mixer.load_state_dict(sub)

    def extra_repr(self):
        extra = f", granularity={self.granularity!r}" if self.granularity != "batch" else ""
        return f"{self.mixers!r}, p={self.p}, schedule={self.schedule!r}{extra}"
