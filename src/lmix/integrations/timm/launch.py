"""The launcher: timm's own ``train.py``, unmodified, with lmix's mixing.

::

    python -m lmix.integrations.timm --method lmix [--alpha A --k K ...] [--seed S] \\
        [--mix-on device|loader] -- train.py <timm args>

runs ``train.py`` (as ``__main__``, with ``sys.argv`` set) after replacing timm's ``Mixup`` and
``FastCollateMixup`` (in ``timm.data`` and ``timm.data.mixup``) with lmix's, bound to the given
method. It appends ``--mixup 1.0`` to turn mixing on when the arguments (and a ``-c``/``--config``
file) set none of ``--mixup``, ``--cutmix``, and ``--mixup-mode elem`` (per-sample mixing) when
they set no mixup mode.

Where the mixing runs (``--mix-on``; the line the launcher prints names it):

* ``device`` (the default when CUDA is available and the script's ``--device`` is not the CPU):
  timm's DataLoader workers keep timm's plain ``fast_collate`` (uint8 in, no mixing), and lmix
  mixes the normalised batch on the training device after timm's prefetcher
  (``timm.data.create_loader`` is wrapped for the training loader only, see
  ``DeviceMixLoader``); timm's targets, smoothing, ``--mixup-off-epoch`` and ``mixup_enabled``
  behave as before.
* ``loader`` (the default otherwise): ``FastCollateMixup`` mixes the uint8 batch in the workers,
  as timm's own class does.

With ``--no-prefetcher`` train.py mixes with ``Mixup`` on the device after the loader either way.
"""

from __future__ import annotations

import inspect
import os
import runpy
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import timm.data
import timm.data.loader
import torch
from timm.data import mixup as timm_mixup

from lmix.errors import LmixError
from lmix.integrations.timm.mixup import MIX_ON, DeviceMixLoader, FastCollateMixup, Mixup, input_methods, timm_mixer

__all__ = ["install", "main", "parse_launcher_args", "LauncherError", "default_mix_on"]


@dataclass
class _Installed:
    """What :func:`install` bound, and how many mixers the script has built since."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    mix_on: str = "loader"
    built: int = 0


_installed = _Installed()
_timm_create_loader = timm.data.loader.create_loader


def _where(mixer: Any) -> str:
    if isinstance(mixer, FastCollateMixup):
        if mixer.mix_on == "device":
            return "mixing on the device after timm's prefetcher"
        return "mixing in the DataLoader workers"
    return "mixing on the device after the loader"


class _Launched:
    """The launcher's method and parameters as defaults (what train.py gets), and a note on stderr."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(self, FastCollateMixup):
            kwargs = {"mix_on": _installed.mix_on, **kwargs}
        super().__init__(*args, **{**_installed.kwargs, **kwargs})
        _installed.built += 1
        print(
            f"lmix: timm.data.{self._timm_base.__name__} -> {self.mixer!r} (label_smoothing={self.label_smoothing}, "
            f"num_classes={self.num_classes}, timm mode={self.mode!r}), {_where(self)}",
            file=sys.stderr,
            flush=True,
        )


class _LaunchedMixup(_Launched, Mixup):
    """Mixup with the launcher's method and parameters."""


class _LaunchedFastCollateMixup(_Launched, FastCollateMixup):
    """FastCollateMixup with the launcher's method, parameters and place of mixing."""


def _create_loader(*args: Any, **kwargs: Any) -> Any:
    """timm's ``create_loader``; a loader for a device-mixing collate comes back wrapped to mix."""
    loader = _timm_create_loader(*args, **kwargs)
    bound = inspect.signature(_timm_create_loader).bind_partial(*args, **kwargs)
    collate = bound.arguments.get("collate_fn")
    if isinstance(collate, FastCollateMixup) and collate.mix_on == "device":
        return DeviceMixLoader(loader, collate)
    return loader


def install(method: str = "lmix", *, seed: int | None = None, mix_on: str = "loader", **params: Any) -> None:
    """Replace timm's ``Mixup`` and ``FastCollateMixup`` (in ``timm.data`` and ``timm.data.mixup``)
    with lmix's, bound to ``method`` and its parameters, and ``timm.data.create_loader`` with one that
    wraps a device-mixing training loader. Checks the settings first (``LmixValueError``)."""
    if mix_on not in MIX_ON:
        raise LauncherError(f"--mix-on must be one of {', '.join(MIX_ON)}, got {mix_on!r}")
    timm_mixer(method, seed=0 if seed is None else seed, **params)  # fail now, not inside the script
    _installed.kwargs = {"method": method, "seed": seed, **params}
    _installed.mix_on = mix_on
    for module in (timm.data, timm_mixup):
        module.Mixup = _LaunchedMixup
        module.FastCollateMixup = _LaunchedFastCollateMixup
    for module in (timm.data, timm.data.loader):
        module.create_loader = _create_loader


class LauncherError(LmixError):
    """A launcher usage error: one line on stderr, exit code 2."""


USAGE = (
    "usage: python -m lmix.integrations.timm [--method NAME] [--seed N] [--mix-on device|loader] "
    "[--PARAM VALUE ...] -- SCRIPT.py [ARGS ...]"
)

HELP = f"""{USAGE}

Run a timm training script (timm's train.py or one following it) unmodified, with lmix's mixing in
place of timm's Mixup/CutMix (lmix.integrations.timm.Mixup / FastCollateMixup).

options:
  --method NAME     lmix method: {{methods}} (default lmix)
  --seed N          seed of the mixer (default: torch.initial_seed(), i.e. the script's --seed)
  --mix-on WHERE    device: the workers collate plainly and lmix mixes the normalised batch on the
                    training device after timm's prefetcher; loader: mix the uint8 batch in the
                    DataLoader workers. Default: device when CUDA is available and the script's
                    --device is not cpu, else loader.
  --PARAM VALUE     a parameter of the method, e.g. --alpha 1.0 --k 1.0 --decay 3.0 --image-k 0
                    (`lmix methods` lists them); VALUE: a number, a word, or a,b for a pair
  -h, --help        show this help

timm's own flags keep their meaning: --mixup/--cutmix (alphas; both > 0: per-sample or per-batch
switch between --method and Mixup with --mixup-switch-prob), --mixup-prob, --mixup-mode,
--mixup-off-epoch, --smoothing. Without --mixup/--cutmix, --mixup 1.0 is appended to turn mixing on;
without --mixup-mode, --mixup-mode elem (one lam and mask per sample).
"""


# Settings that come from timm's arguments, not from the launcher.
_TIMM_KEYS = {
    "mode", "label_smoothing", "smoothing", "num_classes", "prob", "switch_prob", "mixup_alpha", "cutmix_alpha",
    "mixup", "cutmix", "cutmix_minmax", "mixup_prob", "mixup_switch_prob", "mixup_mode", "mixup_off_epoch",
    "correct_lam", "multi_label",
}  # fmt: skip


@dataclass
class LaunchArgs:
    """The launcher's command line, parsed."""

    method: str = "lmix"
    seed: int | None = None
    mix_on: str | None = None  # None: decided from the machine and the script's --device
    params: dict[str, Any] = field(default_factory=dict)
    script: str = ""
    script_args: list[str] = field(default_factory=list)


def _parse_value(text: str) -> Any:
    if "," in text:
        return tuple(_parse_value(part) for part in text.split(","))
    if text.lower() == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _parse_seed(value: str) -> int:
    try:
        seed = int(value)
    except ValueError:
        raise LauncherError(f"--seed must be a non-negative integer, got {value!r}") from None
    if seed < 0:
        raise LauncherError(f"--seed must be a non-negative integer, got {value!r}")
    return seed


def _pairs(own: Sequence[str]) -> list[tuple[str, str, str]]:
    """(flag as given, key, value) of every ``--NAME VALUE`` / ``--NAME=VALUE`` before ``--``."""
    out, i = [], 0
    while i < len(own):
        arg = own[i]
        if not arg.startswith("--") or arg == "--":
            raise LauncherError(f"unexpected argument {arg!r} before '--' (expected --NAME VALUE pairs)")
        flag, _, inline = arg.partition("=")
        if inline:
            value, i = inline, i + 1
        elif i + 1 < len(own):
            value, i = own[i + 1], i + 2
        else:
            raise LauncherError(f"{flag} needs a value")
        out.append((flag, flag[2:].replace("-", "_"), value))
    return out


def parse_launcher_args(argv: Sequence[str]) -> LaunchArgs:
    """The launcher's command line: its own ``--NAME VALUE`` pairs, ``--``, the script and its arguments."""
    argv = list(argv)
    if "--" not in argv:
        raise LauncherError(f"missing '--' before the script; {USAGE}")
    split = argv.index("--")
    parsed = LaunchArgs()
    for flag, key, value in _pairs(argv[:split]):
        if key == "method":
            parsed.method = value
        elif key == "seed":
            parsed.seed = _parse_seed(value)
        elif key == "mix_on":
            if value not in MIX_ON:
                raise LauncherError(f"--mix-on must be one of {', '.join(MIX_ON)}, got {value!r}")
            parsed.mix_on = value
        elif key in _TIMM_KEYS:
            raise LauncherError(
                f"{flag} is timm's: pass the script's flag after '--' "
                "(--mixup, --cutmix, --mixup-prob, --mixup-switch-prob, --mixup-mode, --smoothing, ...)"
            )
        else:
            parsed.params[key] = _parse_value(value)
    rest = argv[split + 1 :]
    if not rest:
        raise LauncherError(f"no script after '--'; {USAGE}")
    parsed.script, parsed.script_args = rest[0], rest[1:]
    if not os.path.isfile(parsed.script):
        raise LauncherError(f"script {parsed.script!r} not found")
    if any(a == "--cutmix-minmax" or a.startswith("--cutmix-minmax=") for a in parsed.script_args):
        raise LauncherError("--cutmix-minmax is not supported by lmix's mixers; use --cutmix ALPHA")
    return parsed


def _config(script_args: Sequence[str]) -> dict[str, Any]:
    """The YAML file given to the script with ``-c``/``--config`` (timm's train.py), or {}."""
    for i, arg in enumerate(script_args):
        path = None
        if arg in ("-c", "--config") and i + 1 < len(script_args):
            path = script_args[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and os.path.isfile(path):
            import yaml

            with open(path) as f:
                config = yaml.safe_load(f)
            return config if isinstance(config, dict) else {}
    return {}


def _script_value(script_args: Sequence[str], flag: str, key: str) -> Any:
    """The value of ``flag`` on the script's command line, else ``key`` in its config file, else None."""
    for i, arg in enumerate(script_args):
        if arg == flag and i + 1 < len(script_args):
            return script_args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return _config(script_args).get(key)


def _mixing_requested(script_args: Sequence[str]) -> bool:
    """Whether the script's arguments (or its ``-c``/``--config`` file) turn timm's mixing on."""
    if any(a in ("--mixup", "--cutmix") or a.startswith(("--mixup=", "--cutmix=")) for a in script_args):
        return True
    config = _config(script_args)
    return any((config.get(k) or 0) > 0 for k in ("mixup", "cutmix"))


def default_mix_on(script_args: Sequence[str]) -> str:
    """``"device"`` when the script will train on a GPU (CUDA available, its ``--device`` not the CPU)."""
    device = _script_value(script_args, "--device", "device") or "cuda"
    return "device" if torch.cuda.is_available() and not str(device).startswith("cpu") else "loader"


def _run_script(script: str, script_args: list[str]) -> int:
    """Run ``script`` as ``__main__`` with ``sys.argv`` set; its exit code."""
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [script, *script_args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
        return 0
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.path[:] = old_argv, old_path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lmix.integrations.timm``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or ("--" not in argv and ("-h" in argv or "--help" in argv)):
        print(HELP.replace("{methods}", ", ".join(input_methods())))
        return 0
    try:
        args = parse_launcher_args(argv)
        mix_on = args.mix_on or default_mix_on(args.script_args)
        install(args.method, seed=args.seed, mix_on=mix_on, **args.params)
    except LmixError as err:
        print(f"lmix.integrations.timm: {err}", file=sys.stderr)
        return 2
    script_args = args.script_args
    if not _mixing_requested(script_args):
        script_args = [*script_args, "--mixup", "1.0"]
    if _script_value(script_args, "--mixup-mode", "mixup_mode") is None:
        # lmix's per-sample mixing costs no more than per batch: make it the default.
        script_args = [*script_args, "--mixup-mode", "elem"]
    _installed.built = 0
    code = _run_script(args.script, script_args)
    if not _installed.built:
        print(
            "lmix: warning: the script never created timm's Mixup or FastCollateMixup, so lmix mixed nothing",
            file=sys.stderr,
        )
    return code
