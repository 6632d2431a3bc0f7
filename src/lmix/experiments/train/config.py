"""Training configuration: a dataclass, YAML files and command-line overrides.

Precedence: dataclass defaults < ``--config FILE.yaml`` < command-line flags. Every field is a
flag (``batch_size`` -> ``--batch-size``); the resolved config is saved as ``config.yaml`` next
to the run's results.

Per-method settings: ``method_params`` maps a method name to mixing settings that apply only
when that method runs, e.g. ``method_params: {patchup: {alpha: 2.0, patchup_type: soft}}``, so
one config serves every column of a table. Within one source (a YAML file, the flags) the
entry for the run's method wins over the shared settings; a later source's shared setting wins
over an earlier source's entry (``--config paper.yaml --alpha 0.5`` runs PatchUp with 0.5).
The entry is folded into the top-level fields and ``method_params`` is emptied, and
``crop_padding`` and ``flip`` are resolved from the data set's defaults when unset. The trainer
then sets every mixing setting to the value the run's mixer is built with, defaults included
(``lmix.experiments.train.mixer_config``): the saved ``config.yaml`` shows what the run used and
is itself a valid ``--config``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lmix._checks import is_integer, is_real
from lmix.errors import LmixValueError
from lmix.experiments.io import printable, read_yaml
from lmix.experiments.train.mixer_config import METHOD_PARAM_KEYS, resolve_mixer_settings

__all__ = [
    "TrainConfig",
    "load_yaml",
    "config_from_sources",
    "add_config_arguments",
    "RUN_IDENTITY_EXCLUDE",
    "run_identity",
    "identity_difference",
    "SEED_LIMIT",
    "SEED_BOUNDS",
]

# Seeds are below 2**63: torch seeds a generator with a 64-bit integer, and a combination such as
# lmix+mixup seeds its components with seed + 1, seed + 2 (``lmix.mixing.create_mixer``).
SEED_LIMIT = 2**63
SEED_BOUNDS = "[0, 2**63)"


def _field(default: Any, help: str, *, bounds: str | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A TrainConfig field: its default, its ``--help`` text and what :meth:`TrainConfig.validate` allows.

    Args:
        bounds: the numbers allowed, as messages show them: ``">= 1"`` or an interval such as
            ``"(0, 1]"``; the field's type says whether they must be integers.
        choices: the strings allowed.
    """
    metadata = {"help": help, "bounds": bounds, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that defines a training run: one field per ``lmix train`` flag.

    The fields come in groups (data, model, mixing, optimisation, run); ``lmix train --help``
    lists each with its help text and default. ``None`` means "the data set's or the method's
    default", filled in by :meth:`resolve`. Build one directly, or from YAML files and flags
    with :func:`config_from_sources` (later layers win); :meth:`validate` checks every value
    and raises ``ValueError`` with one line naming the field and what is allowed; ``to_dict``
    and ``to_yaml`` give what a run folder's ``config.yaml`` holds.

    Example:
        >>> config = TrainConfig(dataset="digits", model="simple_cnn", method="lmix", epochs=2, out="runs/demo")
        >>> config.resolve().validate().method
        'lmix'
    """

    # data
    dataset: str = _field("digits", "data set (lmix.data.list_datasets())")
    data_root: str | None = _field(
        None, "folder holding the data set, or its parent (default: $LMIX_DATA_ROOT, else ./data)"
    )
    download: bool = _field(False, "download the data set with torchvision if missing")
    train_subset: int | None = _field(
        None, "train on a stratified subset of this many images (default: all)", bounds=">= 1"
    )
    svhn_extra: bool = _field(False, "SVHN: add the 'extra' split to the training set")
    in_memory: bool | None = _field(
        None,
        "keep the data as a uint8 tensor on the device (default: by data set; an ImageFolder when it fits in 2 GiB)",
    )
    augment: bool = _field(True, "random crop + flip, as the data set's standard augmentation")
    crop_padding: int | None = _field(
        None,
        "zero padding of the random crop, less than the image side (default: the data set's; 0: no crop)",
        bounds=">= 0",
    )
    flip: bool | None = _field(None, "random horizontal flip (default: the data set's)")
    num_workers: int = _field(4, "DataLoader workers for data that is not kept in memory", bounds=">= 0")
    # model
    model: str = _field("preact_resnet_tiny", "model (lmix.models.list_models())")
    width: int | None = _field(
        None, "base width of the small models (simple_cnn, preact_resnet_tiny) (default: the model's)"
    )
    model_layout: str | None = _field(
        None,
        "PreAct-ResNets: 'preact' (default) or 'fmix' (the FMix reference: stem BN-ReLU, no final BN-ReLU)",
        choices=("preact", "fmix"),
    )
    # mixing
    method: str = _field("lmix", "mixing method (lmix.list_mixers()), or a+b for a per-batch choice, e.g. lmix+mixup")
    alpha: float | None = _field(None, "Beta(alpha, alpha) concentration of the mixing weight (default: the method's)")
    decay: float | None = _field(None, "LMix/FMix low-pass decay delta (default: 3)")
    k: float | None = _field(None, "LMix high-frequency emphasis of the masks (default: 1)")
    image_k: float | None = _field(None, "LMix image sharpening strength (default: 0, off)")
    max_soft: float | None = _field(
        None, "LMix/FMix soft mask edges: share of pixels ramped on each side (default: 0, binary)", bounds="[0, 0.5]"
    )
    reformulate: bool | None = _field(
        None, "LMix/FMix: area from Beta(alpha + 1, alpha), own label as target, as FMix's reference (default: off)"
    )
    box_size: int | None = _field(
        None,
        "CutMix fixed box side / Cutout square side, at most the image side (default: CutMix a Beta-sampled box, Cutout 16)",
    )
    box_rounding: str | None = _field(
        None,
        "CutMix: 'exact' box area or 'reference' (the reference code's 2*(cut//2) box side) (default: 'exact')",
        choices=("exact", "reference"),
    )
    mix_mode: str | None = _field(
        None,
        "'sample' (per-sample lam, partner, mask) or 'batch' (one per batch) (default: 'sample'; 'batch' for PatchUp and the choice of a+b)",
    )
    mix_p: list[float] | None = _field(None, "a+b methods: probability of each component per batch (default: equal)")
    mix_schedule: str | None = _field(None, "a+b methods: 'random' or 'alternate' (default: 'random')")
    patchup_prob: float | None = _field(None, "PatchUp: probability of mixing a batch's hidden features (default: 0.7)")
    gamma: float | None = _field(None, "PatchUp: share of blocks to mix (default: 0.5)")
    block_size: int | None = _field(None, "PatchUp: block size (default: 7)")
    patchup_type: str | None = _field(None, "PatchUp: 'hard' or 'soft' (default: 'soft')")
    loss_scale: str | None = _field(
        None,
        "PatchUp: 'reference' (the reference's three loss terms, about 2x a mixed loss) or 'single' (default: 'reference')",
    )
    method_params: dict[str, dict[str, Any]] = _field(
        {}, "per-method mixing settings that win over the shared ones, e.g. {patchup: {alpha: 2.0}} (YAML)"
    )
    # optimisation
    epochs: int = _field(30, "number of epochs", bounds=">= 1")
    batch_size: int = _field(128, "global batch size (split over DDP processes)", bounds=">= 1")
    lr: float = _field(0.1, "initial learning rate", bounds="(0, 100)")
    momentum: float = _field(0.9, "SGD momentum", bounds="[0, 1)")
    weight_decay: float = _field(1e-4, "SGD weight decay", bounds=">= 0")
    nesterov: bool = _field(False, "Nesterov momentum")
    schedule: str = _field(
        "multistep",
        "learning-rate schedule: multistep, cosine or onecycle",
        choices=("multistep", "cosine", "onecycle"),
    )
    milestones: list[int] | None = _field(
        None, "multistep: epochs at which lr is multiplied by lr_gamma (default: 50%, 75%)"
    )
    lr_gamma: float = _field(0.1, "multistep: lr decay factor", bounds="(0, 1]")
    warmup_epochs: int = _field(0, "linear lr warm-up epochs (fewer than epochs)", bounds=">= 0")
    label_smoothing: float = _field(0.0, "label smoothing of the (mixed) targets", bounds="[0, 1)")
    # system
    seed: int = _field(0, "random seed", bounds=SEED_BOUNDS)
    device: str = _field("auto", "auto, cpu, cuda or cuda:N")
    amp: str = _field(
        "auto",
        "mixed precision: auto (bf16 on CUDA, off on CPU), none, bf16 or fp16",
        choices=("auto", "none", "bf16", "fp16"),
    )
    channels_last: bool | None = _field(None, "channels_last memory format (default: on with CUDA)")
    compile: bool = _field(
        False, "torch.compile the whole step (mixing + forward + loss; the model alone for PatchUp and DDP)"
    )
    compile_mode: str | None = _field(
        None,
        "torch.compile mode: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs (default: torch's default)",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    )
    eval_train: int = _field(
        1000, "also measure clean accuracy on this many training images each epoch (0: off)", bounds=">= 0"
    )
    eval_every: int = _field(1, "evaluate every N epochs (and always after the last)", bounds=">= 1")
    test_batch_size: int = _field(1024, "batch size of evaluation (split over DDP processes)", bounds=">= 1")
    checkpoint_every: int = _field(1, "write the checkpoint every N epochs (and always after the last)", bounds=">= 1")
    out: str | None = _field(None, "output folder (default: a new folder under ./runs/)")
    tensorboard: bool = _field(False, "write TensorBoard logs to OUT/tb")
    progress: bool = _field(True, "show a tqdm progress bar")

    def validate(self) -> TrainConfig:
        """Check every value; raise ValueError naming the field, the value and what is allowed."""
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        if self.warmup_epochs >= self.epochs:
            raise LmixValueError(
                f"warmup_epochs must be an integer in [0, epochs={self.epochs}), got {self.warmup_epochs!r}"
            )
        if self.milestones is not None:
            _check_milestones(list(self.milestones), self.epochs)
        if self.model_layout is not None and not self.model.startswith("preact_resnet"):
            raise LmixValueError(f"model_layout applies to the PreAct-ResNets (preact_resnet*), not {self.model!r}")
        _check_method_params(self.method_params, source="method_params")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (isinstance(dev, str) and re.fullmatch(r"cuda:\d+", dev))):
            raise LmixValueError(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")
        return self

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return list(self.milestones)
        return sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)})

    def resolve(self) -> TrainConfig:
        """Fold ``method_params[method]`` into the shared fields, fill ``crop_padding``/``flip``
        from the data set and turn a ``-0.0`` into ``0.0`` (in place; returns self). Idempotent."""
        entry = self.method_params.get(self.method) if self.method_params else None
        for key, value in (entry or {}).items():
            setattr(self, key, value)
        self.method_params = {}
        _resolve_augmentation(self)
        for f in fields(self):
            setattr(self, f.name, _unsigned_zeros(getattr(self, f.name)))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Fields that do not change what a run computes: a re-run that differs only in these resumes.
# (The evaluation batch size changes the test loss only in its last float digits.)
RUN_IDENTITY_EXCLUDE = frozenset(
    {"out", "progress", "tensorboard", "num_workers", "data_root", "download", "test_batch_size", "checkpoint_every"}
)

_FIELD_TYPES = typing.get_type_hints(TrainConfig)
_FIELDS = {f.name: f for f in fields(TrainConfig)}


def _check_field(f: dataclasses.Field, value: Any) -> None:
    """The checks of one field's metadata (``bounds``, ``choices``); None passes where the field allows it."""
    tp, optional = _base_type(_FIELD_TYPES[f.name])
    if value is None and optional:
        return
    bounds, choices = f.metadata["bounds"], f.metadata["choices"]
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise LmixValueError(f"{f.name} must be {allowed}, got {value!r}")
    if bounds is None:
        return
    ok = is_integer(value) if tp is int else is_real(value)
    if not (ok and _in_bounds(value, bounds)):
        raise LmixValueError(f"{f.name} must be {_allowed(tp, bounds)}, got {value!r}")


def _allowed(tp: Any, bounds: str) -> str:
    """What a field with these ``bounds`` allows, as messages say it: ``"a number in [0, 0.5]"``."""
    kind = "an integer" if tp is int else "a number"
    return f"{kind} {bounds}" if bounds.startswith(">=") else f"{kind} in {bounds}"


def _in_bounds(value: Any, bounds: str) -> bool:
    """Whether ``value`` lies within ``bounds``: ``">= x"`` or an interval such as ``"(0, 1]"`` (an
    end may be a power, ``2**63``). Integers are compared exactly, not as floats."""
    if bounds.startswith(">="):
        return value >= _bound(bounds[2:])
    low, high = (_bound(end) for end in bounds[1:-1].split(","))
    above = value > low if bounds[0] == "(" else value >= low
    below = value < high if bounds[-1] == ")" else value <= high
    return bool(above and below)


def _bound(text: str) -> int | float:
    """An end of a field's bounds: ``"0"``, ``"0.5"`` or ``"2**63"``."""
    base, _, power = text.strip().partition("**")
    if power:
        return int(base) ** int(power)
    try:
        return int(base)
    except ValueError:
        return float(base)


def _unsigned_zeros(value: Any) -> Any:
    """``value`` with ``-0.0`` as ``0.0`` (also inside a list): the same setting, one spelling, so that
    ``max_soft: -0.0`` names and identifies the same run as ``max_soft: 0``."""
    if isinstance(value, float) and value == 0.0:
        return 0.0
    if isinstance(value, list):
        return [_unsigned_zeros(v) for v in value]
    return value


def _check_milestones(milestones: list[Any], epochs: int) -> None:
    if not (all(is_integer(m) and m >= 1 for m in milestones) and milestones == sorted(set(milestones))):
        raise LmixValueError(f"milestones must be increasing epochs >= 1, got {milestones}")
    if milestones and milestones[-1] > epochs:
        raise LmixValueError(f"milestones {milestones} lie past the last epoch ({epochs}); use epochs in [1, {epochs}]")


def _resolve_augmentation(config: TrainConfig) -> None:
    if config.crop_padding is not None and config.flip is not None:
        return
    from lmix.data.info import dataset_info

    info = dataset_info(config.dataset)
    if config.crop_padding is None:
        config.crop_padding = info.crop_padding
    if config.flip is None:
        config.flip = info.flip


def _check_method_names(name: Any, source: str) -> None:
    from lmix.mixing.registry import list_mixers

    known = list_mixers()
    if not isinstance(name, str) or not all(part.strip() in known for part in name.split("+")):
        raise LmixValueError(
            f"{source}: {name!r} is not a method; use one of {', '.join(known)} or a combination such as lmix+mixup"
        )


def _check_method_params(value: Any, *, source: str) -> dict[str, dict[str, Any]]:
    """``{method: {mixing setting: value}}`` with known methods, known settings and typed values."""
    if not isinstance(value, dict):
        raise LmixValueError(f"{source} must be a mapping of method -> settings, e.g. {{patchup: {{alpha: 2.0}}}}")
    out: dict[str, dict[str, Any]] = {}
    for method, entry in value.items():
        _check_method_names(method, source)
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise LmixValueError(f"{source}[{method!r}] must be a mapping of settings, got {entry!r}")
        bad = sorted(set(entry) - set(METHOD_PARAM_KEYS))
        if bad:
            raise LmixValueError(
                f"{source}[{method!r}]: {bad} cannot be set per method; allowed: {', '.join(METHOD_PARAM_KEYS)}"
            )
        out[method] = {k: _coerce(k, v) for k, v in entry.items()}
    return out


def run_identity(config_dict: dict[str, Any]) -> dict[str, Any]:
    """The settings that define what a run computes, for comparing a saved run with a new one.

    Keys missing from an older run's saved config take today's defaults, unset
    ``crop_padding``/``flip`` the data set's, and the mixing settings the values the mixer is
    built with (``None`` where the method does not take them): a run saved before a setting
    existed, or before runs saved their mixer's defaults (``k: null`` for ``k: 1.0``), still
    matches a re-run of its command.
    """
    defaults = TrainConfig().to_dict()
    merged = {**defaults, **{k: v for k, v in config_dict.items() if k in defaults}}
    extra = {k: v for k, v in config_dict.items() if k not in defaults}
    method_params = merged.get("method_params") or {}
    entry = method_params.get(merged.get("method")) if isinstance(method_params, dict) else None
    if isinstance(entry, dict):
        merged.update(entry)
    config = TrainConfig(**{**merged, "method_params": {}})
    # A saved config that names an unknown data set or method is compared as it is.
    with contextlib.suppress(ValueError):
        _resolve_augmentation(config)
    with contextlib.suppress(ValueError, TypeError):
        resolve_mixer_settings(config)
    return {k: v for k, v in {**config.to_dict(), **extra}.items() if k not in RUN_IDENTITY_EXCLUDE}


def identity_difference(theirs: dict[str, Any], ours: dict[str, Any], *, limit: int = 3) -> str | None:
    """The settings in which two saved configs' :func:`run_identity` differ, as one line
    (``"alpha: 1.0 there, 0.5 here, ..."``, at most ``limit`` of them), or None where they define the same run.

    Keys come from files a user or a crash may have damaged: they are shown escaped where they are
    not printable, so that the line stays one line.
    """
    theirs, ours = run_identity(theirs), run_identity(ours)
    diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if not diff:
        return None
    return ", ".join(f"{printable(str(k))}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in diff[:limit])


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _coerce(name: str, value: Any) -> Any:
    """Check a YAML value against the field's type; ints are accepted for floats."""
    tp, optional = _base_type(_FIELD_TYPES[name])
    if value is None and typing.get_origin(tp) is dict:
        return {}
    if value is None:
        if optional:
            return None
        raise LmixValueError(f"config key {name!r} must not be null")
    origin = typing.get_origin(tp)
    if origin is dict:
        return _check_method_params(value, source=f"config key {name!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            value = [value]
        return [_coerce_scalar(name, inner, v) for v in value]
    return _coerce_scalar(name, tp, value)


#: A number in exponent notation without a decimal point (``1e-3``, ``5E+2``): a float in YAML 1.2
#: and in Python, but text to PyYAML, which follows YAML 1.1 (there a float needs a dot: ``1.0e-3``).
_EXPONENT_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")


def _coerce_scalar(name: str, tp: Any, value: Any) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and is_integer(value):
        return int(value)
    if tp is float and is_real(value):
        return _unsigned_zeros(float(value))
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value) and math.isfinite(float(value)):
        return _unsigned_zeros(float(value))  # `lr: 1e-3` in a YAML file, a spec's grid or --set
    if tp is str and isinstance(value, str):
        return value
    if tp in (int, float) and _non_finite_text(value):
        # YAML reads nan and inf as text (its own spellings are .nan and .inf): say what is allowed.
        bounds = _FIELDS[name].metadata["bounds"]
        allowed = _allowed(tp, bounds).replace("a number", "a finite number") if bounds else "a finite number"
        raise LmixValueError(f"config key {name!r} must be {allowed}, got {value!r}")
    raise LmixValueError(f"config key {name!r} must be of type {tp.__name__}, got {value!r}")


def _non_finite_text(value: Any) -> bool:
    """Whether ``value`` is text that spells a number that is not finite (``"nan"``, ``"-inf"``)."""
    try:
        return isinstance(value, str) and not math.isfinite(float(value))
    except ValueError:
        return False


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file: a mapping of TrainConfig fields. Unknown keys are errors."""
    path = Path(path)
    data = read_yaml(path, what="config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LmixValueError(f"config file {str(path)!r} must hold a mapping of settings, got {type(data).__name__}")
    return check_keys(data, source=str(path), named=True)


def check_keys(data: dict[str, Any], *, source: str, named: bool = False) -> dict[str, Any]:
    """``data`` with every value checked against its field's type (ints become floats where the field
    is a float, ``-0.0`` becomes ``0.0``); LmixValueError for an unknown key or a value of the wrong type.

    Args:
        source: where ``data`` comes from, for messages (``"sweep spec s.yaml: grid"``, a file's path).
        named: start a wrong value's message with ``source`` too, not only an unknown key's (a caller
            that names the source itself, such as the run records' reader, leaves it False).
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LmixValueError(f"{source}: unknown config key(s) {unknown}; known keys: {', '.join(sorted(known))}")
    try:
        return {k: _coerce(k, v) for k, v in data.items()}
    except LmixValueError as err:
        if not named:
            raise
        raise LmixValueError(f"{source}: {err}") from None


def config_from_sources(*layers: dict[str, Any]) -> TrainConfig:
    """Defaults, then each mapping in turn (later wins); resolved (see the module docstring) and validated.

    Within a layer, its ``method_params`` entry for the run's method wins over its shared
    settings; a later layer's settings win over an earlier layer's entry.
    """
    checked = [check_keys(layer, source="config") for layer in layers]
    method = TrainConfig.method
    for layer in checked:
        method = layer.get("method", method)
    merged: dict[str, Any] = {}
    for layer in checked:
        merged.update({k: v for k, v in layer.items() if k != "method_params"})
        entry = (layer.get("method_params") or {}).get(method)
        if entry:
            merged.update(entry)
    config = TrainConfig(**merged).validate()
    return config.resolve()


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _list_of(inner: type) -> Any:
    def parse(text: str) -> list:
        try:
            return [inner(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {inner.__name__}, got {text!r}"
            ) from None

    parse.__name__ = f"list of {inner.__name__}"
    return parse


def _yaml_mapping(text: str) -> dict:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(
            f"expected a YAML mapping such as '{{patchup: {{alpha: 2}}}}', got {text!r}"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{patchup: {{alpha: 2}}}}', got {text!r}")
    return value


_yaml_mapping.__name__ = "YAML mapping"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags are absent from the namespace (SUPPRESS)."""
    group = parser.add_argument_group("training settings (override --config)")
    for f in fields(TrainConfig):
        tp, _ = _base_type(_FIELD_TYPES[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        # argparse %-formats help strings: a literal % (e.g. "50%") must be doubled.
        help_text = f.metadata.get("help", "")
        if "(default" not in help_text:  # a help that explains its default states it itself: one default per flag
            help_text += f" (default: {default})"
        help_text = help_text.replace("%", "%%")
        if tp is bool:
            group.add_argument(
                flag, type=_parse_bool, nargs="?", const=True, default=argparse.SUPPRESS, metavar="BOOL", help=help_text
            )
            group.add_argument(
                "--no-" + f.name.replace("_", "-"),
                dest=f.name,
                action="store_false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        elif typing.get_origin(tp) is dict:
            group.add_argument(flag, type=_yaml_mapping, default=argparse.SUPPRESS, metavar="YAML", help=help_text)
        elif typing.get_origin(tp) is list:
            (inner,) = typing.get_args(tp)
            group.add_argument(flag, type=_list_of(inner), default=argparse.SUPPRESS, metavar="A,B,...", help=help_text)
        else:
            group.add_argument(flag, type=tp, default=argparse.SUPPRESS, help=help_text)
