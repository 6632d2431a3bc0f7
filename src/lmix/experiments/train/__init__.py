"""Training harness: config, trainer (checkpoint + bit-exact resume), DDP via torchrun, safe failures."""

from lmix.experiments.train.config import TrainConfig, config_from_sources, load_yaml
from lmix.experiments.train.failures import TrainingDiverged, TrainingInterrupted
from lmix.experiments.train.trainer import RunError, build_mixer, load_checkpoint, train

__all__ = [
    "TrainConfig",
    "config_from_sources",
    "load_yaml",
    "train",
    "RunError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_mixer",
    "load_checkpoint",
]
