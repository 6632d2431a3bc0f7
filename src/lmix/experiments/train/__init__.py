"""Training harness: config, trainer (checkpoint + bit-exact resume), DDP via torchrun, safe failures."""

from lmix.experiments.train.config import TrainConfig, config_from_sources, load_yaml
from lmix.experiments.train.failures import TrainingDiverged, TrainingInterrupted
from lmix.experiments.train.mixer_config import mixer_from_config
from lmix.experiments.train.trainer import RunError, load_checkpoint, train

__all__ = [
    "TrainConfig",
    "config_from_sources",
    "load_yaml",
    "train",
    "RunError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "mixer_from_config",
    "load_checkpoint",
]
