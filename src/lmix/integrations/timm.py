"""lmix's mixers in timm: ``Mixup`` / ``FastCollateMixup`` subclasses and a launcher for ``train.py``.

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
  Under ``torch.distributed`` every rank gets its own stream (``Mixer.fork(rank)``), and inside
  DataLoader workers every worker and epoch does (``Mixer.generator_for``).

``mixup_enabled`` is held in shared memory, so switching it off in the main process (timm's
``--mixup-off-epoch``) also reaches persistent DataLoader workers (a few prefetched batches
later), which timm's own ``FastCollateMixup`` does not.

Launcher::

    python -m lmix.integrations.timm --method lmix [--alpha A --k K ...] [--seed S] -- train.py <timm args>

runs ``train.py`` unmodified (as ``__main__``, with ``sys.argv`` set) after replacing timm's
``Mixup`` and ``FastCollateMixup`` (``timm.data`` and ``timm.data.mixup``) with these classes
bound to the given method, appends ``--mixup 1.0`` to turn mixing on when the arguments (and a
``-c``/``--config`` file) set none of ``--mixup``, ``--cutmix``, and ``--mixup-mode elem``
(per-sample mixing) when they set no mixup mode. Both loader paths work
(prefetcher: ``FastCollateMixup`` in the workers; ``--no-prefetcher``: ``Mixup`` on the device).
"""

from __future__ import annotations

import math
import numbers
import os
import runpy
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from timm.data import mixup as timm_mixup
from torch.utils.data import default_collate

from lmix._checks import check_probability
from lmix.errors import LmixTypeError, LmixValueError
from lmix.mixing.mixers import CutMix, FMix, LMix, MixChoice, Mixer, NoMix
from lmix.mixing.mixers import Mixup as CoreMixup
from lmix.mixing.registry import accepted_params, list_mixers, mixer_class

__all__ = ["Mixup", "FastCollateMixup", "build_mixer", "install", "main"]

# timm's own classes, kept before the launcher replaces the module attributes with lmix's.
_TimmMixup = timm_mixup.Mixup
_TimmFastCollateMixup = timm_mixup.FastCollateMixup

TIMM_MODES = ("batch", "pair", "elem")


def _input_methods() -> list[str]:
    """Registered methods that mix the input (not inside the model)."""
    return [name for name in list_mixers() if not mixer_class(name).uses_model]


def build_mixer(
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
        ValueError: unknown method or parameter, or a value the mixer refuses.
    """
    if method not in _input_methods():
        raise LmixValueError(f"method must be one of {', '.join(_input_methods())} (mixing the input), got {method!r}")
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
    return MixChoice(mixers, p=[round(p / total, 12) for _, p in parts], granularity=sample_mode, seed=seed)


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
            if (
                not isinstance(value, numbers.Real)
                or isinstance(value, bool)
                or not (math.isfinite(value) and value >= 0)
            ):
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
        if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 1:
            raise LmixValueError(f"{name}: num_classes must be an integer >= 1, got {num_classes!r}")
        if seed is None:
            seed = torch.initial_seed() % 2**63
        mixer = build_mixer(
            method,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            mode=mode,
            seed=seed,
            **params,
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            mixer = mixer.fork(torch.distributed.get_rank())
        self.mixer = mixer
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

    def _targets(self, target: torch.Tensor, perm: torch.Tensor | None, lam: torch.Tensor | None) -> torch.Tensor:
        """(B, num_classes) float32 ``lam * y + (1 - lam) * y[perm]`` with timm's smoothed ``y``."""
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

    def _mix(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mix (B, C, H, W) float images: (mixed, (B,) partner index, (B,) exact share kept)."""
        batch = self.mixer(images, torch.arange(images.shape[0], device=images.device))
        return batch.images, batch.labels_b, batch.lam

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


class Mixup(_LmixTimm, _TimmMixup):
    """timm's ``Mixup`` (on-device, after the loader) with an lmix mixer (module docstring).

    ``mixup(x, target)``: ``x`` (B, C, H, W) floating point on any device, ``target`` (B,)
    class indices (or (B, num_classes) with ``multi_label=True``) on the same device. Returns the
    mixed images (a new tensor; timm mixes in place) and (B, num_classes) float32 targets.
    """

    _timm_base = _TimmMixup

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if target.shape[0] != x.shape[0]:
            raise LmixValueError(f"Mixup: {x.shape[0]} images but {target.shape[0]} targets")
        if not self.mixup_enabled:
            return x, self._targets(target, None, None)
        mixed, perm, lam = self._mix(x)
        return mixed, self._targets(target, perm, lam)


class FastCollateMixup(_LmixTimm, _TimmFastCollateMixup):
    """timm's ``FastCollateMixup`` (a DataLoader ``collate_fn``) with an lmix mixer (module docstring).

    ``collate(batch)``: ``batch`` a list of (uint8 (C, H, W) numpy array or tensor, int target)
    pairs, of any length. Returns uint8 (B, C, H, W) mixed images (Mixup blends rounded) and
    (B, num_classes) float32 targets, on the CPU, as timm's.
    """

    _timm_base = _TimmFastCollateMixup

    def __call__(self, batch: Sequence[tuple[Any, Any]], _: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        if len(batch) == 0:
            raise LmixValueError("FastCollateMixup: the batch is empty")
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
        target = default_collate([item[1] for item in batch])
        if target.ndim == 1:
            target = target.long()  # as timm's fast_collate, whatever the source dtype
        if not self.mixup_enabled:
            return images, self._targets(target, None, None)
        if _selects_pixels(self.mixer):
            mixed, perm, lam = self._select_uint8(images)
        else:
            mixed, perm, lam = self._mix(images.float())
            mixed = mixed.round_().clamp_(0, 255).to(torch.uint8)
        return mixed, self._targets(target, perm, lam)

    def _select_uint8(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask mixing straight on (B, C, H, W) uint8 images: the mixer's sampled mask and partners.

        A mask takes every pixel from one of two images, so the result is the float path's
        exactly, without the two conversions (several times the cost of the selection itself).
        """
        params = self.mixer.sample(
            images.shape[0], tuple(images.shape[-2:]), device=images.device, generator=self.mixer.generator_for("cpu")
        )
        # Bitwise select, in place on the partner copy: keeps x where the mask is 1, the partner elsewhere.
        out = images.index_select(0, params.perm)
        out ^= images
        out &= params.mask.to(torch.uint8).sub_(1)
        out ^= images
        return out, params.perm, params.lam


def _selects_pixels(mixer: Mixer) -> bool:
    """Whether ``mixer`` only selects pixels with a boolean mask (no blending, no sharpening)."""
    return type(mixer) in (LMix, FMix, CutMix) and not getattr(mixer, "image_k", 0.0)


# -- the launcher ------------------------------------------------------------------------------

_LAUNCH: dict[str, Any] = {}  # method and parameters the launcher binds, and what was built


class _Launched(_LmixTimm):
    """The launcher's method and parameters as defaults (what train.py gets), and a note on stderr."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**_LAUNCH.get("kwargs", {}), **kwargs})
        _LAUNCH["built"] = _LAUNCH.get("built", 0) + 1
        print(
            f"lmix: timm.data.{self._timm_base.__name__} -> {self.mixer!r} (label_smoothing={self.label_smoothing}, "
            f"num_classes={self.num_classes}, timm mode={self.mode!r})",
            file=sys.stderr,
            flush=True,
        )


class _LaunchedMixup(_Launched, Mixup):
    """Mixup with the launcher's method and parameters (``lmix.integrations.timm``)."""


class _LaunchedFastCollateMixup(_Launched, FastCollateMixup):
    """FastCollateMixup with the launcher's method and parameters (``lmix.integrations.timm``)."""


def install(method: str = "lmix", *, seed: int | None = None, **params: Any) -> None:
    """Replace timm's ``Mixup`` and ``FastCollateMixup`` (in ``timm.data`` and ``timm.data.mixup``)
    with lmix's, bound to ``method`` and its parameters; checks them first (ValueError)."""
    build_mixer(method, seed=0 if seed is None else seed, **params)  # fail now, not inside the script
    _LAUNCH["kwargs"] = {"method": method, "seed": seed, **params}
    import timm.data

    for module in (timm.data, timm_mixup):
        module.Mixup = _LaunchedMixup
        module.FastCollateMixup = _LaunchedFastCollateMixup


class UsageError(Exception):
    """A launcher usage error: one line on stderr, exit code 2."""


USAGE = "usage: python -m lmix.integrations.timm [--method NAME] [--seed N] [--PARAM VALUE ...] -- SCRIPT.py [ARGS ...]"

HELP = f"""{USAGE}

Run a timm training script (timm's train.py or one following it) unmodified, with lmix's mixing in
place of timm's Mixup/CutMix (lmix.integrations.timm.Mixup / FastCollateMixup).

options:
  --method NAME     lmix method: {{methods}} (default lmix)
  --seed N          seed of the mixer (default: torch.initial_seed(), i.e. the script's --seed)
  --PARAM VALUE     a parameter of the method, e.g. --alpha 1.0 --k 1.0 --decay 3.0 --image-k 0
                    (`lmix methods` lists them); VALUE: a number, a word, or a,b for a pair
  -h, --help        show this help

timm's own flags keep their meaning: --mixup/--cutmix (alphas; both > 0: per-sample or per-batch
switch between --method and Mixup with --mixup-switch-prob), --mixup-prob, --mixup-mode,
--mixup-off-epoch, --smoothing. Without --mixup/--cutmix, --mixup 1.0 is appended to turn mixing on;
without --mixup-mode, --mixup-mode elem (one lam and mask per sample).
"""


# Settings that come from timm's arguments, not from the launcher.
_TIMM_KEYS = {
    "mode", "label_smoothing", "smoothing", "num_classes", "prob", "switch_prob", "mixup_alpha", "cutmix_alpha",
    "mixup", "cutmix", "cutmix_minmax", "mixup_prob", "mixup_switch_prob", "mixup_mode", "mixup_off_epoch",
    "correct_lam", "multi_label",
}  # fmt: skip


def _parse_value(text: str) -> Any:
    if "," in text:
        return tuple(_parse_value(part) for part in text.split(","))
    if text.lower() == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_launcher_args(argv: Sequence[str]) -> tuple[str, int | None, dict[str, Any], str, list[str]]:
    """(method, seed, method parameters, script, script arguments) from the launcher's command line."""
    argv = list(argv)
    if "--" not in argv:
        raise UsageError(f"missing '--' before the script; {USAGE}")
    split = argv.index("--")
    own, rest = argv[:split], argv[split + 1 :]
    method, seed, params = "lmix", None, {}
    i = 0
    while i < len(own):
        arg = own[i]
        if not arg.startswith("--") or arg == "--":
            raise UsageError(f"unexpected argument {arg!r} before '--' (expected --NAME VALUE pairs)")
        key, _, inline = arg[2:].partition("=")
        if inline:
            value = inline
            i += 1
        else:
            if i + 1 >= len(own):
                raise UsageError(f"--{key} needs a value")
            value = own[i + 1]
            i += 2
        key = key.replace("-", "_")
        if key == "method":
            method = value
        elif key == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise UsageError(f"--seed must be a non-negative integer, got {value!r}") from None
            if seed < 0:
                raise UsageError(f"--seed must be a non-negative integer, got {value!r}")
        elif key in _TIMM_KEYS:
            raise UsageError(
                f"--{arg[2:].split('=')[0]} is timm's: pass the script's flag after '--' "
                "(--mixup, --cutmix, --mixup-prob, --mixup-switch-prob, --mixup-mode, --smoothing, ...)"
            )
        else:
            params[key] = _parse_value(value)
    if not rest:
        raise UsageError(f"no script after '--'; {USAGE}")
    script, script_args = rest[0], rest[1:]
    if not os.path.isfile(script):
        raise UsageError(f"script {script!r} not found")
    if any(a == "--cutmix-minmax" or a.startswith("--cutmix-minmax=") for a in script_args):
        raise UsageError("--cutmix-minmax is not supported by lmix's mixers; use --cutmix ALPHA")
    return method, seed, params, script, script_args


def _config(script_args: Sequence[str]) -> dict[str, Any]:
    """The YAML file given to the script with ``-c``/``--config`` (timm's train.py), or {}."""
    for i, arg in enumerate(script_args):
        path = None
        if arg in ("-c", "--config") and i + 1 < len(script_args):
            path = script_args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and os.path.isfile(path):
            import yaml

            with open(path) as f:
                config = yaml.safe_load(f)
            return config if isinstance(config, dict) else {}
    return {}


def _given(script_args: Sequence[str], flag: str, key: str) -> bool:
    """Whether ``flag`` is on the script's command line or ``key`` in its config file."""
    if any(a == flag or a.startswith(flag + "=") for a in script_args):
        return True
    return _config(script_args).get(key) is not None


def _mixing_requested(script_args: Sequence[str]) -> bool:
    """Whether the script's arguments (or its ``-c``/``--config`` file) turn timm's mixing on."""
    if any(a in ("--mixup", "--cutmix") or a.startswith(("--mixup=", "--cutmix=")) for a in script_args):
        return True
    config = _config(script_args)
    return any((config.get(k) or 0) > 0 for k in ("mixup", "cutmix"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lmix.integrations.timm``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or ("--" not in argv and ("-h" in argv or "--help" in argv)):
        print(HELP.replace("{methods}", ", ".join(_input_methods())))
        return 0
    try:
        method, seed, params, script, script_args = parse_launcher_args(argv)
        try:
            install(method, seed=seed, **params)
        except (ValueError, TypeError) as err:
            raise UsageError(str(err)) from None
    except UsageError as err:
        print(f"lmix.integrations.timm: {err}", file=sys.stderr)
        return 2
    if not _mixing_requested(script_args):
        script_args = [*script_args, "--mixup", "1.0"]
    if not _given(script_args, "--mixup-mode", "mixup_mode"):
        # lmix's per-sample mixing costs no more than per batch: make it the default.
        script_args = [*script_args, "--mixup-mode", "elem"]
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    _LAUNCH["built"] = 0
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    if not _LAUNCH["built"]:
        print(
            "lmix: warning: the script never created timm's Mixup or FastCollateMixup, so lmix mixed nothing",
            file=sys.stderr,
        )
    return code


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's: the classes the launcher installs
    # must be lmix.integrations.timm's (picklable by name for spawned DataLoader workers).
    from lmix.integrations.timm import main as _main

    sys.exit(_main())
