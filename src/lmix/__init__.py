"""lmix: mixed-sample data augmentation (LMix, FMix, Mixup, CutMix, Cutout, PatchUp) and a harness
that reproduces the LMix paper.

Two layers. The library, which needs torch alone: ``lmix.mixing`` (masks, mixers, loss) and
``lmix.models``, plus ``lmix.augment``, and ``lmix.data`` / ``lmix.transforms`` /
``lmix.integrations`` on top of torchvision or timm. The experiment system, ``lmix.experiments``
(trainer, sweeps, reports, FGSM, the paper's configs, the ``lmix`` command line), needs the
``train`` extra.

Data flow: ``lmix.data`` -> ``lmix.augment`` -> ``lmix.mixing`` -> ``lmix.models`` -> loss
(``lmix.mixed_cross_entropy``) -> ``lmix.experiments.metrics``.

The names below are imported on first use (PEP 562), so ``import lmix`` alone loads nothing
heavy, not even torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# Public name -> module it lives in. Imported on first access (module __getattr__, PEP 562).
_EXPORTS: dict[str, str] = {
    "CutMix": "lmix.mixing",
    "Cutout": "lmix.mixing",
    "FMix": "lmix.mixing",
    "LMix": "lmix.mixing",
    "MixChoice": "lmix.mixing",
    "MixedBatch": "lmix.mixing",
    "Mixer": "lmix.mixing",
    "MixParams": "lmix.mixing",
    "Mixup": "lmix.mixing",
    "NoMix": "lmix.mixing",
    "PatchUp": "lmix.mixing",
    "ManifoldMixup": "lmix.mixing",
    "create_mixer": "lmix.mixing",
    "fourier_masks": "lmix.mixing",
    "list_mixers": "lmix.mixing",
    "mixed_cross_entropy": "lmix.mixing",
    "register_mixer": "lmix.mixing",
    "create_model": "lmix.models",
    "list_models": "lmix.models",
    "model_info": "lmix.models",
}

# Subpackages reachable as attributes of ``lmix`` without an explicit import.
_SUBMODULES = frozenset({"augment", "data", "experiments", "integrations", "mixing", "models", "transforms"})

__all__ = [  # = _EXPORTS and __version__ (tests/test_packaging.py checks); a literal for linters and docs
    "CutMix",
    "Cutout",
    "FMix",
    "LMix",
    "MixChoice",
    "MixedBatch",
    "Mixer",
    "MixParams",
    "Mixup",
    "NoMix",
    "PatchUp",
    "ManifoldMixup",
    "create_mixer",
    "fourier_masks",
    "list_mixers",
    "mixed_cross_entropy",
    "register_mixer",
    "create_model",
    "list_models",
    "model_info",
    "__version__",
]

if TYPE_CHECKING:  # static type checkers and IDEs see the eager imports
    from lmix.mixing import (
        CutMix,
        Cutout,
        FMix,
        LMix,
        ManifoldMixup,
        MixChoice,
        MixedBatch,
        Mixer,
        MixParams,
        Mixup,
        NoMix,
        PatchUp,
        create_mixer,
        fourier_masks,
        list_mixers,
        mixed_cross_entropy,
        register_mixer,
    )
    from lmix.models import create_model, list_models, model_info


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'lmix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
