"""lmix: mixed-sample data augmentation (LMix, FMix, Mixup, CutMix, Cutout, PatchUp) and a harness
that reproduces the LMix paper.

Data flow: ``lmix.data`` -> ``lmix.augment`` -> ``lmix.mixing`` -> ``lmix.models`` -> loss -> metrics.
"""

from lmix.mixing import (
    CutMix,
    Cutout,
    FMix,
    LMix,
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

__version__ = "0.1.0"

__all__ = [
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
