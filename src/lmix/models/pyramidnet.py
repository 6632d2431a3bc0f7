"""PyramidNets (Han et al. 2017) for small images, as in the reference code (dyhan0920/PyramidNet-PyTorch).

A 3x3 stem convolution to 16 channels with BN, three groups of ``(depth - 2) / 9`` bottleneck
blocks whose width grows linearly by ``alpha / (3n)`` per block, stride 2 (average-pooled
shortcut) at the start of groups 2 and 3, zero-padded identity shortcuts, final BN-ReLU, global
average pooling, linear. He-normal (fan_out) initialisation.

Optional ShakeDrop (Yamada et al. 2019), as in the FMix code's PyramidNet (taken from
kakaobrain/fast-autoaugment): block ``l`` of ``L`` drops with probability ``shakedrop * l / L``
(0.5 there). The LMix paper does not mention it, so it is off by default.

Stages and hook points: ``stages = [stem, group1, group2, group3]``; hook point 0 is the image,
1 the stem output (16 channels, full resolution), 2 the output of group1 (full), 3 of group2 (1/2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmix._checks import check_int, is_finite_real
from lmix.errors import LmixValueError
from lmix.models.base import ClassifierHead, StagedNet, init_kaiming_fan_out
from lmix.models.registry import register_model

__all__ = ["ShakeDrop", "PyramidBottleneck", "PyramidNet", "pyramidnet272_200"]


class _ShakeDropFunction(torch.autograd.Function):
    """Scale by ``gate + (1 - gate) * alpha`` forward and ``gate + (1 - gate) * beta`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, gate: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(gate, beta)
        return x * (gate + (1 - gate) * alpha)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        gate, beta = ctx.saved_tensors
        return grad * (gate + (1 - gate) * beta), None, None, None


class ShakeDrop(nn.Module):
    """ShakeDrop on a residual branch (B, C, H, W).

    Training: with probability ``p_drop`` (one draw per batch, as in the reference code) the
    branch is scaled by a per-sample ``alpha ~ U(-1, 1)`` forward and ``beta ~ U(0, 1)`` in the
    backward pass; otherwise it passes unchanged. Evaluation: scaled by ``1 - p_drop``. Random
    draws use torch's global RNG and stay tensors, so there is no data-dependent Python branch.

    Args:
        p_drop: drop probability in [0, 1].
    """

    def __init__(self, p_drop: float) -> None:
        super().__init__()
        if not 0.0 <= p_drop <= 1.0:
            raise LmixValueError(f"p_drop must be in [0, 1], got {p_drop}")
        self.p_drop = float(p_drop)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x * (1.0 - self.p_drop)
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        # Drawn in float32 (every device supports it), then cast so the output keeps x's dtype.
        gate = torch.bernoulli(torch.full((1,) * x.dim(), 1.0 - self.p_drop, device=x.device)).to(x.dtype)
        alpha = (torch.rand(shape, device=x.device) * 2 - 1).to(x.dtype)
        beta = torch.rand(shape, device=x.device).to(x.dtype)
        return _ShakeDropFunction.apply(x, gate, alpha, beta)

    def extra_repr(self) -> str:
        return f"p_drop={self.p_drop:.4f}"


class PyramidBottleneck(nn.Module):
    """BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN, output ``4 * planes`` channels.

    The shortcut is the input (average-pooled when strided), zero-padded in channels.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, p_shakedrop: float = 0.0) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        if out_planes < in_planes:
            raise LmixValueError(f"a pyramid block cannot shrink channels ({in_planes} -> {out_planes})")
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(out_planes)
        self.shakedrop: nn.Module = ShakeDrop(p_shakedrop) if p_shakedrop > 0 else nn.Identity()
        # ceil_mode matches the strided 3x3 convolution's output size on odd inputs (7x7 -> 4x4).
        self.downsample: nn.Module = nn.AvgPool2d(2, stride=2, ceil_mode=True) if stride != 1 else nn.Identity()
        self.pad_channels = out_planes - in_planes  # static, so no data-dependent branch

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_planes, H, W) -> (B, 4 * planes, ceil(H / stride), ceil(W / stride))."""
        out = self.conv1(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(out), inplace=True))
        out = self.conv3(F.relu(self.bn3(out), inplace=True))
        out = self.shakedrop(self.bn4(out))
        shortcut = self.downsample(x)
        if self.pad_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad_channels))
        return out + shortcut


class PyramidNet(StagedNet):
    """Bottleneck PyramidNet.

    Args:
        depth: total depth, ``9n + 2``.
        alpha: total widening over the ``3n`` blocks.
        num_classes: number of classes.
        in_channels: input channels.
        shakedrop: ShakeDrop probability of the last block (linear in the block index); 0 disables it.
    """

    def __init__(
        self, *, depth: int, alpha: int, num_classes: int, in_channels: int = 3, shakedrop: float = 0.0
    ) -> None:
        check_int(depth, name="depth", minimum=11)
        check_int(alpha, name="alpha", minimum=1)
        if not is_finite_real(shakedrop) or not 0 <= shakedrop <= 1:
            raise LmixValueError(f"shakedrop must be a float in [0, 1], got {shakedrop!r}")
        if (depth - 2) % 9 != 0:
            raise LmixValueError(f"bottleneck PyramidNet depth must be 9n + 2 (e.g. 110, 164, 272), got {depth}")
        n = (depth - 2) // 9
        add_rate = alpha / (3 * n)
        stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        stages: list[nn.Module] = [stem]
        in_planes = 16
        width = 16.0  # fractional width, rounded per block as in the reference code
        for i in range(3):
            blocks = []
            for j in range(n):
                width += add_rate
                planes = int(round(width))
                index = i * n + j + 1  # 1-based block index among all 3n blocks
                blocks.append(
                    PyramidBottleneck(
                        in_planes,
                        planes,
                        stride=2 if (i > 0 and j == 0) else 1,
                        p_shakedrop=shakedrop * index / (3 * n),
                    )
                )
                in_planes = planes * PyramidBottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        head = ClassifierHead(in_planes, num_classes, preact=True)
        super().__init__(stages, head, num_classes=num_classes, num_features=in_planes)
        init_kaiming_fan_out(self, zero_linear_bias=False)


@register_model(
    paper=True,
    description="PyramidNet-272 (bottleneck), alpha 200: 3 groups of 30 blocks, width 16 -> 216 (x4 out)",
    published_params=26_000_000,
    published_source="Han et al. 2017, Table 4: 26.0M (their count leaves out BatchNorm: ours without BN is 26.00M)",
)
def pyramidnet272_200(*, num_classes: int, in_channels: int, shakedrop: float = 0.0) -> PyramidNet:
    """PyramidNet-272, alpha = 200, bottleneck blocks (``shakedrop=0.5`` for the FMix code's variant)."""
    return PyramidNet(depth=272, alpha=200, num_classes=num_classes, in_channels=in_channels, shakedrop=shakedrop)
