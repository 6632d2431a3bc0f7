"""Training harness: config, trainer (checkpoint + bit-exact resume), DDP via torchrun."""

from lmix.experiments.train.config import TrainConfig, config_from_sources, load_yaml
from lmix.experiments.train.trainer import RunError, build_mixer, load_checkpoint, train

__all__ = ["TrainConfig", "config_from_sources", "load_yaml", "train", "RunError", "build_mixer", "load_checkpoint"]
