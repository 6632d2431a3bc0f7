"""``MixChoice``: one of several mixers per batch (the paper's LMix + Mixup) or per sample (timm's
Mixup/CutMix switch), and the ``ChoiceParams`` it draws.

Per sample, the choice is drawn on the CPU, so the number of samples that chose each component
is known without reading the device; each component then draws parameters for its own samples
only (half the Fourier masks for a 50/50 switch), and the batch is mixed by one select plus a
blend of the blended rows alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lmix._checks import check_probability
from lmix.errors import LmixTypeError, LmixValueError
from lmix.mixing.base import Mixer, MixParams, blend_rows_into, blend_soft, select_into, standard_apply
from lmix.mixing.batch import MixedBatch, mixed_cross_entropy
from lmix.mixing.masks import sharpen
from lmix.mixing.mixers import LMix, NoMix
from lmix.mixing.validation import check_mode

__all__ = ["ChoiceParams", "MixChoice"]


@dataclass
class ChoiceParams(MixParams):
    """Parameters drawn by a ``MixChoice``.

    ``perm`` and ``lam`` are those of the mixed batch.

    Attributes:
        index: ``mode="batch"``: the component chosen for the batch, else None.
        inner: ``mode="batch"``: that component's parameters (``mask`` and ``erase`` are copied
            from them), else None.
        choice: ``mode="sample"``: (B,) int64 component of every sample, on the images' device.
        rows: ``mode="sample"``: per component, the (n_c,) int64 indices of the samples that
            chose it, on the images' device.
        components: ``mode="sample"``: per component, its parameters for its n_c samples (their
            ``perm`` is unused: every sample mixes with ``perm``), or None when n_c = 0.
    """

    index: int | None = None
    inner: MixParams | None = None
    choice: torch.Tensor | None = None
    rows: tuple[torch.Tensor, ...] = ()
    components: tuple[MixParams | None, ...] = ()


def _per_batch(index: int, inner: MixParams) -> ChoiceParams:
    """The ``ChoiceParams`` of a per-batch choice: component ``index`` drew ``inner``."""
    return ChoiceParams(perm=inner.perm, lam=inner.lam, mask=inner.mask, erase=inner.erase, index=index, inner=inner)


class MixChoice(Mixer):
    """Apply one of several mixers per batch (the paper's LMix + Mixup) or per sample.

    Args:
        mixers: two or more mixers.
        p: selection probabilities (default: uniform); ignored when alternating.
        schedule: ``"random"`` (draw a mixer with probabilities ``p``) or ``"alternate"``
            (cycle through ``mixers`` in order, one per batch; ``mode="batch"`` only).
        mode: ``"batch"`` (one mixer for the whole batch) or ``"sample"`` (one per sample, timm's
            ``switch_prob`` recipe: ``create_mixer("mixup+cutmix", mode="sample")``). Per sample,
            every sample mixes with one shared partner permutation (drawn with the first
            component's ``pairing`` that has one) and takes the mask or Mixup weight, ``lam`` and
            label pairing of its own component; each component draws parameters only for the
            samples that chose it. Only input-space mixers with the standard ``apply`` (none,
            Mixup, CutMix, Cutout, LMix, FMix, and subclasses that keep their ``apply``); Cutout
            samples get a zero partner and keep their label, ``none`` samples are unchanged,
            LMix's ``image_k`` sharpening applies to LMix's samples only.
        seed: seed of the choice's own generators (the components keep their own for their
            parameters when no generator is passed).
        granularity: the old name of ``mode`` (deprecated).

    Randomness: the choice (per batch or per sample) is drawn on the CPU, from the choice's own
    CPU generator or a CPU generator passed in, so choosing costs no host-device synchronisation;
    a non-CPU generator passed explicitly costs one.
    """

    name = "choice"

    def __init__(
        self,
        mixers: Sequence[Mixer],
        *,
        p: Sequence[float] | None = None,
        schedule: str = "random",
        mode: str = "batch",
        seed: int | None = None,
        granularity: str | None = None,
    ) -> None:
        super().__init__(seed=seed)
        if granularity is not None:
            warnings.warn(
                "MixChoice(granularity=...) is deprecated: use mode=... (same values)", DeprecationWarning, stacklevel=2
            )
            mode = granularity
        mixers = list(mixers)
        if len(mixers) < 2 or not all(isinstance(m, Mixer) for m in mixers):
            raise LmixValueError(f"mixers must be a sequence of at least two Mixer instances, got {mixers!r}")
        if schedule not in ("random", "alternate"):
            raise LmixValueError(f"schedule must be 'random' or 'alternate', got {schedule!r}")
        if mode not in ("batch", "sample"):
            raise LmixValueError(
                f"mode must be 'batch' (one mixer per batch) or 'sample' (one per sample), got {mode!r}"
            )
        if mode == "sample":
            if schedule != "random":
                raise LmixValueError("schedule='alternate' needs mode='batch'; per sample the choice is random")
            bad = [m for m in mixers if not standard_apply(m)]
            if bad:
                raise LmixValueError(
                    "mode='sample' combines input-space mixers with the standard mask/blend apply (none, "
                    f"mixup, cutmix, cutout, lmix, fmix); not supported: {', '.join(repr(m) for m in bad)}"
                )
        if p is None:
            p = [1.0 / len(mixers)] * len(mixers)
        p = [check_probability(x, name="p") for x in p]
        if len(p) != len(mixers) or abs(sum(p) - 1.0) > 1e-6:
            raise LmixValueError(f"p must hold one probability per mixer ({len(mixers)}) summing to 1, got {p}")
        self.mixers = nn.ModuleList(mixers)
        self.p = p
        self.schedule = schedule
        self.mode = check_mode(mode)
        self.calls = 0
        # The first component that pairs samples sets the shared pairing of per-sample mixing.
        self.pairing = next((m.pairing for m in mixers if "pairing" in vars(m)), "random")

    @property
    def granularity(self) -> str:
        """The old name of ``mode`` (deprecated)."""
        warnings.warn("MixChoice.granularity is deprecated: use mode", DeprecationWarning, stacklevel=2)
        return self.mode

    def _tree(self) -> list[Mixer]:
        return [self, *(m for sub in self.mixers for m in sub._tree())]

    @property
    def uses_model(self) -> bool:  # type: ignore[override]
        return any(m.uses_model for m in self.mixers)

    @property
    def spatial_ranks(self) -> tuple[int, ...]:  # type: ignore[override]
        """The numbers of spatial axes every component takes."""
        return tuple(d for d in (1, 2, 3) if all(d in m.spatial_ranks for m in self.mixers))

    def hparams(self) -> dict[str, Any]:
        return {
            "mixers": [m.describe() for m in self.mixers],
            "p": list(self.p),
            "schedule": self.schedule,
            "mode": self.mode,
        }

    # -- choosing ---------------------------------------------------------------------------
    def choose(self, generator: torch.Generator) -> int:
        """Index of the mixer for the next batch (``mode="batch"``); advances no schedule.

        Drawn with ``generator``: on a CPU generator this reads no device memory; a CUDA
        generator passed explicitly costs one synchronisation.
        """
        if self.schedule == "alternate":
            return self.calls % len(self.mixers)
        probs = torch.tensor(self.p, dtype=torch.float32)
        if generator.device.type != "cpu":
            probs = probs.to(generator.device)
        return int(torch.multinomial(probs, 1, generator=generator).item())

    def choose_per_sample(self, batch_size: int, *, generator: torch.Generator) -> torch.Tensor:
        """(B,) int64 component index of every sample, drawn with ``p`` on ``generator``, on the CPU.

        Thresholds on one uniform per sample; a non-CPU generator costs one read-back.
        """
        u = torch.rand(batch_size, generator=generator, device=generator.device).cpu()
        choice = torch.zeros(batch_size, dtype=torch.int64)
        edge = 0.0
        for p in self.p[:-1]:
            edge += p
            choice += u >= edge
        return choice

    def next_index(self, generator: torch.Generator | None = None) -> int:
        """The component for the next batch (``mode="batch"``), advancing the schedule as a call does.

        Drawn from ``generator`` or the choice's own CPU generator.
        """
        index = self.choose(generator if generator is not None else self.generator_for("cpu"))
        self.calls += 1
        return index

    # -- sampling -----------------------------------------------------------------------------
    def _sample_per_sample(
        self,
        batch_size: int,
        image_size: tuple[int, ...],
        *,
        device: torch.device,
        control: torch.Generator,
        generator: torch.Generator,
        component_generators: Sequence[torch.Generator],
    ) -> ChoiceParams:
        choice = self.choose_per_sample(batch_size, generator=control)
        perm = self.sample_partners(batch_size, device=device, generator=generator)
        counts = torch.bincount(choice, minlength=len(self.mixers)).tolist()  # CPU: no device read
        lam = torch.ones(batch_size, device=device)
        rows, comps = [], []
        for c, (mixer, gen, n) in enumerate(zip(self.mixers, component_generators, counts, strict=True)):
            idx = (choice == c).nonzero().view(-1).to(device, non_blocking=True)
            rows.append(idx)
            if n == 0:
                comps.append(None)
                continue
            cp = mixer.sample(n, image_size, device=device, generator=gen)
            lam.index_put_((idx,), cp.lam)
            comps.append(cp)
        return ChoiceParams(
            perm=perm,
            lam=lam,
            choice=choice.to(device, non_blocking=True),
            rows=tuple(rows),
            components=tuple(comps),
        )

    def sample(self, batch_size, image_size, *, device, generator):
        """Draw the choice and the chosen components' parameters, all from ``generator``.

        With ``mode="batch"`` this advances the schedule as a call does.
        """
        if self.mode == "sample":
            return self._sample_per_sample(
                batch_size,
                image_size,
                device=device,
                control=generator,
                generator=generator,
                component_generators=[generator] * len(self.mixers),
            )
        index = self.choose(generator)
        self.calls += 1
        inner = self.mixers[index].sample(batch_size, image_size, device=device, generator=generator)
        return _per_batch(index, inner)

    def draw(self, images: torch.Tensor, generator: torch.Generator | None = None) -> ChoiceParams:
        """The parameters a call would use: the choice from the CPU generator, every component's
        parameters from its own generator (or all from ``generator`` when one is given)."""
        if self.mode == "batch":
            index = self.next_index(generator)
            inner = self.mixers[index].draw(images, generator)
            return _per_batch(index, inner)
        device = images.device
        own = generator is None
        return self._sample_per_sample(
            images.shape[0],
            tuple(images.shape[2:]),
            device=device,
            control=self.generator_for("cpu") if own else generator,
            generator=self.generator_for(device) if own else generator,
            component_generators=[m.generator_for(device) if own else generator for m in self.mixers],
        )

    # -- applying ----------------------------------------------------------------------------
    def check_params(self, params: object, images: torch.Tensor) -> ChoiceParams:
        if not isinstance(params, ChoiceParams):
            raise LmixTypeError(
                f"MixChoice needs the ChoiceParams its calls make (batch.params), got {type(params).__name__}"
            )
        if (params.index is None) != (self.mode == "sample"):
            drawn = "per batch" if params.index is not None else "per sample"
            raise LmixValueError(f"params were drawn {drawn}; this MixChoice chooses per {self.mode}")
        return super().check_params(params, images)  # type: ignore[return-value]

    def apply(self, images, labels, params):
        """Mix with parameters from ``sample``/``draw``: the chosen component's ``apply`` per batch,
        or per sample one select over the batch plus the blended and sharpened rows."""
        if not isinstance(params, ChoiceParams):
            raise LmixTypeError(
                f"MixChoice.apply needs the ChoiceParams its sample() returns, got {type(params).__name__}"
            )
        if params.index is not None:
            batch = self.mixers[params.index].apply(images, labels, params.inner)
            batch.params = params
            return batch
        mixed, lam = self._mix_rows(images, params, integer_extra=False)
        for c, mixer in enumerate(self.mixers):
            if isinstance(mixer, LMix) and mixer.image_k > 0 and params.components[c] is not None:
                rows = params.rows[c]
                sharp = sharpen(mixed.index_select(0, rows), decay=mixer.decay, k=mixer.image_k)
                mixed = mixed.index_put((rows,), sharp)
        labels_b = labels.index_select(0, params.perm)
        for c, (mixer, cp) in enumerate(zip(self.mixers, params.components, strict=True)):
            if cp is not None and (cp.erase or isinstance(mixer, NoMix)):
                labels_b = labels_b.index_put((params.rows[c],), labels.index_select(0, params.rows[c]))
        return MixedBatch(mixed, labels, labels_b, lam, params=params)

    def _blend_components(self) -> list[int]:
        """Components that mix by a per-sample weight (Mixup) rather than a mask."""
        return [c for c, m in enumerate(self.mixers) if m.blends]

    def _mix_rows(
        self, tensor: torch.Tensor, params: ChoiceParams, *, integer_extra: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample mix of a (B, ..., *spatial) tensor: one select over the batch, then the blended rows.

        Mask rows take their mask, Cutout rows a zero partner, ``none`` rows stay; blended rows
        (Mixup's, and those of soft masks) are computed from their own rows only (in float for
        integer tensors, rounded back), so an integer batch pays float arithmetic only there.
        With ``integer_extra`` (an integer extra tensor, e.g. a class map) Cutout rows are left
        unchanged and soft-mask rows take the sample's value where the weight is above 1/2.

        Returns (mixed tensor, (B,) float32 lam with Mixup's weight as rounded to the tensor's dtype).
        """
        b = tensor.shape[0]
        masks = [cp.mask for cp in params.components if cp is not None and cp.mask is not None]
        d = masks[0].ndim - 2 if masks else 0  # spatial axes; 0: no mask, nothing to select
        spatial = tuple(tensor.shape[tensor.ndim - d :]) if d else ()
        lead = (1,) * (tensor.ndim - 1 - d)  # the (C, ...) dimensions a mask broadcasts over
        keep = torch.ones((b, *lead, *spatial), dtype=torch.bool, device=tensor.device)
        partner = tensor.index_select(0, params.perm)
        blends, softs = [], []
        for c, cp in enumerate(params.components):
            if cp is None or isinstance(self.mixers[c], NoMix):
                continue
            rows = params.rows[c]
            if cp.mask is None:
                blends.append((rows, cp.lam))
            elif cp.erase and integer_extra:
                continue
            elif cp.mask.dtype != torch.bool and not cp.erase:
                mask = cp.mask.reshape(cp.mask.shape[0], *lead, *spatial)
                if integer_extra:
                    keep.index_put_((rows,), (mask > 0.5).expand(rows.shape[0], *mask.shape[1:]))
                else:
                    softs.append((rows, mask))
            else:
                mask = cp.mask.to(torch.bool).reshape(cp.mask.shape[0], *lead, *spatial)
                keep.index_put_((rows,), mask.expand(rows.shape[0], *mask.shape[1:]))
                if cp.erase:  # Cutout: the partner is a zero image
                    partner.index_fill_(0, rows, 0)
        in_place = not (tensor.requires_grad and torch.is_grad_enabled())
        if in_place and tensor.device.type == "cpu":
            mixed = select_into(keep, tensor, partner)
        else:
            mixed = torch.where(keep, tensor, partner)
        for rows, mask in softs:
            own = tensor.index_select(0, rows)
            other = tensor.index_select(0, params.perm.index_select(0, rows))
            mixed = mixed.index_put((rows,), blend_soft(own, other, mask, in_place=in_place))
        lam = params.lam
        for rows, w in blends:
            weight = blend_rows_into(mixed, tensor, rows, params.perm.index_select(0, rows), w)
            lam = lam.index_put((rows,), weight)
        return mixed, lam

    def apply_extra(self, tensor, params):
        """Mix an extra (B, ..., *spatial) tensor as the images: the chosen component's
        ``apply_extra`` per batch, or per sample that of each sample's component (integer
        tensors need mask components only: none, Cutout, CutMix, LMix, FMix)."""
        if not isinstance(params, ChoiceParams):
            raise LmixTypeError(f"MixChoice needs the ChoiceParams its sample() returns, got {type(params).__name__}")
        if params.index is not None:
            return self.mixers[params.index].apply_extra(tensor, params.inner)
        b = params.perm.shape[0]
        masks = [cp.mask for cp in params.components if cp is not None and cp.mask is not None]
        d = masks[0].ndim - 2 if masks else 0
        if tensor.ndim < max(2, d + 1) or tensor.shape[0] != b:
            raise LmixValueError(f"an extra tensor must have shape (B, ...) with B = {b}, got {tuple(tensor.shape)}")
        if d and tuple(tensor.shape[tensor.ndim - d :]) != tuple(masks[0].shape[2:]):
            raise LmixValueError(
                f"an extra tensor must end with the images' spatial size {tuple(masks[0].shape[2:])}, got shape "
                f"{tuple(tensor.shape)}"
            )
        floating = tensor.is_floating_point()
        if not floating and self._blend_components():
            raise LmixValueError(
                f"{self!r} blends pixels (Mixup) in some samples and cannot mix an integer extra tensor (dtype "
                f"{tensor.dtype}); pass a floating one (e.g. one-hot or soft maps)"
            )
        return self._mix_rows(tensor, params, integer_extra=not floating)[0]

    def forward(self, images, labels, generator=None, *, extras=None, params=None):
        if self.mode == "batch" and params is None:
            # The chosen component's own call, so that a component with its own forward (a
            # subclass, a hidden-layer mixer's input path) runs as it would alone.
            images, labels = self.check_batch(images, labels)
            index = self.next_index(generator)
            batch = self.mixers[index](images, labels, generator, extras=extras)
            if batch.params is not None:
                batch.params = _per_batch(index, batch.params)
            return batch
        return super().forward(images, labels, generator, extras=extras, params=params)

    def forward_loss(self, model, images, labels, *, label_smoothing: float = 0.0, generator=None):
        """The training forward pass: per batch, the chosen mixer's own ``forward_loss`` for a
        mixer that acts inside the model (PatchUp), else mix the input, run the model, mixed loss.

        Returns:
            (tuple[torch.Tensor, torch.Tensor, MixedBatch]): (B, K) logits, the scalar loss and
                the ``MixedBatch``, as ``PatchUp.forward_loss``.
        """
        self.check_batch(images, labels)
        if self.mode == "sample":
            batch = self(images, labels, generator=generator)
        else:
            mixer = self.mixers[self.next_index(generator)]
            if mixer.uses_model:
                return mixer.forward_loss(model, images, labels, label_smoothing=label_smoothing, generator=generator)
            batch = mixer(images, labels, generator=generator)
        logits = model(batch.images)
        return logits, mixed_cross_entropy(logits, batch, label_smoothing=label_smoothing), batch

    # -- state ----------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {**super().get_extra_state(), "calls": self.calls}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.calls = int(state.get("calls", 0))

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if args or kwargs:
            return super().state_dict(*args, **kwargs)
        return {**self.get_extra_state(), "mixers": [m.state_dict() for m in self.mixers]}

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        if isinstance(state, dict) and "seed" in state:
            self.set_extra_state(state)
            for mixer, sub in zip(self.mixers, state["mixers"], strict=True):
                mixer.load_state_dict(sub)
            return None
        return super().load_state_dict(state, strict=strict, assign=assign)

    def extra_repr(self):
        extra = f", mode={self.mode!r}" if self.mode != "batch" else ""
        return f"{list(self.mixers)!r}, p={self.p}, schedule={self.schedule!r}{extra}"
