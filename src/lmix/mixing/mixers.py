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

from lmix.mixing.batch import MixedBatch, mixed_cross_entropy
from lmix.mixing.masks import box_masks, fourier_noise, sharpen, top_mask
from lmix.mixing.sampling import sample_beta, sample_pairing
from lmix.mixing.validation import (
    check_alpha,
    check_batch,
    check_box_size,
    check_decay,
    check_k,
    check_mode,
    check_pairing,
    check_probability,
)

__all__ = ["MixParams", "Mixer", "NoMix", "Mixup", "CutMix", "Cutout", "LMix", "FMix", "MixChoice"]


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


_MASK64 = (1 << 64) - 1
_WORKER_TAG = 0x6C6D_6978_776B  # distinct constants: a worker stream never equals a forked one
_FORK_TAG = 0x6C6D_6978_666B
_WORKER_KEY = "@worker-seed="


def _splitmix64(x: int) -> int:
    """One step of SplitMix64 (Steele et al. 2014): a bijective, well-mixing 64-bit hash."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(*parts: int) -> int:
    """A seed in [0, 2**63) that depends on every integer of ``parts`` (order included)."""
    h = 0
    for part in parts:
        h = _splitmix64(h ^ (int(part) & _MASK64))
    return h >> 1


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
    """Base class: owns a per-device generator and implements ``__call__`` from sample + apply."""

    name: ClassVar[str] = "base"
    #: True for mixers that act inside the model (PatchUp): the trainer then calls
    #: ``forward_loss(model, images, labels, label_smoothing=...)`` instead of mixing the input.
    uses_model: ClassVar[bool] = False
    #: How partners are chosen (``sampling.sample_pairing``); set by the mixers that take ``pairing``.
    pairing: str = "random"

    def __init__(self, *, seed: int | None = None) -> None:
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
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
            seed = derive_seed(self.seed, info.seed, _WORKER_TAG)
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
            raise ValueError(f"fork index must be a non-negative integer (e.g. the DDP rank), got {index!r}")
        twin = copy.deepcopy(self)
        for mixer in twin._tree():
            mixer.seed = derive_seed(mixer.seed, int(index), _FORK_TAG)
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
        return MixedBatch(mixed, labels, labels[params.perm], lam)

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> MixedBatch:
        """Mix a batch.

        Args:
            images: (B, C, H, W) floating point, any device.
            labels: (B,) integer class indices on the same device.
            generator: source of randomness; default: the mixer's own for ``images.device``.

        Returns:
            ``MixedBatch`` with (B, C, H, W) images and (B,) labels_a, labels_b, lam.
        """
        images, labels = check_batch(images, labels)
        if generator is None:
            generator = self.generator_for(images.device)
        params = self.sample(images.shape[0], tuple(images.shape[-2:]), device=images.device, generator=generator)
        return self.apply(images, labels, params)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _beta_lams(
    alpha: float, mode: str, batch_size: int, *, device: torch.device, generator: torch.Generator
) -> torch.Tensor:
    """(B,) lam: B independent draws (per-sample mode) or one draw repeated (per-batch mode)."""
    n = batch_size if mode == "sample" else 1
    return sample_beta(alpha, n, generator=generator, device=device).expand(batch_size).contiguous()


class NoMix(Mixer):
    """No mixing: images unchanged, ``labels_b = labels_a``, ``lam = 1``."""

    name = "none"

    def sample(self, batch_size, size, *, device, generator):
        return MixParams(perm=torch.arange(batch_size, device=device), lam=torch.ones(batch_size, device=device))

    def apply(self, images, labels, params):
        return MixedBatch(images, labels, labels, params.lam)


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
        lam = _beta_lams(self.alpha, self.mode, batch_size, device=device, generator=generator)
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
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_alpha(alpha)
        self.size = None if size is None else check_box_size(size, name="size")
        self.mode = check_mode(mode)
        self.pairing = check_pairing(pairing)

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
        cy = torch.randint(0, h, (n,), generator=generator, device=gdev)
        cx = torch.randint(0, w, (n,), generator=generator, device=gdev)
        keep, lam = box_masks(*(t.to(device) for t in (cy, cx, box_h, box_w)), (h, w))
        return MixParams(perm=perm, lam=lam.expand(batch_size).contiguous(), mask=keep.bool())

    def extra_repr(self):
        return f"alpha={self.alpha}, size={self.size}, mode={self.mode!r}, pairing={self.pairing!r}"


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


class MixChoice(Mixer):
    """Per batch, apply one of several mixers (the paper's LMix + Mixup, section 4.2).

    Args:
        mixers: two or more mixers.
        p: selection probabilities (default: uniform); ignored when alternating.
        schedule: ``"random"`` (draw a mixer per batch with probabilities ``p``) or
            ``"alternate"`` (cycle through ``mixers`` in order, one per batch).
        seed: seed of the choice's own generator (the components keep their own for
            their parameters when no generator is passed).
    """

    name = "choice"

    def __init__(
        self,
        mixers: Sequence[Mixer],
        *,
        p: Sequence[float] | None = None,
        schedule: str = "random",
        seed: int | None = None,
    ) -> None:
        super().__init__(seed=seed)
        mixers = list(mixers)
        if len(mixers) < 2 or not all(isinstance(m, Mixer) for m in mixers):
            raise ValueError(f"mixers must be a sequence of at least two Mixer instances, got {mixers!r}")
        if schedule not in ("random", "alternate"):
            raise ValueError(f"schedule must be 'random' or 'alternate', got {schedule!r}")
        if p is None:
            p = [1.0 / len(mixers)] * len(mixers)
        p = [check_probability(x, name="p") for x in p]
        if len(p) != len(mixers) or abs(sum(p) - 1.0) > 1e-6:
            raise ValueError(f"p must hold one probability per mixer ({len(mixers)}) summing to 1, got {p}")
        self.mixers = mixers
        self.p = p
        self.schedule = schedule
        self.calls = 0

    def choose(self, generator: torch.Generator) -> int:
        """Index of the mixer for the next batch."""
        if self.schedule == "alternate":
            return self.calls % len(self.mixers)
        probs = torch.tensor(self.p, dtype=torch.float32, device=generator.device)
        return int(torch.multinomial(probs, 1, generator=generator).item())

    def _tree(self) -> list[Mixer]:
        return [self, *(m for sub in self.mixers for m in sub._tree())]

    @property
    def uses_model(self) -> bool:  # type: ignore[override]
        return any(m.uses_model for m in self.mixers)

    def _next(self, images: torch.Tensor, generator: torch.Generator | None) -> Mixer:
        index = self.choose(generator if generator is not None else self.generator_for(images.device))
        self.calls += 1
        return self.mixers[index]

    def __call__(self, images, labels, generator=None):
        check_batch(images, labels)
        return self._next(images, generator)(images, labels, generator=generator)

    def forward_loss(self, model, images, labels, *, label_smoothing: float = 0.0, generator=None):
        """Per batch, the chosen mixer's training forward pass: its own ``forward_loss`` for a
        mixer that acts inside the model (PatchUp), else mix the input, run the model, mixed loss.

        Returns:
            ((B, K) logits, scalar loss, ``MixedBatch``) as ``PatchUp.forward_loss``.
        """
        check_batch(images, labels)
        mixer = self._next(images, generator)
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
        return f"{self.mixers!r}, p={self.p}, schedule={self.schedule!r}"
