"""Models for the paper's experiments and small fast CPU models, all ``StagedNet``s.

``create_model(name, num_classes, in_channels=3, **options)`` builds one; ``list_models()``
names them; ``model_info(name)`` gives the metadata (paper model or not, published and actual
parameter counts, options, hook points, the input it takes). Every image model runs at any
input size from 8x8 up (28x28x1, 32x32x3, 64x64x3, ...) thanks to adaptive pooling in its head;
``cnn1d`` takes sequences ``(B, C, L)`` of any length from 8 up (``model_info(name).spatial_dims``
is 1). All expose hook points between their stages for hidden-layer mixing
(``forward(x, hook=f, hook_at=i)``).
"""

from lmix.models.base import ClassifierHead, StagedNet
from lmix.models.registry import ModelInfo, count_parameters, create_model, list_models, model_info, register_model

# Importing the model modules registers them, in this order.
from lmix.models.preact_resnet import PreActBlock, PreActResNet  # isort: skip
from lmix.models.wide_resnet import WideResNet  # isort: skip
from lmix.models.densenet import DenseNetBC  # isort: skip
from lmix.models.pyramidnet import PyramidNet  # isort: skip
from lmix.models.simple_cnn import SimpleCNN  # isort: skip
from lmix.models.cnn1d import CNN1d  # isort: skip

__all__ = [
    "CNN1d",
    "ClassifierHead",
    "DenseNetBC",
    "ModelInfo",
    "PreActBlock",
    "PreActResNet",
    "PyramidNet",
    "SimpleCNN",
    "StagedNet",
    "WideResNet",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]
