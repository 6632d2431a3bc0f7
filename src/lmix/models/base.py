"""``StagedNet``: a classifier split into stages, with a hook point before each stage.

Hidden-layer mixing (PatchUp) needs to act on the feature maps between stages. Every model
in ``lmix.models`` is a ``StagedNet``: ``stages`` run in order, then ``head`` (global pooling
and the classifier). ``forward(x, hook=f, hook_at=i)`` replaces the input of ``stages[i]`` by
``f(input)``: point 0 is the image itself, point ``i`` the output of ``stages[i - 1]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lmix._checks import is_integer
from lmix.errors import LmixTypeError, LmixValueError

__all__ = ["StagedNet", "ClassifierHead", "init_kaiming_fan_out"]

Hook = Callable[[Tensor], Tensor]


class ClassifierHead(nn.Module):
    """Optional BN-ReLU (for pre-activation networks), global average pooling, linear layer.

    Adaptive pooling makes every model independent of the input resolution; ``flatten`` (not
    ``view``) keeps channels_last inputs working.

    Args:
        in_features: channels of the last stage's output.
        num_classes: number of outputs.
        preact: apply BatchNorm + ReLU before pooling (the final activation of pre-activation nets).
        spatial_dims: 2 for image features ``(B, C, h, w)``, 1 for sequence features ``(B, C, l)``.
    """

    def __init__(self, in_features: int, num_classes: int, *, preact: bool, spatial_dims: int = 2) -> None:
        super().__init__()
        if spatial_dims not in (1, 2):
            raise LmixValueError(f"spatial_dims must be 1 or 2, got {spatial_dims!r}")
        norm, pool = (
            (nn.BatchNorm2d, nn.AdaptiveAvgPool2d) if spatial_dims == 2 else (nn.BatchNorm1d, nn.AdaptiveAvgPool1d)
        )
        self.norm: nn.Module = norm(in_features) if preact else nn.Identity()
        self.act: nn.Module = nn.ReLU(inplace=True) if preact else nn.Identity()
        self.pool = pool(1)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) (or (B, C, l)) features -> (B, num_classes) logits."""
        x = self.pool(self.act(self.norm(x)))
        return self.fc(torch.flatten(x, 1))


class StagedNet(nn.Module):
    """A classifier made of ``stages`` run in order and a ``head`` on the last stage's output.

    Args:
        stages: the stages, e.g. ``[stem, layer1, layer2, layer3, layer4]``.
        head: maps the last stage's output (B, C, h, w) to logits (B, num_classes).
        num_classes: number of outputs of ``head``.
        num_features: channels of the last stage's output.
    """

    def __init__(self, stages: Sequence[nn.Module], head: nn.Module, *, num_classes: int, num_features: int) -> None:
        super().__init__()
        if len(stages) == 0:
            raise LmixValueError("a StagedNet needs at least one stage")
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.num_classes = num_classes
        self.num_features = num_features

    @property
    def num_hook_points(self) -> int:
        """Number of hook points: 0 is the input, ``i`` the output of ``stages[i - 1]``."""
        return len(self.stages)

    def _check_hook(self, hook: Hook | None, hook_at: int | None) -> None:
        if hook is None and hook_at is None:
            return
        if hook is None or hook_at is None:
            raise LmixValueError("hook and hook_at must be given together")
        if not callable(hook):
            raise LmixTypeError(f"hook must be callable, got {type(hook).__name__}")
        if not is_integer(hook_at) or not 0 <= hook_at < len(self.stages):
            raise LmixValueError(f"hook_at must be an int in [0, {len(self.stages) - 1}], got {hook_at!r}")

    def forward_features(self, x: Tensor, *, hook: Hook | None = None, hook_at: int | None = None) -> Tensor:
        """Run the stages only: (B, C_in, H, W) -> last stage's output (B, num_features, h, w)."""
        self._check_hook(hook, hook_at)
        h = x
        for i, stage in enumerate(self.stages):
            # hook_at is a Python int fixed per call, so this branch is static under torch.compile.
            if i == hook_at:
                h = hook(h)  # type: ignore[misc]
            h = stage(h)
        return h

    def forward(self, x: Tensor, *, hook: Hook | None = None, hook_at: int | None = None) -> Tensor:
        """Images (B, C_in, H, W) -> logits (B, num_classes).

        Args:
            x: input images.
            hook: called on the input of ``stages[hook_at]`` (a (B, C, h, w) tensor); its return
                value replaces that input. It may change the batch size.
            hook_at: hook point in ``[0, num_hook_points)``; 0 is the input image.
        """
        return self.head(self.forward_features(x, hook=hook, hook_at=hook_at))


def init_kaiming_fan_out(model: nn.Module, *, zero_linear_bias: bool = True) -> None:
    """He-normal init with fan_out for convolutions, BN to (1, 0), zero linear biases.

    ``normal(0, sqrt(2 / (k * k * out_channels)))`` is the init of the WRN, DenseNet and
    PyramidNet reference code.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and zero_linear_bias and m.bias is not None:
            nn.init.zeros_(m.bias)
