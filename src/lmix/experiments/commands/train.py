"""``lmix train``: train one model with one mixing method (DDP: ``torchrun --nproc_per_node=N -m lmix train``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmix.experiments.commands.durations import TRAIN

EXIT_WRITE_FAILED = 1  # a file could not be written (disk full, unwritable folder); earlier files intact
EXIT_DIVERGED = 3  # the loss or the weights stopped being finite; the last good checkpoint is kept

EXIT_CODES = (
    "exit codes: 0 done; 1 a file could not be written (disk full?), the previous files are intact; "
    "2 a usage error, the out dir is in use by another lmix train, holds records a run must not replace "
    "(a finished run without its checkpoint: --restart), or a data file cannot be read; 3 training diverged "
    "(a non-finite or exploded loss), no summary, the last good checkpoint and failed.json kept; 130/143 "
    "stopped by Ctrl-C/SIGTERM, resume with lmix train --resume --out DIR."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from lmix.experiments.train.config import add_config_arguments

    p = sub.add_parser(
        "train",
        help=f"train a model (default: LMix on the bundled digits, {TRAIN.phrase} on a 2-core CPU)",
        description="Train one model with one mixing method. Every setting is a flag; --config FILE.yaml "
        "supplies settings that flags override. Re-running the same command on the same --out resumes; "
        "--restart trains the run in --out again from epoch 0.",
        epilog=EXIT_CODES,
    )
    p.add_argument(
        "--config",
        metavar="NAME|FILE.yaml",
        help="settings: a packaged config name (lmix configs, e.g. table1_cifar10_preact_resnet18) or a YAML file",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        action="store_true",
        help="resume the run in --out with the config saved there (its config.yaml, or its checkpoint's)",
    )
    start.add_argument(
        "--restart",
        action="store_true",
        help="train the run in --out again from epoch 0, replacing its checkpoint and records (also a "
        "finished run's); a folder of another run is still refused",
    )
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmix.experiments.cli import UsageError
    from lmix.experiments.train import config_from_sources, load_yaml, train

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "func", "config", "resume", "restart")}
    layers = []
    if args.resume:
        if "out" not in overrides:
            raise UsageError("lmix train: --resume needs --out DIR (the run to resume)")
        layers.append(_saved_config(Path(overrides["out"])))
    if args.config:
        layers.append(load_yaml(_config_file(args.config)))
    layers.append(overrides)
    config = config_from_sources(*layers)
    return _train_reporting_failures(config, train, restart=args.restart)


def _config_file(name_or_path: str) -> str:
    """The file ``--config`` names: a YAML file, or a packaged config's by name."""
    from lmix.experiments.catalog import resolve_config
    from lmix.experiments.cli import UsageError

    if Path(name_or_path).is_dir():
        raise UsageError(
            f"lmix train: --config {name_or_path!r} is a folder; a config is a YAML file or a packaged "
            "config's name (lmix configs lists them)"
        )
    return resolve_config(name_or_path, kind="train")


def _saved_config(out: Path) -> dict:
    """The settings of the run in ``out`` for ``--resume``: its config.yaml, else its checkpoint's."""
    from lmix.experiments.cli import UsageError
    from lmix.experiments.records import RecordError, load_config
    from lmix.experiments.train.trainer import CHECKPOINT, load_checkpoint

    if out.exists() and not out.is_dir():
        raise UsageError(f"lmix train: --resume: {str(out)!r} is a file, not a run folder")
    if not out.exists():
        raise UsageError(f"lmix train: --resume: no run to resume in {str(out)!r} (no such folder)")
    if (out / "config.yaml").exists():
        try:
            return load_config(out)  # read as lmix report and lmix sweep read it: damage names the file
        except RecordError as err:
            raise UsageError(f"lmix train: --resume: {err.path}: {err.problem}") from None
    if (out / CHECKPOINT).is_file():
        return load_checkpoint(out / CHECKPOINT)["config"]
    raise UsageError(f"lmix train: --resume: no run to resume in {str(out)!r} (no config.yaml, no {CHECKPOINT})")


def _train_reporting_failures(config, train, *, restart: bool = False) -> int:
    """Run ``train(config)``; a failure the user must know about is one line on stderr and an exit code."""
    from lmix.experiments.io import WriteError
    from lmix.experiments.train import TrainingDiverged, TrainingInterrupted

    try:
        train(config, restart=restart)
    except TrainingDiverged as err:
        print(str(err), file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return err.exit_code
    except WriteError as err:
        print(f"lmix train: {err}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    return 0
