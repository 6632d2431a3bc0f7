"""``lmix train``: train one model with one mixing method (DDP: ``torchrun --nproc_per_node=N -m lmix train``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from lmix.experiments.train.config import add_config_arguments

    p = sub.add_parser(
        "train",
        help="train a model (default: a one-minute LMix run on the bundled digits)",
        description="Train one model with one mixing method. Every setting is a flag; --config FILE.yaml "
        "supplies settings that flags override. Re-running the same command on the same --out resumes.",
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings (e.g. configs/paper/*.yaml)")
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
    train(config)
    return 0
