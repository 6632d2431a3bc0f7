"""DenseNet-BC (Huang et al. 2017) for small images, as in the reference CIFAR code.

A 3x3 stem convolution to ``2 * growth_rate`` channels, three dense blocks of ``(depth - 4) / 6``
bottleneck layers (BN-ReLU-conv1x1 to ``4 * growth_rate``, BN-ReLU-conv3x3 to ``growth_rate``,
concatenated to the input), transitions (BN-ReLU-conv1x1 with compression, 2x2 average pooling)
between the blocks, final BN-ReLU, global average pooling, linear. He-normal (fan_out)
initialisation, zero linear bias.

Stages and hook points: ``stages = [stem, block1 + transition1, block2 + transition2, block3]``;
hook point 0 is the image, 1 the stem output (2k channels, full resolution), 2 the output of
transition1 (1/2 resolution), 3 of transition2 (1/4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmix._checks import check_int, is_finite_real
from lmix.errors import LmixValueError
from lmix.models.base import ClassifierHead, StagedNet, init_kaiming_fan_out
from lmix.models.registry import register_model

__all__ = ["DenseNetBC", "densenet_bc_190"]


class DenseLayer(nn.Module):
    """Bottleneck layer: (B, C, H, W) -> (B, C + growth_rate, H, W)."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        inter = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, inter, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out), inplace=True))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1-avgpool2: (B, C_in, H, W) -> (B, C_out, H // 2, W // 2)."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNetBC(StagedNet):
    """DenseNet-BC with three dense blocks.

    Args:
        depth: total depth, ``6n + 4`` (n bottleneck layers per block).
        growth_rate: channels added per layer (k).
        compression: channel reduction of the transitions (theta).
        num_classes: number of classes.
        in_channels: input channels.
    """

    def __init__(
        self, *, depth: int, growth_rate: int, compression: float = 0.5, num_classes: int, in_channels: int = 3
    ) -> None:
        check_int(depth, name="depth", minimum=10)
        check_int(growth_rate, name="growth_rate", minimum=1)
        if not is_finite_real(compression) or not 0 < compression <= 1:
            raise LmixValueError(f"compression must be a float in (0, 1], got {compression!r}")
        if (depth - 4) % 6 != 0:
            raise LmixValueError(f"DenseNet-BC depth must be 6n + 4 (e.g. 100, 190, 250), got {depth}")
        n = (depth - 4) // 6
        planes = 2 * growth_rate
        stages: list[nn.Module] = [nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)]
        for i in range(3):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(DenseLayer(planes, growth_rate))
                planes += growth_rate
            if i < 2:
                out_planes = int(planes * compression)
                layers.append(Transition(planes, out_planes))
                planes = out_planes
            stages.append(nn.Sequential(*layers))
        head = ClassifierHead(planes, num_classes, preact=True)
        super().__init__(stages, head, num_classes=num_classes, num_features=planes)
        init_kaiming_fan_out(self)


@register_model(
    paper=True,
    description="DenseNet-BC-190, growth rate 40, compression 0.5: 3 dense blocks of 31 bottleneck layers",
    published_params=25_600_000,
    published_source="Huang et al. 2017, Table 2: 25.6M",
)
def densenet_bc_190(*, num_classes: int, in_channels: int) -> DenseNetBC:
    """DenseNet-BC (L=190, k=40)."""
    return DenseNetBC(depth=190, growth_rate=40, compression=0.5, num_classes=num_classes, in_channels=in_channels)
