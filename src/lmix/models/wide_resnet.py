"""Wide ResNets (Zagoruyko and Komodakis 2016), the CIFAR WRN-d-k of the reference code.

A 3x3 stem convolution to 16 channels, three groups of ``(d - 4) / 6`` pre-activation blocks at
16k, 32k, 64k channels (stride 2 at the start of groups 2 and 3), final BN-ReLU, global average
pooling, linear. He-normal (fan_out) initialisation, zero linear bias.

Stages and hook points: ``stages = [stem, group1, group2, group3]``; hook point 0 is the image,
1 the stem output (16 channels, full resolution), 2 the output of group1 (16k, full), 3 of
group2 (32k, 1/2).
"""

from __future__ import annotations

from torch import nn

from lmix._checks import check_int, check_probability
from lmix.errors import LmixValueError
from lmix.models.base import ClassifierHead, StagedNet, init_kaiming_fan_out
from lmix.models.preact_resnet import preact_groups
from lmix.models.registry import register_model

__all__ = ["WideResNet", "wrn28_10"]


class WideResNet(StagedNet):
    """WRN-depth-widen_factor.

    Args:
        depth: total depth, ``6n + 4``.
        widen_factor: channel multiplier k.
        num_classes: number of classes.
        in_channels: input channels.
        dropout: dropout between the two convolutions of each block (0.3 in some of the WRN paper's runs).
    """

    def __init__(
        self, *, depth: int, widen_factor: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0
    ) -> None:
        check_int(depth, name="depth", minimum=10)
        check_int(widen_factor, name="widen_factor", minimum=1)
        check_probability(dropout, name="dropout", allow_one=False)
        if (depth - 4) % 6 != 0:
            raise LmixValueError(f"WideResNet depth must be 6n + 4 (e.g. 16, 22, 28, 40), got {depth}")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        stages: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)]
        groups, in_planes = preact_groups(16, widths, [n] * len(widths), dropout)
        stages.extend(groups)
        head = ClassifierHead(in_planes, num_classes, preact=True)
        super().__init__(stages, head, num_classes=num_classes, num_features=in_planes)
        init_kaiming_fan_out(self)


@register_model(
    paper=True,
    description="Wide ResNet 28-10: 3 groups of 4 pre-activation blocks, widths 160-320-640",
    published_params=36_500_000,
    published_source="Zagoruyko & Komodakis 2016, Table 1: 36.5M",
)
def wrn28_10(*, num_classes: int, in_channels: int, dropout: float = 0.0) -> WideResNet:
    """WRN-28-10."""
    return WideResNet(depth=28, widen_factor=10, num_classes=num_classes, in_channels=in_channels, dropout=dropout)
