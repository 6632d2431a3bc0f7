"""Training configuration: a dataclass, YAML files and command-line overrides.

Precedence: dataclass defaults < ``--config FILE.yaml`` < command-line flags. Every field is a
flag (``batch_size`` -> ``--batch-size``); the resolved config is saved as ``config.yaml`` next
to the run's results.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "load_yaml", "config_from_sources", "add_config_arguments", "RUN_IDENTITY_EXCLUDE"]


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that defines a training run (see ``lmix train --help``)."""

    # data
    dataset: str = _f("digits", "data set (lmix.data.list_datasets())")
    data_root: str | None = _f(None, "folder holding the data set (default: ./data/<dataset>)")
    download: bool = _f(False, "download the data set with torchvision if missing")
    train_subset: int | None = _f(None, "train on a stratified subset of this many images")
    svhn_extra: bool = _f(False, "SVHN: add the 'extra' split to the training set")
    in_memory: bool | None = _f(None, "keep the data as a uint8 tensor on the device (default: by data set)")
    augment: bool = _f(True, "random crop + flip as the data set's standard augmentation (SPEC section 3)")
    num_workers: int = _f(4, "DataLoader workers for data that is not kept in memory")
    # model
    model: str = _f("preact_resnet_tiny", "model (lmix.models.list_models())")
    width: int | None = _f(None, "base width of the small models (simple_cnn, preact_resnet_tiny)")
    # mixing
    method: str = _f("lmix", "mixing method (lmix.list_mixers()), or a+b for a per-batch choice, e.g. lmix+mixup")
    alpha: float | None = _f(None, "Beta(alpha, alpha) concentration of the mixing weight (default: the method's)")
    decay: float | None = _f(None, "LMix/FMix low-pass decay delta (default 3)")
    k: float | None = _f(None, "LMix high-frequency emphasis of the masks (default 1)")
    image_k: float | None = _f(None, "LMix image sharpening strength (default 0: off)")
    box_size: int | None = _f(None, "CutMix fixed box side / Cutout square side (default: CutMix Beta box, Cutout 16)")
    mix_mode: str | None = _f(None, "'sample' (per-sample lam, partner, mask) or 'batch' (one per batch)")
    mix_p: list[float] | None = _f(None, "a+b methods: probability of each component per batch")
    mix_schedule: str | None = _f(None, "a+b methods: 'random' or 'alternate'")
    patchup_prob: float | None = _f(None, "PatchUp: probability of mixing a batch's hidden features (0.7)")
    gamma: float | None = _f(None, "PatchUp: share of blocks to mix (0.5)")
    block_size: int | None = _f(None, "PatchUp: block size (7)")
    patchup_type: str | None = _f(None, "PatchUp: 'hard' or 'soft'")
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
    compile: bool = _f(False, "torch.compile the model")
    eval_train: int = _f(1000, "also measure clean accuracy on this many training images each epoch (0: off)")
    eval_every: int = _f(1, "evaluate every N epochs (and always after the last)")
    out: str | None = _f(None, "output folder (default: a new folder under ./runs/)")
    tensorboard: bool = _f(False, "write TensorBoard logs to OUT/tb")
    progress: bool = _f(True, "show a tqdm progress bar")

    def validate(self) -> TrainConfig:
        """Check ranges; raise ValueError naming the field, the value and what is allowed."""

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Fields that do not change what a run computes: a re-run that differs only in these resumes.
RUN_IDENTITY_EXCLUDE = frozenset({"out", "progress", "tensorboard", "num_workers", "data_root", "download"})

_FIELD_TYPES = typing.get_type_hints(TrainConfig)


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
    if value is None:
        if optional:
            return None
        raise ValueError(f"config key {name!r} must not be null")
    origin = typing.get_origin(tp)
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
    raise ValueError(f"config key {name!r} must be of type {tp.__name__}, got {value!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file: a mapping of TrainConfig fields. Unknown keys are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of settings, got {type(data).__name__}")
    return check_keys(data, source=str(path))


def check_keys(data: dict[str, Any], *, source: str) -> dict[str, Any]:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown config key(s) {unknown}; known keys: {', '.join(sorted(known))}")
    return {k: _coerce(k, v) for k, v in data.items()}


def config_from_sources(*layers: dict[str, Any]) -> TrainConfig:
    """Defaults, then each mapping in turn (later wins); validated."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(check_keys(layer, source="config"))
    return TrainConfig(**merged).validate()


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
        elif typing.get_origin(tp) is list:
            (inner,) = typing.get_args(tp)
            group.add_argument(flag, type=_list_of(inner), default=argparse.SUPPRESS, metavar="A,B,...", help=help_text)
        else:
            group.add_argument(flag, type=tp, default=argparse.SUPPRESS, help=help_text)
