"""What groups runs into cells, and how groups are named and ordered.

A run's grouping settings are its config minus identity (data set, model, method), seed and the
settings that do not change what it computes. Mixing settings its method does not use, unset
(``null``) or equal to the method's default, count as unset: ``none`` with ``alpha: 1`` is plain
``none``, and ``lmix`` with ``k: null`` or ``k: 1.0`` is plain ``lmix``.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmix.experiments.report.collect import RunRecord

__all__ = [
    "IDENTITY",
    "MIXER_SETTINGS",
    "grouping_settings",
    "mixer_defaults",
    "same_value",
    "method_key",
    "method_display",
    "format_setting",
    "sort_value",
]

# Settings that do not change what a run computes (or only how fast / where).
_IGNORED_SETTINGS = frozenset(
    {
        "out",
        "progress",
        "tensorboard",
        "num_workers",
        "data_root",
        "download",
        "device",
        "compile",
        "channels_last",
        "eval_train",
        "in_memory",
        "seed",
    }
)
IDENTITY = ("dataset", "model", "method")
# TrainConfig mixing settings -> the mixer's constructor parameter.
MIXER_SETTINGS = {
    "alpha": "alpha",
    "decay": "decay",
    "k": "k",
    "image_k": "image_k",
    "max_soft": "max_soft",
    "reformulate": "reformulate",
    "box_size": "size",
    "box_rounding": "box_rounding",
    "mix_mode": "mode",
    "patchup_prob": "patchup_prob",
    "gamma": "gamma",
    "block_size": "block_size",
    "patchup_type": "patchup_type",
    "loss_scale": "loss_scale",
    "mix_p": "p",
    "mix_schedule": "schedule",
}
# The paper's column order, then the other methods.
_METHOD_ORDER = ("none", "fmix", "mixup", "cutmix", "lmix", "cutout", "patchup", "manifold_mixup")
_DISPLAY = {
    "none": "Baseline",
    "fmix": "FMix",
    "mixup": "Mixup",
    "cutmix": "CutMix",
    "lmix": "LMix",
    "cutout": "Cutout",
    "patchup": "PatchUp",
    "manifold_mixup": "Manifold Mixup",
}


def mixer_defaults(method: str) -> dict[str, Any]:
    """A method's mixing defaults by constructor parameter ({} for an unknown name).

    A single method: its mixer's keyword defaults. A choice ``a+b``: the choice's own (``p``,
    ``schedule``) and every setting on which all components that take it agree; not ``mode``,
    since a choice without one is neither ``batch`` nor ``sample`` (``lmix.mixing.create_mixer``).
    """
    if "+" in method:
        return _choice_defaults(method)
    try:
        from lmix.mixing.registry import mixer_class

        cls = mixer_class(method)
    except (ImportError, ValueError):
        return {}
    return _keyword_defaults(cls)


def _keyword_defaults(cls: type) -> dict[str, Any]:
    sig = inspect.signature(cls.__init__)
    return {n: p.default for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _choice_defaults(method: str) -> dict[str, Any]:
    from lmix.mixing import MixChoice

    parts = [mixer_defaults(m.strip()) for m in method.split("+")]
    if not all(parts):
        return {}
    shared = {}
    for key in set().union(*parts) - {"mode", "seed"}:
        values = [p[key] for p in parts if key in p]
        if all(same_value(v, values[0]) for v in values):
            shared[key] = values[0]
    choice = _keyword_defaults(MixChoice)
    return shared | {key: choice[key] for key in ("p", "schedule") if key in choice}


def _accepted(method: str) -> set[str] | None:
    try:
        from lmix.mixing.registry import accepted_params, mixer_class

        return set().union(*(accepted_params(mixer_class(m.strip())) for m in method.split("+"))) | (
            {"p", "schedule"} if "+" in method else set()
        )
    except (ImportError, ValueError):
        return None


def grouping_settings(record: RunRecord) -> dict[str, Any]:
    """Grouping settings: config minus ignored keys and identity; unused/default mixing settings -> None."""
    if not record.config:  # a run without config.yaml: what the summary says
        settings = {"epochs": record.summary.get("epochs")}
    else:  # a setting a config lacks (an older record, a sweep's entry) is at its default, as the trainer reads it
        config = _config_defaults() | record.config
        settings = {k: _hashable(v) for k, v in config.items() if k not in _IGNORED_SETTINGS and k not in IDENTITY}
    accepted = _accepted(record.method)
    defaults = mixer_defaults(record.method)
    for key, param in MIXER_SETTINGS.items():
        if key not in settings:
            continue
        value = settings[key]
        if accepted is not None and param not in accepted:
            settings[key] = None
        elif param in defaults and value is not None and same_value(value, defaults[param]):
            settings[key] = None
    return settings


@functools.cache
def _config_defaults() -> dict[str, Any]:
    from lmix.experiments.train.config import TrainConfig

    return TrainConfig().to_dict()


def same_value(a: Any, b: Any) -> bool:
    """Equal settings; numbers compare by value to a relative 1e-9 (``1`` and ``1.0`` are the same)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def method_key(method: str) -> tuple[int, str]:
    """Sort key of a method: the paper's column order, then the other methods by name."""
    return (_METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER), method)


def method_display(method: str) -> str:
    """A method's name in tables (``lmix+mixup`` -> ``LMix+Mixup``)."""
    return "+".join(_DISPLAY.get(m, m) for m in method.split("+"))


def format_setting(value: Any) -> str:
    """A setting's value in labels and file names (``0.5``, ``75,150``)."""
    if isinstance(value, tuple):
        return ",".join(format_setting(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sort_value(value: Any) -> tuple[int, Any]:
    """Sort key of a setting or seed of any type: None first, then numbers by value, then text."""
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value))
    return (2, str(value))
