"""``lmix train``: train one model with one mixing method (DDP: ``torchrun --nproc_per_node=N -m lmix train``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_WRITE_FAILED = 1  # a file could not be written (disk full, unwritable folder); earlier files intact
EXIT_DIVERGED = 3  # the loss or the weights stopped being finite; the last good checkpoint is kept

EXIT_CODES = (
    "exit codes: 0 done; 1 a file could not be written (disk full?), the previous files are intact; "
    "2 a usage error or the out dir is in use by another lmix train; 3 training diverged (non-finite loss), "
    "no summary, the last good checkpoint kept; 130/143 stopped by Ctrl-C/SIGTERM, resume with "
    "lmix train --resume --out DIR."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from lmix.experiments.train.config import add_config_arguments

    p = sub.add_parser(
        "train",
        help="train a model (default: a one-minute LMix run on the bundled digits)",
        description="Train one model with one mixing method. Every setting is a flag; --config FILE.yaml "
        "supplies settings that flags override. Re-running the same command on the same --out resumes.",
        epilog=EXIT_CODES,
    )
    p.add_argument(
        "--config",
        metavar="NAME|FILE.yaml",
        help="settings: a packaged config name (lmix configs, e.g. table1_cifar10_preact_resnet18) or a YAML file",
    )
    p.add_argument("--resume", action="store_true", help="resume the run in --out with the config saved there")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmix.experiments.catalog import resolve_config
    from lmix.experiments.cli import UsageError
    from lmix.experiments.train import config_from_sources, load_yaml, train

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "func", "config", "resume")}
    layers = []
    if args.resume:
        if "out" not in overrides:
            raise UsageError("lmix train: --resume needs --out DIR (the run to resume)")
        saved = Path(overrides["out"]) / "config.yaml"
        if not saved.is_file():
            raise UsageError(f"lmix train: --resume: no run to resume in {overrides['out']!r} (no config.yaml)")
        layers.append(load_yaml(saved))
    if args.config:
        layers.append(load_yaml(resolve_config(args.config, kind="train")))  # a path, or a packaged config by name
    layers.append(overrides)
    config = config_from_sources(*layers)
    return _train_reporting_failures(config, train)


def _train_reporting_failures(config, train) -> int:
    """Run ``train(config)``; a failure the user must know about is one line on stderr and an exit code."""
    from lmix.experiments.io import WriteError
    from lmix.experiments.train import TrainingDiverged, TrainingInterrupted

    try:
        train(config)
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
