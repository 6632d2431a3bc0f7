"""Registry of mixing methods: ``create_mixer(name, **params)`` and ``list_mixers()``.

``create_mixer("a+b", **params)`` builds a ``MixChoice`` over registered mixers ``a`` and ``b``
(e.g. ``"lmix+mixup"``): ``p``, ``schedule`` and ``granularity`` go to the choice, every other parameter to
each component that accepts it.
"""

from __future__ import annotations

import inspect
from typing import Any

from lmix.mixing.manifold import ManifoldMixup
from lmix.mixing.mixers import CutMix, Cutout, FMix, LMix, MixChoice, Mixer, Mixup, NoMix
from lmix.mixing.patchup import PatchUp

__all__ = ["register_mixer", "create_mixer", "list_mixers", "mixer_class"]

_REGISTRY: dict[str, type[Mixer]] = {}


def register_mixer(cls: type[Mixer]) -> type[Mixer]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name or cls.name in _REGISTRY or "+" in cls.name:
        raise ValueError(f"cannot register mixer name {cls.name!r}: empty, taken or containing '+'")
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
        raise ValueError(f"unknown mixer {name!r}; known mixers: {', '.join(list_mixers())} (or 'a+b' to combine two)")
    return _REGISTRY[name]


def accepted_params(cls: type[Mixer]) -> set[str]:
    """Keyword-only constructor parameters of ``cls``."""
    sig = inspect.signature(cls.__init__)
    return {n for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def create_mixer(name: str, **params: Any) -> Mixer:
    """Build a registered mixer, or a ``MixChoice`` for ``"a+b[+c...]"``.

    Raises:
        ValueError: unknown name, or a parameter no named mixer accepts.
    """
    if isinstance(name, str) and "+" in name:
        parts = [s.strip() for s in name.split("+")]
        classes = [mixer_class(part) for part in parts]
        choice_params = {k: params.pop(k) for k in ("p", "schedule", "granularity") if k in params}
        seed = params.pop("seed", None)
        unknown = set(params) - set().union(*(accepted_params(c) for c in classes))
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {name!r}")
        mixers = []
        for i, cls in enumerate(classes):
            sub = {k: v for k, v in params.items() if k in accepted_params(cls)}
            if seed is not None:
                sub["seed"] = seed + 1 + i
            mixers.append(cls(**sub))
        return MixChoice(mixers, seed=seed, **choice_params)
    cls = mixer_class(name)
    unknown = set(params) - accepted_params(cls)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for mixer {name!r}; allowed: {sorted(accepted_params(cls))}"
        )
    return cls(**params)
