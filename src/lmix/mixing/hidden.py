"""Hidden-layer mixing for any ``nn.Module``: run one forward pass with a mixing function applied
at one *hook point* (PatchUp, Manifold Mixup).

Hook points are numbered as in ``lmix.models.StagedNet``: point 0 is the model's input, point
``i`` the output of the ``i``-th named layer. A model's layers are named either

* implicitly (``layers=None``): the model is a ``StagedNet`` (every ``lmix.models`` model, also
  inside DDP or ``torch.compile``), whose ``forward(x, hook=f, hook_at=i)`` applies ``f`` to the
  input of ``stages[i]``, i.e. the output of ``stages[i - 1]``; or
* explicitly: ``layers=("layer1", "layer2")`` names submodules as ``model.named_modules()`` does
  (dotted paths, e.g. ``"layer2.1.conv2"``); point ``i`` is the output of ``layers[i - 1]``,
  replaced by a forward hook (``register_forward_hook`` returning the mixed output) that is
  registered for one forward pass and always removed, even when the pass raises. Point 0 mixes
  the input itself before the model sees it.

A named layer must run exactly once per forward pass (a module reused inside the model, such as
torchvision's ``BasicBlock.relu``, is refused: name its parent instead) and return one tensor
whose first dimension is the batch. Hooks are not re-run by activation checkpointing's
recomputation in the backward pass; do not name a layer inside a checkpointed segment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from lmix._checks import is_integer
from lmix.errors import LmixTypeError, LmixValueError

if TYPE_CHECKING:
    from lmix.mixing.base import Mixer

__all__ = ["check_layers", "unwrap", "num_hook_points", "forward_mixed", "plan_generators"]

MixFn = Callable[[torch.Tensor], torch.Tensor]


def check_layers(layers: object) -> tuple[str, ...] | None:
    """Validate a ``layers`` argument: None, or a sequence of distinct non-empty module names."""
    if layers is None:
        return None
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise LmixValueError(
            "layers must be None (the stages of an lmix model) or a sequence of submodule names as in "
            f"model.named_modules(), e.g. ('layer1', 'layer2'), got {layers!r}"
        )
    names = tuple(layers)
    for name in names:
        if not isinstance(name, str) or not name:
            raise LmixValueError(
                f"layers must hold non-empty submodule names (strings) as in model.named_modules(), got {name!r}"
            )
    if len(set(names)) != len(names):
        raise LmixValueError(f"layers must name each submodule once, got {names!r}")
    return names


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _staged_points(net: nn.Module, who: str) -> int:
    points = getattr(net, "num_hook_points", None)
    if not is_integer(points) or points < 1:
        raise LmixTypeError(
            f"{who} needs a model with stage hooks (lmix.models.StagedNet), got {type(net).__name__}; "
            "for any other model name the submodules to mix after, e.g. layers=('layer1', 'layer2')"
        )
    return points


def _few_names(net: nn.Module) -> str:
    """A short list of valid layer names: the top-level children first, then deeper ones."""
    names = [n for n, _ in net.named_modules() if n]
    shown = [names[i] for i in sorted(range(len(names)), key=lambda i: (names[i].count("."), i))[:8]]
    more = f", ... ({len(names)} in all)" if len(names) > len(shown) else ""
    return ", ".join(repr(n) for n in shown) + more if names else "none (the model has no submodules)"


def _resolve(net: nn.Module, name: str) -> nn.Module:
    try:
        module = net.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, nn.Module):
        raise LmixValueError(
            f"unknown layer {name!r} in {type(net).__name__}; layers name submodules as in "
            f"model.named_modules(), e.g. {_few_names(net)}"
        )
    return module


def num_hook_points(model: nn.Module, layers: tuple[str, ...] | None, *, who: str = "hidden-layer mixing") -> int:
    """Number of hook points of ``model``: ``1 + len(layers)``, or the ``StagedNet``'s own count.

    Every named layer is looked up (ValueError naming a few valid layers if one is unknown), so a
    wrong name fails on the first batch whichever point is drawn.
    """
    net = unwrap(model)
    if layers is None:
        return _staged_points(net, who)
    for name in layers:
        _resolve(net, name)
    return 1 + len(layers)


def plan_generators(
    mixer: Mixer, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Generator, torch.Generator]:
    """``(control, tensors)``: the generators a hidden-layer mixer's per-batch plan draws from.

    Both are ``generator`` when one is given. By default the decisions (the hook point, whether
    to mix) come from the mixer's CPU generator, so reading them needs no device synchronisation,
    and the tensors (partners, weights) from the mixer's generator for ``device``.
    """
    if generator is not None:
        return generator, generator
    return mixer.generator_for("cpu"), mixer.generator_for(device)


def forward_mixed(
    model: nn.Module,
    images: torch.Tensor,
    *,
    point: int,
    mix: MixFn,
    layers: tuple[str, ...] | None,
    ndim: int | None = None,
    who: str = "hidden-layer mixing",
) -> torch.Tensor:
    """Run ``model(images)`` with ``mix`` applied at hook point ``point``; return the logits.

    Args:
        model: a ``StagedNet`` (``layers=None``) or any module whose submodules ``layers`` names;
            possibly inside DDP or ``torch.compile`` (the names are those of the inner model).
        images: (B, C, H, W) model input.
        point: hook point in ``[0, num_hook_points(model, layers))``; 0 is the input.
        mix: maps the (B, ...) tensor at the hook point to the tensor the model continues with.
        layers: the named layers (see the module docstring) or None for a ``StagedNet``.
        ndim: if set, the tensor at a named layer must have this many dimensions (4 for a block
            mask over (B, C, H, W) feature maps).
        who: the method's name, for error messages.

    Returns:
        The model's output, (B, K) logits.

    Raises:
        ValueError: an unknown layer, an output of the wrong shape, or a layer that did not run.
        RuntimeError: a named layer ran more than once in the forward pass.
    """
    if layers is None:
        _staged_points(unwrap(model), who)
        return model(images, hook=mix, hook_at=point)
    if not is_integer(point) or not 0 <= point <= len(layers):
        raise LmixValueError(
            f"{who}: hook point must be an int in [0, {len(layers)}] for layers {layers!r}, got {point!r}"
        )
    if point == 0:
        return model(mix(images))
    name = layers[point - 1]
    module = _resolve(unwrap(model), name)
    batch = images.shape[0]
    calls = 0

    def hook(_module: nn.Module, _args: object, output: object) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError(
                f"{who}: layer {name!r} ran more than once in one forward pass (a module reused inside the "
                "model); name a module that runs once, e.g. its parent block"
            )
        if not isinstance(output, torch.Tensor):
            raise LmixValueError(
                f"{who}: layer {name!r} must return one tensor to be mixed, got {type(output).__name__}; "
                "name a module that returns a (B, ...) tensor"
            )
        if output.ndim < 1 or output.shape[0] != batch:
            raise LmixValueError(
                f"{who}: the output of layer {name!r} has shape {tuple(output.shape)}, whose first dimension is "
                f"not the batch size {batch}; name a module whose output is batch-first"
            )
        if ndim is not None and output.ndim != ndim:
            raise LmixValueError(
                f"{who} needs a {ndim}-D (B, C, H, W) feature map at layer {name!r} for its block mask, got "
                f"shape {tuple(output.shape)}; name a convolutional stage"
            )
        return mix(output)

    handle = module.register_forward_hook(hook)
    try:
        logits = model(images)
    finally:
        handle.remove()
    if calls == 0:
        raise LmixValueError(
            f"{who}: layer {name!r} did not run during the forward pass, so nothing was mixed; "
            "name a module the model's forward calls"
        )
    return logits
