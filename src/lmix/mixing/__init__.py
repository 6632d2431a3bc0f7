"""The mixing core: pure torch, vectorised per sample, randomness from explicit generators."""

from lmix.mixing.base import Mixer
from lmix.mixing.batch import MixedBatch, MixParams, mixed_cross_entropy
from lmix.mixing.choice import ChoiceParams, MixChoice
from lmix.mixing.manifold import ManifoldMixup
from lmix.mixing.masks import fourier_masks, fourier_noise, sharpen
from lmix.mixing.mixers import CutMix, Cutout, FMix, LMix, Mixup, NoMix
from lmix.mixing.patchup import PatchUp
from lmix.mixing.registry import create_mixer, list_mixers, register_mixer

__all__ = [
    "MixedBatch",
    "mixed_cross_entropy",
    "fourier_masks",
    "fourier_noise",
    "sharpen",
    "Mixer",
    "MixParams",
    "ChoiceParams",
    "LMix",
    "FMix",
    "Mixup",
    "CutMix",
    "Cutout",
    "NoMix",
    "MixChoice",
    "PatchUp",
    "ManifoldMixup",
    "create_mixer",
    "list_mixers",
    "register_mixer",
]
