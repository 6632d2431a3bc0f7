"""Registry of models: ``create_model``, ``list_models``, ``register_model``, ``model_info``.

A model builder is a function ``builder(*, num_classes, in_channels, **options) -> StagedNet``
whose options are keyword-only with defaults; ``register_model`` records it with its metadata,
including the input it takes: images ``(B, C, H, W)`` (``spatial_dims=2``) or sequences
``(B, C, L)`` (``spatial_dims=1``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lmix._checks import check_int
from lmix.errors import LmixTypeError, LmixValueError
from lmix.models.base import StagedNet

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "model_info", "count_parameters"]

Builder = Callable[..., StagedNet]


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    paper: bool
    published_params: int | None
    published_source: str | None
    description: str
    spatial_dims: int


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a registered model.

    Attributes:
        name: registry name.
        description: one line.
        paper: whether the LMix paper trains this model.
        published_params: parameter count published for it (10 classes, 3 input channels), or None.
        published_source: where that count is published.
        params: parameter count of our implementation at 10 classes and 3 input channels.
        options: the builder's keyword options and their defaults.
        num_hook_points: hook points of the built model (see ``StagedNet``).
        spatial_dims: the input it takes: 2 for images ``(B, C, H, W)``, 1 for sequences ``(B, C, L)``.
    """

    name: str
    description: str
    paper: bool
    published_params: int | None
    published_source: str | None
    params: int
    options: dict[str, Any]
    num_hook_points: int
    spatial_dims: int = 2


_REGISTRY: dict[str, _Entry] = {}


def _options(builder: Builder) -> dict[str, Any]:
    sig = inspect.signature(builder)
    return {
        n: p.default
        for n, p in sig.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("num_classes", "in_channels")
    }


def register_model(
    name: str | None = None,
    *,
    paper: bool,
    description: str,
    published_params: int | None = None,
    published_source: str | None = None,
    spatial_dims: int = 2,
) -> Callable[[Builder], Builder]:
    """Decorator registering a model builder under ``name`` (default: the function's name).

    Args:
        name: registry name; must be new.
        paper: whether the LMix paper uses the model.
        description: one line shown by ``lmix models``.
        published_params: published parameter count for 10 classes, if any.
        published_source: the publication of that count.
        spatial_dims: the input the model takes: 2 for images ``(B, C, H, W)``, 1 for sequences
            ``(B, C, L)``.
    """
    if not isinstance(description, str) or not description or "\n" in description:
        raise LmixValueError("description must be one non-empty line")
    if spatial_dims not in (1, 2) or isinstance(spatial_dims, bool):
        raise LmixValueError(f"spatial_dims must be 1 (sequences) or 2 (images), got {spatial_dims!r}")
    if published_params is not None:
        check_int(published_params, name="published_params", minimum=1)

    def decorate(builder: Builder) -> Builder:
        key = builder.__name__ if name is None else name
        if not isinstance(key, str) or not key or key in _REGISTRY:
            raise LmixValueError(f"cannot register model name {key!r}: empty or already taken")
        params = inspect.signature(builder).parameters
        for required in ("num_classes", "in_channels"):
            if required not in params or params[required].kind is not inspect.Parameter.KEYWORD_ONLY:
                raise LmixTypeError(f"model builder {key!r} must take keyword-only {required!r}")
        for n, p in params.items():
            if n not in ("num_classes", "in_channels") and (
                p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is inspect.Parameter.empty
            ):
                raise LmixTypeError(f"model builder {key!r}: option {n!r} must be keyword-only with a default")
        _REGISTRY[key] = _Entry(
            builder, bool(paper), published_params, published_source, description, int(spatial_dims)
        )
        return builder

    return decorate


def list_models(*, spatial_dims: int | None = None) -> list[str]:
    """Names of the registered models, in registration order.

    Args:
        spatial_dims: only the models taking images (2) or sequences (1); None: all.
    """
    return [n for n, e in _REGISTRY.items() if spatial_dims is None or e.spatial_dims == spatial_dims]


def _entry(name: str) -> _Entry:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise LmixValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs: Any) -> StagedNet:
    """Build a registered model with freshly initialised weights (uses torch's global RNG).

    Args:
        name: one of ``list_models()``.
        num_classes: number of classes, an int >= 2.
        in_channels: channels of the input images, an int >= 1.
        **kwargs: the model's options (see ``model_info(name).options``), e.g. ``width``.

    Raises:
        ValueError: unknown name or option, or a value out of range.
        TypeError: a value of the wrong type.
    """
    entry = _entry(name)
    check_int(num_classes, name="num_classes", minimum=2)
    check_int(in_channels, name="in_channels", minimum=1)
    allowed = _options(entry.builder)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        shown = ", ".join(f"{k}={v!r}" for k, v in allowed.items()) or "none"
        raise LmixValueError(f"unknown option(s) {unknown} for model {name!r}; allowed: {shown}")
    return entry.builder(num_classes=num_classes, in_channels=in_channels, **kwargs)


@functools.lru_cache(maxsize=256)
def _count(name: str, num_classes: int, in_channels: int, options: tuple[tuple[str, Any], ...]) -> tuple[int, int]:
    # On the meta device no memory is allocated and init is a no-op: counting is instant.
    with torch.device("meta"):
        model = create_model(name, num_classes, in_channels, **dict(options))
    return sum(p.numel() for p in model.parameters()), model.num_hook_points


def count_parameters(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> int:
    """Number of parameters of ``create_model(name, num_classes, in_channels, **kwargs)``, without building it."""
    return _count(name, num_classes, in_channels, tuple(sorted(kwargs.items())))[0]


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model, with its parameter count at 10 classes and 3 input channels."""
    entry = _entry(name)
    params, hooks = _count(name, 10, 3, ())
    return ModelInfo(
        name=name,
        description=entry.description,
        paper=entry.paper,
        published_params=entry.published_params,
        published_source=entry.published_source,
        params=params,
        options=_options(entry.builder),
        num_hook_points=hooks,
        spatial_dims=entry.spatial_dims,
    )
