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
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lmix.errors import LmixValueError
from lmix.experiments.io import read_yaml
from lmix.experiments.train.mixer_config import METHOD_PARAM_KEYS, resolve_mixer_settings

__all__ = [
    "TrainConfig",
    "load_yaml",
    "config_from_sources",
    "add_config_arguments",
    "RUN_IDENTITY_EXCLUDE",
    "run_identity",
]


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


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
    dataset: str = _f("digits", "data set (lmix.data.list_datasets())")
    data_root: str | None = _f(None, "folder holding the data set (default: ./data/<dataset>)")
    download: bool = _f(False, "download the data set with torchvision if missing")
    train_subset: int | None = _f(None, "train on a stratified subset of this many images")
    svhn_extra: bool = _f(False, "SVHN: add the 'extra' split to the training set")
    in_memory: bool | None = _f(None, "keep the data as a uint8 tensor on the device (default: by data set)")
    augment: bool = _f(True, "random crop + flip as the data set's standard augmentation (SPEC section 3)")
    crop_padding: int | None = _f(None, "zero padding of the random crop (default: the data set's; 0: no crop)")
    flip: bool | None = _f(None, "random horizontal flip (default: the data set's)")
    num_workers: int = _f(4, "DataLoader workers for data that is not kept in memory")
    # model
    model: str = _f("preact_resnet_tiny", "model (lmix.models.list_models())")
    width: int | None = _f(None, "base width of the small models (simple_cnn, preact_resnet_tiny)")
    model_layout: str | None = _f(
        None, "PreAct-ResNets: 'preact' (default) or 'fmix' (the FMix reference: stem BN-ReLU, no final BN-ReLU)"
    )
    # mixing
    method: str = _f("lmix", "mixing method (lmix.list_mixers()), or a+b for a per-batch choice, e.g. lmix+mixup")
    alpha: float | None = _f(None, "Beta(alpha, alpha) concentration of the mixing weight (default: the method's)")
    decay: float | None = _f(None, "LMix/FMix low-pass decay delta (default 3)")
    k: float | None = _f(None, "LMix high-frequency emphasis of the masks (default 1)")
    image_k: float | None = _f(None, "LMix image sharpening strength (default 0: off)")
    box_size: int | None = _f(None, "CutMix fixed box side / Cutout square side (default: CutMix Beta box, Cutout 16)")
    box_rounding: str | None = _f(
        None, "CutMix: 'exact' box area or 'reference' (the reference code's 2*(cut//2) box side)"
    )
    mix_mode: str | None = _f(None, "'sample' (per-sample lam, partner, mask) or 'batch' (one per batch)")
    mix_p: list[float] | None = _f(None, "a+b methods: probability of each component per batch")
    mix_schedule: str | None = _f(None, "a+b methods: 'random' or 'alternate'")
    patchup_prob: float | None = _f(None, "PatchUp: probability of mixing a batch's hidden features (0.7)")
    gamma: float | None = _f(None, "PatchUp: share of blocks to mix (0.5)")
    block_size: int | None = _f(None, "PatchUp: block size (7)")
    patchup_type: str | None = _f(None, "PatchUp: 'hard' or 'soft'")
    loss_scale: str | None = _f(
        None,
        "PatchUp: 'reference' (default: the reference's three loss terms, about 2x a mixed loss) or 'single'",
    )
    method_params: dict[str, dict[str, Any]] = _f(
        {}, "per-method mixing settings that win over the shared ones, e.g. {patchup: {alpha: 2.0}} (YAML)"
    )
    # optimisation
    epochs: int = _f(30, "number of epochs")
    batch_size: int = _f(128, "global batch size (split over DDP processes)")
    lr: float = _f(0.1, "initial learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "SGD weight decay")
    nesterov: bool = _f(False, "Nesterov momentum")
    schedule: str = _f("multistep", "learning-rate schedule: multistep, cosine or onecycle")
    milestones: list[int] | None = _f(
        None, "multistep: epochs at which lr is multiplied by lr_gamma (default: 50%, 75%)"
    )
    lr_gamma: float = _f(0.1, "multistep: lr decay factor")
    warmup_epochs: int = _f(0, "linear lr warm-up epochs")
    label_smoothing: float = _f(0.0, "label smoothing of the (mixed) targets")
    # system
    seed: int = _f(0, "random seed")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    amp: str = _f("auto", "mixed precision: auto (bf16 on CUDA, off on CPU), none, bf16 or fp16")
    channels_last: bool | None = _f(None, "channels_last memory format (default: on with CUDA)")
    compile: bool = _f(
        False, "torch.compile the whole step (mixing + forward + loss; the model alone for PatchUp and DDP)"
    )
    compile_mode: str | None = _f(
        None, "torch.compile mode: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs"
    )
    eval_train: int = _f(1000, "also measure clean accuracy on this many training images each epoch (0: off)")
    eval_every: int = _f(1, "evaluate every N epochs (and always after the last)")
    test_batch_size: int = _f(1024, "batch size of evaluation (split over DDP processes)")
    checkpoint_every: int = _f(1, "write the checkpoint every N epochs (and always after the last)")
    out: str | None = _f(None, "output folder (default: a new folder under ./runs/)")
    tensorboard: bool = _f(False, "write TensorBoard logs to OUT/tb")
    progress: bool = _f(True, "show a tqdm progress bar")

    def validate(self) -> TrainConfig:
        """Check ranges; raise ValueError naming the field, the value and what is allowed."""

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise LmixValueError(msg)

        need(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be an integer >= 1, got {self.epochs!r}")
        need(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            f"batch_size must be an integer >= 1, got {self.batch_size!r}",
        )
        need(self.lr > 0 and self.lr < 100, f"lr must be in (0, 100), got {self.lr!r}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(0 < self.lr_gamma <= 1, f"lr_gamma must be in (0, 1], got {self.lr_gamma!r}")
        need(
            self.schedule in ("multistep", "cosine", "onecycle"),
            f"schedule must be multistep, cosine or onecycle, got {self.schedule!r}",
        )
        need(
            isinstance(self.warmup_epochs, int) and 0 <= self.warmup_epochs < self.epochs,
            f"warmup_epochs must be an integer in [0, epochs={self.epochs}), got {self.warmup_epochs!r}",
        )
        if self.milestones is not None:
            ms = list(self.milestones)
            need(
                all(isinstance(m, int) for m in ms) and ms == sorted(set(ms)) and all(m >= 1 for m in ms),
                f"milestones must be increasing epochs >= 1, got {ms}",
            )
            need(
                all(m <= self.epochs for m in ms),
                f"milestones {ms} lie past the last epoch ({self.epochs}); use epochs in [1, {self.epochs}]",
            )
        need(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        need(self.amp in ("auto", "none", "bf16", "fp16"), f"amp must be auto, none, bf16 or fp16, got {self.amp!r}")
        need(
            self.train_subset is None or self.train_subset >= 1,
            f"train_subset must be an integer >= 1, got {self.train_subset!r}",
        )
        need(self.eval_train >= 0, f"eval_train must be >= 0, got {self.eval_train!r}")
        need(
            isinstance(self.eval_every, int) and self.eval_every >= 1,
            f"eval_every must be an integer >= 1, got {self.eval_every!r}",
        )
        need(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers!r}")
        need(isinstance(self.seed, int) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        need(
            isinstance(self.test_batch_size, int) and self.test_batch_size >= 1,
            f"test_batch_size must be an integer >= 1, got {self.test_batch_size!r}",
        )
        need(
            isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 1,
            f"checkpoint_every must be an integer >= 1, got {self.checkpoint_every!r}",
        )
        need(
            self.crop_padding is None or (isinstance(self.crop_padding, int) and self.crop_padding >= 0),
            f"crop_padding must be an integer >= 0 (0: no crop), got {self.crop_padding!r}",
        )
        modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        need(
            self.compile_mode is None or self.compile_mode in modes,
            f"compile_mode must be one of {', '.join(modes)}, got {self.compile_mode!r}",
        )
        need(
            self.box_rounding is None or self.box_rounding in ("exact", "reference"),
            f"box_rounding must be 'exact' or 'reference', got {self.box_rounding!r}",
        )
        need(
            self.model_layout is None or self.model_layout in ("preact", "fmix"),
            f"model_layout must be 'preact' or 'fmix', got {self.model_layout!r}",
        )
        need(
            self.model_layout is None or self.model.startswith("preact_resnet"),
            f"model_layout applies to the PreAct-ResNets (preact_resnet*), not {self.model!r}",
        )
        _check_method_params(self.method_params, source="method_params")
        dev = self.device
        need(
            dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()),
            f"device must be auto, cpu, cuda or cuda:N, got {dev!r}",
        )
        return self

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return list(self.milestones)
        return sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)})

    def resolve(self) -> TrainConfig:
        """Fold ``method_params[method]`` into the shared fields and fill ``crop_padding``/``flip``
        from the data set (in place; returns self). Idempotent."""
        entry = self.method_params.get(self.method) if self.method_params else None
        for key, value in (entry or {}).items():
            setattr(self, key, value)
        self.method_params = {}
        _resolve_augmentation(self)
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


def _coerce_scalar(name: str, tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise LmixValueError(f"config key {name!r} must be of type {tp.__name__}, got {value!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file: a mapping of TrainConfig fields. Unknown keys are errors."""
    path = Path(path)
    data = read_yaml(path, what="config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LmixValueError(f"config file {str(path)!r} must hold a mapping of settings, got {type(data).__name__}")
    return check_keys(data, source=str(path))


def check_keys(data: dict[str, Any], *, source: str) -> dict[str, Any]:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LmixValueError(f"{source}: unknown config key(s) {unknown}; known keys: {', '.join(sorted(known))}")
    return {k: _coerce(k, v) for k, v in data.items()}


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
        help_text = f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")
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
