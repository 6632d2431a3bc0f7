"""A small plain CNN for fast CPU work: three conv-BN-ReLU-maxpool blocks, widths w, 2w, 4w.

With ``width=16`` this is the 16-32-64 CNN of the CPU-scale study (about 24k parameters for 10
classes). Works down to 8x8 inputs (8 -> 4 -> 2 -> 1).

Stages and hook points: ``stages = [block1, block2, block3]``; hook point 0 is the image, 1 the
output of block1 (w channels, 1/2 resolution), 2 of block2 (2w, 1/4).
"""

from __future__ import annotations

from torch import nn

from lmix._checks import check_int
from lmix.models.base import ClassifierHead, StagedNet
from lmix.models.registry import register_model

__all__ = ["SimpleCNN", "simple_cnn"]


def _block(in_planes: int, planes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_planes, planes, 3, padding=1, bias=False),
        nn.BatchNorm2d(planes),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SimpleCNN(StagedNet):
    """Three conv blocks and a linear classifier on globally pooled features.

    Args:
        num_classes: number of classes.
        in_channels: input channels.
        width: channels of the first block; the others have 2x and 4x.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        check_int(width, name="width", minimum=1)
        widths = [width, 2 * width, 4 * width]
        stages = [_block(in_channels, widths[0]), _block(widths[0], widths[1]), _block(widths[1], widths[2])]
        super().__init__(
            stages,
            ClassifierHead(widths[2], num_classes, preact=False),
            num_classes=num_classes,
            num_features=widths[2],
        )


@register_model(
    paper=False, description="small fast CPU model: 3 conv-BN-ReLU-maxpool blocks, widths 16-32-64 (width=16)"
)
def simple_cnn(*, num_classes: int, in_channels: int, width: int = 16) -> SimpleCNN:
    """The 16-32-64 CNN (``width`` scales all three blocks)."""
    return SimpleCNN(num_classes=num_classes, in_channels=in_channels, width=width)
