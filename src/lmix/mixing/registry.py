"""Registry of mixing methods: ``create_mixer(name, **params)`` and ``list_mixers()``.

``create_mixer("a+b", **params)`` builds a ``MixChoice`` over registered mixers ``a`` and ``b``
(e.g. ``"lmix+mixup"``): ``p`` and ``schedule`` go to the choice, ``mode`` to the choice and every
component that takes it, every other parameter to each component that accepts it.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from lmix.errors import LmixValueError
from lmix.mixing.base import Mixer
from lmix.mixing.choice import MixChoice
from lmix.mixing.manifold import ManifoldMixup
from lmix.mixing.mixers import CutMix, Cutout, FMix, LMix, Mixup, NoMix
from lmix.mixing.patchup import PatchUp

__all__ = ["register_mixer", "create_mixer", "list_mixers", "mixer_class"]

_REGISTRY: dict[str, type[Mixer]] = {}


def register_mixer(cls: type[Mixer]) -> type[Mixer]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name or cls.name in _REGISTRY or "+" in cls.name:
        raise LmixValueError(f"cannot register mixer name {cls.name!r}: empty, taken or containing '+'")
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (LMix, FMix, Mixup, CutMix, Cutout, NoMix, PatchUp, ManifoldMixup):
    register_mixer(_cls)


def list_mixers() -> list[str]:
    """Names of the registered mixing methods, in registration order."""
    return list(_REGISTRY)


def mixer_class(name: str) -> type[Mixer]:
    """The class registered under ``name``; ValueError listing the known names otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise LmixValueError(
            f"unknown mixer {name!r}; known mixers: {', '.join(list_mixers())} (or 'a+b' to combine two)"
        )
    return _REGISTRY[name]


def accepted_params(cls: type[Mixer]) -> set[str]:
    """Keyword-only constructor parameters of ``cls``."""
    sig = inspect.signature(cls.__init__)
    return {n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def create_mixer(name: str, **params: Any) -> Mixer:
    """Build a registered mixer, or a ``MixChoice`` for ``"a+b[+c...]"``.

    Args:
        name: a name of ``list_mixers()`` (``"lmix"``, ``"fmix"``, ``"mixup"``, ``"cutmix"``,
            ``"cutout"``, ``"patchup"``, ``"none"``, ...), or several joined by ``+`` for a
            choice between them per batch (or per sample), e.g. ``"lmix+mixup"``.
        **params: the mixer's keyword-only hyperparameters (``alpha``, ``k``, ``mode``,
            ``seed``, ...; ``lmix methods`` lists them with their defaults). For ``"a+b"``,
            ``p`` and ``schedule`` go to the ``MixChoice``; ``mode`` to the choice and every
            component that takes it (``"sample"``: the method and its parameters drawn per
            sample, timm's ``elem`` mode; ``"batch"``: one method and one draw per batch; not
            given: one method per batch, parameters per sample); every other parameter to each
            component that accepts it; component ``i`` gets ``seed + 1 + i``.

    Returns:
        The mixer; ``mixer(images, labels)`` returns a ``MixedBatch``.

    Raises:
        ValueError: unknown name, or a parameter no named mixer accepts.

    Example:
        >>> import torch
        >>> mixer = create_mixer("lmix", k=2.0, seed=0)
        >>> batch = mixer(torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)))
        >>> batch.images.shape, batch.lam.shape
        (torch.Size([8, 3, 32, 32]), torch.Size([8]))
    """
    if isinstance(name, str) and "+" in name:
        return _create_choice(name, params)
    cls = mixer_class(name)
    unknown = set(params) - accepted_params(cls)
    if unknown:
        raise LmixValueError(
            f"unknown parameter(s) {sorted(unknown)} for mixer {name!r}; allowed: {sorted(accepted_params(cls))}"
        )
    return cls(**params)


def _create_choice(name: str, params: dict[str, Any]) -> MixChoice:
    """``create_mixer("a+b", ...)``: ``p`` and ``schedule`` go to the choice, ``mode`` to the choice and
    to every component that takes it, every other parameter to each component that accepts it."""
    classes = [mixer_class(part.strip()) for part in name.split("+")]
    choice_params = {k: params.pop(k) for k in ("p", "schedule", "granularity") if k in params}
    if "granularity" in choice_params:
        warnings.warn(
            "create_mixer(..., granularity=...) is deprecated: use mode=... (it sets the choice's mode and the "
            "components')",
            DeprecationWarning,
            stacklevel=3,
        )
        choice_params["mode"] = choice_params.pop("granularity")
    elif "mode" in params:
        choice_params["mode"] = params["mode"]
    seed = params.pop("seed", None)
    unknown = set(params) - {"mode"} - set().union(*(accepted_params(c) for c in classes))
    if unknown:
        raise LmixValueError(f"unknown parameter(s) {sorted(unknown)} for {name!r}")
    mixers = []
    for i, cls in enumerate(classes):
        sub = {k: v for k, v in params.items() if k in accepted_params(cls)}
        if seed is not None:
            sub["seed"] = seed + 1 + i
        mixers.append(cls(**sub))
    return MixChoice(mixers, seed=seed, **choice_params)
