"""PreAct-ResNet layouts: lmix's (He et al. / Mixup reference) and the FMix reference's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lmix
from lmix.experiments.train import TrainConfig
from lmix.models import count_parameters


@pytest.mark.parametrize("name", ["preact_resnet18", "preact_resnet34", "preact_resnet_tiny"])
def test_fmix_layout_moves_the_batchnorm_from_the_head_to_the_stem(name):
    preact = lmix.create_model(name, num_classes=10, in_channels=3, layout="preact")
    fmix = lmix.create_model(name, num_classes=10, in_channels=3, layout="fmix")
    assert isinstance(preact.stages[0], nn.Conv2d) and isinstance(preact.head.norm, nn.BatchNorm2d)
    assert isinstance(fmix.stages[0], nn.Sequential) and isinstance(fmix.stages[0][1], nn.BatchNorm2d)
    assert isinstance(fmix.head.norm, nn.Identity)
    width = preact.stages[0].out_channels
    # stem BN (2 * width) in, final BN (2 * num_features) out
    delta = count_parameters(name, 10, 3, layout="fmix") - count_parameters(name, 10, 3)
    assert delta == 2 * width - 2 * preact.num_features
    assert fmix(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_preact_resnet18_fmix_layout_keeps_11_17m_parameters():
    assert round(count_parameters("preact_resnet18", 10, 3, layout="fmix") / 1e6, 2) == 11.17


def test_bad_layout_and_model_layout_on_other_models_are_errors():
    with pytest.raises(ValueError, match="layout must be one of 'preact', 'fmix'"):
        lmix.create_model("preact_resnet18", num_classes=10, in_channels=3, layout="kuangliu")
    with pytest.raises(ValueError, match="model_layout applies to the PreAct-ResNets"):
        TrainConfig(model="simple_cnn", model_layout="fmix").validate()
    with pytest.raises(ValueError, match="model_layout must be 'preact' or 'fmix'"):
        TrainConfig(model="preact_resnet18", model_layout="x").validate()


def test_trainer_builds_the_layout_it_is_given():
    from types import SimpleNamespace

    from lmix.experiments.train.trainer import build_model

    info = SimpleNamespace(num_classes=10, in_channels=1)
    model = build_model(TrainConfig(model="preact_resnet_tiny", model_layout="fmix").validate(), info)
    assert isinstance(model.head.norm, nn.Identity)
    model = build_model(TrainConfig(model="preact_resnet_tiny").validate(), info)
    assert isinstance(model.head.norm, nn.BatchNorm2d)
