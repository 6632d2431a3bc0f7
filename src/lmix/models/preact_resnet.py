"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

The CIFAR variant of the Mixup and FMix reference code: a 3x3 stem convolution (no pooling),
four stages of ``PreActBlock`` at widths w, 2w, 4w, 8w (w = 64 for the paper models), stride 2
at the start of stages 2-4, then a final BN-ReLU, global average pooling and a linear layer.
PyTorch's default initialisation, as in that code. (Variants differ by a few BatchNorms: the
FMix code adds BN-ReLU after the stem and drops the final BN-ReLU; ``layout="fmix"`` builds that
variant; 11.17M parameters either way.)

Stages and hook points (``StagedNet``): ``stages = [stem, layer1, layer2, layer3, layer4]``;
hook point 0 is the image, 1 the stem output (w channels, full resolution), 2 the output of
layer1 (w, full), 3 of layer2 (2w, 1/2), 4 of layer3 (4w, 1/4). These are the ``layer_mix``
indices 0-4 of the PatchUp reference code (chandar-lab/PatchUp, models/preresnet.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lmix._checks import check_int, check_probability
from lmix.errors import LmixValueError
from lmix.models.base import ClassifierHead, StagedNet
from lmix.models.registry import register_model

LAYOUTS = ("preact", "fmix")

__all__ = ["LAYOUTS", "PreActBlock", "PreActResNet", "preact_resnet18", "preact_resnet34", "preact_resnet_tiny"]


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 with an identity or 1x1-conv shortcut.

    The projection shortcut takes the pre-activated input, as in the reference code. Also the
    block of Wide ResNets (with ``dropout``).

    Args:
        in_planes: input channels.
        planes: output channels.
        stride: stride of the first convolution (and of the shortcut).
        dropout: dropout probability between the two convolutions.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_planes, H, W) -> (B, planes, ceil(H / stride), ceil(W / stride))."""
        # Not in place on x: a hook (PatchUp) may still hold it.
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(F.relu(self.bn2(out), inplace=True)))
        return out + shortcut


def preact_groups(
    in_planes: int, widths: Sequence[int], num_blocks: Sequence[int], dropout: float
) -> tuple[list[nn.Module], int]:
    """Groups of PreActBlocks (group i: ``num_blocks[i]`` blocks of width ``widths[i]``; every group
    after the first starts with stride 2), and the number of output channels."""
    groups: list[nn.Module] = []
    for i, (planes, n) in enumerate(zip(widths, num_blocks, strict=True)):
        blocks = []
        for j in range(n):
            blocks.append(PreActBlock(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1, dropout=dropout))
            in_planes = planes
        groups.append(nn.Sequential(*blocks))
    return groups, in_planes


class PreActResNet(StagedNet):
    """Pre-activation ResNet for small images.

    Args:
        num_blocks: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        num_classes: number of classes.
        in_channels: input channels.
        width: channels of the first stage; stage i has ``width * 2**i``.
        dropout: dropout inside each block.
        layout: ``"preact"`` (bare stem convolution, final BN-ReLU before pooling: the Mixup
            reference and He et al.) or ``"fmix"`` (stem conv-BN-ReLU, no final BN-ReLU: the
            ecs-vlc/FMix ``ResNet18``).
    """

    def __init__(
        self,
        num_blocks: Sequence[int],
        *,
        num_classes: int,
        in_channels: int = 3,
        width: int = 64,
        dropout: float = 0.0,
        layout: str = "preact",
    ) -> None:
        check_int(width, name="width", minimum=1)
        if layout not in LAYOUTS:
            raise LmixValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, got {layout!r}")
        check_probability(dropout, name="dropout", allow_one=False)
        if len(num_blocks) == 0:
            raise LmixValueError("num_blocks must name at least one stage")
        for n in num_blocks:
            check_int(n, name="blocks per stage", minimum=1)
        stem: nn.Module = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        if layout == "fmix":
            stem = nn.Sequential(stem, nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages: list[nn.Module] = [stem]
        groups, in_planes = preact_groups(width, [width * 2**i for i in range(len(num_blocks))], num_blocks, dropout)
        stages.extend(groups)
        head = ClassifierHead(in_planes, num_classes, preact=layout == "preact")
        super().__init__(stages, head, num_classes=num_classes, num_features=in_planes)


@register_model(
    paper=True,
    description="PreAct-ResNet-18 (CIFAR variant of the Mixup/FMix code), 4 stages [2,2,2,2], widths 64-512",
    published_params=11_170_000,
    published_source="LMix/FMix/Mixup papers: 11.17M (10 classes)",
)
def preact_resnet18(
    *, num_classes: int, in_channels: int, width: int = 64, dropout: float = 0.0, layout: str = "preact"
) -> PreActResNet:
    """PreAct-ResNet-18: blocks [2, 2, 2, 2]."""
    return PreActResNet(
        (2, 2, 2, 2), num_classes=num_classes, in_channels=in_channels, width=width, dropout=dropout, layout=layout
    )


@register_model(
    paper=True,
    description="PreAct-ResNet-34 (CIFAR variant of the Mixup/FMix code), 4 stages [3,4,6,3], widths 64-512",
)
def preact_resnet34(
    *, num_classes: int, in_channels: int, width: int = 64, dropout: float = 0.0, layout: str = "preact"
) -> PreActResNet:
    """PreAct-ResNet-34: blocks [3, 4, 6, 3]."""
    return PreActResNet(
        (3, 4, 6, 3), num_classes=num_classes, in_channels=in_channels, width=width, dropout=dropout, layout=layout
    )


@register_model(
    paper=False,
    description="small fast CPU model: PreAct-ResNet with blocks [1,1,1,1], widths 16-128 (width=16)",
)
def preact_resnet_tiny(
    *, num_classes: int, in_channels: int, width: int = 16, dropout: float = 0.0, layout: str = "preact"
) -> PreActResNet:
    """PreAct-ResNet with one block per stage and base width 16 (about 0.3M parameters): works at 8x8."""
    return PreActResNet(
        (1, 1, 1, 1), num_classes=num_classes, in_channels=in_channels, width=width, dropout=dropout, layout=layout
    )
