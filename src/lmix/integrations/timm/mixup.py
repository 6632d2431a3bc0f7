"""lmix's mixers as timm's ``Mixup`` / ``FastCollateMixup``, and the loader that mixes on the device.

``Mixup`` and ``FastCollateMixup`` subclass ``timm.data.Mixup`` / ``timm.data.FastCollateMixup``,
take timm's arguments and return exactly what timm's return (``FastCollateMixup``: uint8 (B, C,
H, W) images and (B, num_classes) float targets; ``Mixup``: mixed float images and the targets),
so ``PrefetchLoader.mixup_enabled`` and ``--mixup-off-epoch`` keep working. The mixing itself is
an lmix mixer, vectorised over the batch (no Python loop per sample), with odd batch sizes
allowed. How timm's arguments map onto it:

* ``method`` (keyword-only, default ``"lmix"``; any input-mixing lmix method: ``lmix``,
  ``fmix``, ``mixup``, ``cutmix``, ``cutout``, ``none``) is what mixes, with its own parameters
  given as keywords (``alpha``, ``k``, ``decay``, ``image_k``, ``size``, ``pairing``).
* ``method`` takes the place of timm's CutMix. Its ``alpha`` defaults to ``cutmix_alpha`` when
  that is > 0 (``mixup_alpha`` for ``method="mixup"``), else to the method's own default.
* Switch: when both ``mixup_alpha > 0`` and ``cutmix_alpha > 0`` (timm's Mixup/CutMix recipe),
  ``method`` is used with probability ``switch_prob`` and Mixup (``alpha=mixup_alpha``)
  otherwise, per sample or per batch as ``mode`` says. ``method="cutmix"`` is then timm's recipe.
* ``prob``: the probability that a sample (``mode="elem"``/``"pair"``) or the batch
  (``mode="batch"``) is mixed at all; the others pass unmixed.
* ``mode``: ``"batch"`` -> one lam (and mask) per batch; ``"elem"`` and ``"pair"`` -> one per
  sample (lmix ``mode="sample"``). The partner of sample i is sample B - 1 - i as in timm
  (``pairing="flip"``; pass ``pairing=`` to change it). timm's pair mode (i and B - 1 - i get
  complementary boxes) is not reproduced: with ``"pair"`` every sample draws its own parameters.
* ``label_smoothing``, ``num_classes``: timm's targets: ``off = label_smoothing / num_classes``,
  ``on = 1 - label_smoothing + off``, mixed with the *exact* share of each image (mask area).
  ``multi_label=True`` (dense (B, num_classes) targets) as in timm >= 1.0.
* ``correct_lam``: lmix always uses the exact mixed share, so only ``True`` is accepted;
  ``cutmix_minmax`` is refused (lmix's CutMix takes ``size=`` for a fixed box).
* ``seed`` (keyword-only): seed of the mixer's generators; ``None`` (default) takes
  ``torch.initial_seed()``, so a script that seeds torch (timm's ``--seed``) repeats its mixing.
  Under ``torch.distributed`` every rank draws its own stream, and inside DataLoader workers every
  worker and epoch does (``Mixer.generator_for``).

``mixup_enabled`` is held in shared memory, so switching it off in the main process (timm's
``--mixup-off-epoch``) also reaches persistent DataLoader workers (a few prefetched batches
later), which timm's own ``FastCollateMixup`` does not.

Where to mix (``FastCollateMixup(..., mix_on=...)``): ``"loader"`` mixes the uint8 batch in the
DataLoader workers, as timm's own class does; ``"device"`` leaves the workers timm's plain
``fast_collate`` (no mixing, class-index targets) and mixes the normalised batch on the training
device, after timm's prefetcher, through :class:`DeviceMixLoader`. Per-sample Fourier masks cost
about a millisecond each on a CPU core at 224x224 and microseconds on a GPU, so on a GPU machine
``"device"`` keeps the workers free for decoding (see docs/integrations.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from timm.data import mixup as timm_mixup
from timm.data.loader import fast_collate
from torch.utils.data import default_collate

from lmix._checks import check_int, check_probability, is_finite_real
from lmix.errors import LmixTypeError, LmixValueError
from lmix.mixing.base import Mixer
from lmix.mixing.choice import MixChoice
from lmix.mixing.mixers import Mixup as CoreMixup
from lmix.mixing.mixers import NoMix
from lmix.mixing.registry import accepted_params, list_mixers, mixer_class

__all__ = ["Mixup", "FastCollateMixup", "DeviceMixLoader", "timm_mixer", "input_methods", "TIMM_MODES", "MIX_ON"]

# timm's own classes, kept before the launcher replaces the module attributes with lmix's.
TimmMixup = timm_mixup.Mixup
TimmFastCollateMixup = timm_mixup.FastCollateMixup

TIMM_MODES = ("batch", "pair", "elem")
#: Where ``FastCollateMixup`` mixes: in the DataLoader workers or on the training device.
MIX_ON = ("loader", "device")


def input_methods() -> list[str]:
    """Registered methods that mix the input (not inside the model)."""
    return [name for name in list_mixers() if not mixer_class(name).uses_model]


def timm_mixer(
    method: str = "lmix",
    *,
    mixup_alpha: float = 1.0,
    cutmix_alpha: float = 0.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    mode: str = "batch",
    seed: int,
    **params: Any,
) -> Mixer:
    """The lmix mixer that stands for timm's Mixup/CutMix settings (mapping: module docstring).

    Returns ``method``'s mixer alone, or a ``MixChoice`` (per batch or per sample) between it,
    Mixup (the switch) and ``NoMix`` (``prob < 1``).

    Raises:
        LmixValueError: unknown method or parameter, or a value the mixer refuses.
    """
    if method not in input_methods():
        raise LmixValueError(f"method must be one of {', '.join(input_methods())} (mixing the input), got {method!r}")
    cls = mixer_class(method)
    accepted = accepted_params(cls)
    allowed = accepted - {"seed", "mode"}  # mode follows timm's mode
    unknown = set(params) - allowed
    if unknown:
        raise LmixValueError(
            f"unknown parameter(s) {sorted(unknown)} for method {method!r}; allowed: {sorted(allowed)}"
        )
    sample_mode = "batch" if mode == "batch" else "sample"
    main_params: dict[str, Any] = {}
    if "mode" in accepted:
        main_params["mode"] = sample_mode
    if "pairing" in allowed:
        main_params["pairing"] = "flip"
    timm_alpha = mixup_alpha if method == "mixup" else cutmix_alpha
    if "alpha" in allowed and timm_alpha > 0:
        main_params["alpha"] = timm_alpha
    main_params.update(params)
    pairing = main_params.get("pairing", "flip")

    # (make, probability) of every component; seeds as create_mixer gives them (seed + 1 + i).
    parts: list[tuple[Any, float]] = []
    if prob < 1:
        parts.append((lambda s: NoMix(seed=s), 1.0 - prob))
    if mixup_alpha > 0 and cutmix_alpha > 0 and method != "mixup":
        parts.append(
            (
                lambda s: CoreMixup(alpha=mixup_alpha, mode=sample_mode, pairing=pairing, seed=s),
                prob * (1 - switch_prob),
            )
        )
        parts.append((lambda s: cls(**main_params, seed=s), prob * switch_prob))
    else:
        parts.append((lambda s: cls(**main_params, seed=s), prob))
    parts = [(make, p) for make, p in parts if p > 0]
    if len(parts) == 1:
        return parts[0][0](seed)
    total = sum(p for _, p in parts)
    mixers = [make((seed + 1 + i) % 2**63) for i, (make, _) in enumerate(parts)]
    # Rounded so that 1 - 0.8 reads 0.2 in the mixer's repr (the sum stays 1 within 1e-12).
    return MixChoice(mixers, p=[round(p / total, 12) for _, p in parts], mode=sample_mode, seed=seed)


class _LmixTimm:
    """What ``Mixup`` and ``FastCollateMixup`` share: argument checks, the mixer, the targets."""

    _timm_base: type  # timm's class this one stands in for (its __init__ and its name)

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Sequence[float] | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        multi_label: bool = False,
        *,
        method: str = "lmix",
        seed: int | None = None,
        **params: Any,
    ) -> None:
        """Check timm's arguments, build ``self.mixer``, then run timm's ``__init__``."""
        name = type(self).__name__
        for key, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if not is_finite_real(value) or value < 0:
                raise LmixValueError(f"{name}: {key} must be a finite number >= 0, got {value!r}")
        if cutmix_minmax is not None:
            raise LmixValueError(
                f"{name}: cutmix_minmax is not supported by lmix's mixers; use cutmix_alpha, or method='cutmix' with size=(h, w)"
            )
        if not correct_lam:
            raise LmixValueError(
                f"{name}: lmix always uses the exact mixed area (correct_lam=True); got correct_lam=False"
            )
        if mode not in TIMM_MODES:
            raise LmixValueError(f"{name}: mode must be one of {', '.join(TIMM_MODES)}, got {mode!r}")
        check_probability(prob, name="prob")
        check_probability(switch_prob, name="switch_prob")
        check_probability(label_smoothing, name="label_smoothing")
        check_int(num_classes, name=f"{name}: num_classes", minimum=1)
        if seed is None:
            seed = torch.initial_seed() % 2**63
        self.mixer = timm_mixer(
            method,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            mode=mode,
            seed=seed,
            **params,
        )
        self.method = method
        self._timm_base.__init__(
            self,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            cutmix_minmax=None,
            prob=prob,
            switch_prob=switch_prob,
            mode=mode,
            correct_lam=True,
            label_smoothing=label_smoothing,
            num_classes=int(num_classes),
        )
        self.multi_label = bool(multi_label)  # set after timm's __init__ (older timm has no multi_label)

    # mixup_enabled lives in a shared-memory tensor so that DataLoader workers (persistent ones
    # included, which hold a copy of the collate function) see the main process turn it off.
    @property
    def mixup_enabled(self) -> bool:
        flag = self.__dict__.get("_enabled")
        return True if flag is None else bool(flag[0])

    @mixup_enabled.setter
    def mixup_enabled(self, value: bool) -> None:
        flag = self.__dict__.get("_enabled")
        if flag is None:
            flag = self.__dict__["_enabled"] = torch.ones(1, dtype=torch.bool).share_memory_()
        flag[0] = bool(value)

    def targets(self, target: torch.Tensor, perm: torch.Tensor | None, lam: torch.Tensor | None) -> torch.Tensor:
        """(B, num_classes) float32 ``lam * y + (1 - lam) * y[perm]`` with timm's smoothed ``y``.

        ``perm`` None: the smoothed targets of an unmixed batch.
        """
        smoothing, num_classes = self.label_smoothing, self.num_classes
        if self.multi_label:
            if target.ndim != 2 or target.shape[1] != num_classes:
                raise LmixValueError(
                    f"{type(self).__name__}: multi_label targets must be (B, num_classes={num_classes}), "
                    f"got shape {tuple(target.shape)}"
                )
            y = target.float() * (1.0 - smoothing) + 0.5 * smoothing
        else:
            if target.ndim != 1:
                raise LmixValueError(
                    f"{type(self).__name__}: targets must be (B,) class indices (multi_label=False), "
                    f"got shape {tuple(target.shape)}"
                )
            off = smoothing / num_classes
            y = torch.full((target.shape[0], num_classes), off, device=target.device)
            y.scatter_(1, target.long().view(-1, 1), 1.0 - smoothing + off)
        if perm is None:
            return y
        lam = lam.to(device=y.device, dtype=y.dtype)[:, None]
        return torch.lerp(y.index_select(0, perm.to(y.device)), y, lam)

    def mix_batch(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a (B, C, H, W) batch (floating, or uint8 in a collate) and make timm's targets.

        Returns the mixed images (a new tensor; timm mixes in place) and (B, num_classes) float32
        targets; the smoothed targets alone when ``mixup_enabled`` is off.
        """
        if target.shape[0] != x.shape[0]:
            raise LmixValueError(f"{type(self).__name__}: {x.shape[0]} images but {target.shape[0]} targets")
        if not self.mixup_enabled:
            return x, self.targets(target, None, None)
        params = self.mixer.draw(x)
        batch = self.mixer.apply(x, target, params)
        return batch.images, self.targets(target, params.perm, batch.lam)

    def state_dict(self) -> dict[str, Any]:
        """The mixer's random state (seed and generators), for checkpoints."""
        return self.mixer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixer.load_state_dict(state)

    def __repr__(self) -> str:
        return (
            f"lmix.integrations.timm.{self._timm_base.__name__}(mixer={self.mixer!r}, "
            f"label_smoothing={self.label_smoothing}, num_classes={self.num_classes})"
        )


class Mixup(_LmixTimm, TimmMixup):
    """timm's ``Mixup`` (on-device, after the loader) with an lmix mixer (module docstring).

    ``mixup(x, target)``: ``x`` (B, C, H, W) floating point on any device, ``target`` (B,)
    class indices (or (B, num_classes) with ``multi_label=True``) on the same device. Returns the
    mixed images (a new tensor; timm mixes in place) and (B, num_classes) float32 targets.
    """

    _timm_base = TimmMixup

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mix_batch(x, target)


class FastCollateMixup(_LmixTimm, TimmFastCollateMixup):
    """timm's ``FastCollateMixup`` (a DataLoader ``collate_fn``) with an lmix mixer (module docstring).

    ``collate(batch)``: ``batch`` a list of (uint8 (C, H, W) numpy array or tensor, int target)
    pairs, of any length. With ``mix_on="loader"`` (default) returns uint8 (B, C, H, W) mixed images
    (Mixup blends rounded) and (B, num_classes) float32 targets, on the CPU, as timm's. With
    ``mix_on="device"`` returns timm's plain ``fast_collate`` (uint8 images, class indices), and
    :class:`DeviceMixLoader` mixes after the prefetcher with :meth:`mix_batch`.
    """

    _timm_base = TimmFastCollateMixup

    def __init__(self, *args: Any, mix_on: str = "loader", **kwargs: Any) -> None:
        if mix_on not in MIX_ON:
            raise LmixValueError(
                f"{type(self).__name__}: mix_on must be 'loader' (mix in the DataLoader workers) or 'device' "
                f"(mix the normalised batch on the training device), got {mix_on!r}"
            )
        super().__init__(*args, **kwargs)
        self.mix_on = mix_on

    def __call__(self, batch: Sequence[tuple[Any, Any]], _: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        if len(batch) == 0:
            raise LmixValueError("FastCollateMixup: the batch is empty")
        if self.mix_on == "device":
            return fast_collate(batch)
        images = _stack_uint8(batch)
        target = default_collate([item[1] for item in batch])
        if target.ndim == 1:
            target = target.long()  # as timm's fast_collate, whatever the source dtype
        # uint8 throughout: a mask mix is a select, only blended rows are computed in float.
        return self.mix_batch(images, target)


def _stack_uint8(batch: Sequence[tuple[Any, Any]]) -> torch.Tensor:
    """(B, C, H, W) uint8 from the items' (C, H, W) uint8 numpy arrays or tensors."""
    first = batch[0][0]
    if isinstance(first, np.ndarray):
        images = torch.from_numpy(np.stack([item[0] for item in batch]))
    elif isinstance(first, torch.Tensor):
        images = torch.stack([item[0] for item in batch])
    else:
        raise LmixTypeError(
            f"FastCollateMixup: images must be uint8 (C, H, W) numpy arrays or tensors (timm's ToNumpy / "
            f"prefetcher transforms), got {type(first).__name__}"
        )
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise LmixTypeError(
            f"FastCollateMixup: images must be uint8 (C, H, W), got dtype {images.dtype} and shape "
            f"{tuple(images.shape[1:])} (use timm's prefetcher transforms or Mixup for float images)"
        )
    return images


class DeviceMixLoader:
    """A timm loader (``PrefetchLoader`` or ``DataLoader``) whose batches are mixed on the device.

    Wraps what ``timm.data.create_loader`` returned for a ``FastCollateMixup(mix_on="device")``
    collate: the workers collate plainly, and every batch (normalised on the device by the
    prefetcher) is mixed here with ``collate.mix_batch``, giving timm's soft targets. timm's
    random erasing, which the prefetcher applies after normalising, is taken over and applied
    after mixing, the order of timm's own collate path. Everything else (``len``, ``sampler``,
    ``dataset``, ...) is the wrapped loader's; ``mixup_enabled`` is the collate's.

    Args:
        loader: the loader ``create_loader`` returned.
        collate: the ``FastCollateMixup`` it was given.
    """

    def __init__(self, loader: Any, collate: FastCollateMixup) -> None:
        self.loader = loader
        self.collate = collate
        self.random_erasing = getattr(loader, "random_erasing", None)
        if self.random_erasing is not None:
            loader.random_erasing = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, target in self.loader:
            if not x.is_floating_point():
                raise LmixTypeError(
                    "DeviceMixLoader mixes the normalised float batches of timm's prefetcher; got a "
                    f"{x.dtype} batch (create the loader with use_prefetcher=True, or use Mixup after the loader)"
                )
            x, target = self.collate.mix_batch(x, target)
            if self.random_erasing is not None:
                x = self.random_erasing(x)
            yield x, target

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def mixup_enabled(self) -> bool:
        return self.collate.mixup_enabled

    @mixup_enabled.setter
    def mixup_enabled(self, value: bool) -> None:
        self.collate.mixup_enabled = value

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "collate", "random_erasing"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.loader, name)
