"""A small 1-D CNN for time series: three conv-BN-ReLU-maxpool blocks, widths w, 2w, 4w.

The sequence counterpart of ``simple_cnn``: ``Conv1d`` with kernel 7 (a wider receptive field
than a 3x3 image kernel, for series a few hundred steps long), global average pooling over time
and a linear classifier. With ``width=16`` it has 18,646 parameters for 6 classes and one input
channel. Works from length 8 up (8 -> 4 -> 2 -> 1).

Input ``(B, C, L)``; stages and hook points: ``stages = [block1, block2, block3]``; hook point 0
is the sequence, 1 the output of block1 (w channels, L/2), 2 of block2 (2w, L/4).
"""

from __future__ import annotations

from torch import nn

from lmix._checks import check_int
from lmix.errors import LmixValueError
from lmix.models.base import ClassifierHead, StagedNet
from lmix.models.registry import register_model

__all__ = ["CNN1d", "cnn1d"]


def _block(in_planes: int, planes: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(in_planes, planes, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm1d(planes),
        nn.ReLU(inplace=True),
        nn.MaxPool1d(2),
    )


class CNN1d(StagedNet):
    """Three 1-D conv blocks and a linear classifier on features pooled over time.

    Args:
        num_classes: number of classes.
        in_channels: channels of the input sequences.
        width: channels of the first block; the others have 2x and 4x.
        kernel_size: odd length of every convolution's kernel (the output keeps the input length
            before each pooling).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, width: int = 16, kernel_size: int = 7) -> None:
        check_int(width, name="width", minimum=1)
        check_int(kernel_size, name="kernel_size", minimum=1)
        if kernel_size % 2 == 0:
            raise LmixValueError(f"kernel_size must be odd (same-length convolutions), got {kernel_size}")
        widths = [width, 2 * width, 4 * width]
        stages = [
            _block(in_channels, widths[0], kernel_size),
            _block(widths[0], widths[1], kernel_size),
            _block(widths[1], widths[2], kernel_size),
        ]
        super().__init__(
            stages,
            ClassifierHead(widths[2], num_classes, preact=False, spatial_dims=1),
            num_classes=num_classes,
            num_features=widths[2],
        )


@register_model(
    paper=False,
    spatial_dims=1,
    description="small 1-D CNN for time series (B, C, L): 3 conv-BN-ReLU-maxpool blocks, kernel 7, widths 16-32-64",
)
def cnn1d(*, num_classes: int, in_channels: int, width: int = 16, kernel_size: int = 7) -> CNN1d:
    """The 16-32-64 1-D CNN (``width`` scales all three blocks)."""
    return CNN1d(num_classes=num_classes, in_channels=in_channels, width=width, kernel_size=kernel_size)
