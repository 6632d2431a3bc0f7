"""``lmix sweep``: train a grid of runs from a YAML spec (see ``lmix.experiments.sweep`` for the format)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a grid of runs from a YAML spec (resumable, shardable)",
        description="Expand SPEC.yaml (base settings + grid of alternatives) into runs, each in its own folder "
        "under --out, and train those not done yet. Finished runs are skipped, interrupted ones resumed; "
        "re-run the same command to finish a killed sweep. Spec format: configs/sweeps/README.md.",
    )
    p.add_argument("spec", metavar="SPEC.yaml", help="sweep spec (e.g. configs/sweeps/table1.yaml)")
    p.add_argument("--out", metavar="DIR", help="folder of the sweep's runs (default: runs/<spec name>)")
    p.add_argument(
        "--shard",
        metavar="i/N",
        help="run only shard i of N (1-based: 1/N .. N/N); run j (0-based) belongs to shard j %% N + 1",
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status (done/partial/todo/running)")
    add_overrides_argument(
        p, help_text="setting applied to every run (YAML value), e.g. --set data_root=/data --set device=cuda:1"
    )
    p.add_argument("--keep-going", action="store_true", help="go on with the next run when one fails (exit code 1)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (1 is fastest for small models)")
    p.add_argument("--verbose", action="store_true", help="show the trainer's own log lines and progress bars")
    p.set_defaults(func=run)


def add_overrides_argument(p: argparse.ArgumentParser, *, help_text: str) -> None:
    """Add the repeatable ``--set KEY=VALUE`` option (into ``args.overrides``) read by :func:`parse_overrides`."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> settings; values are parsed as YAML (numbers, lists, true/false)."""
    import yaml

    from lmix.experiments.cli import UsageError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"lmix sweep: --set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise UsageError(f"lmix sweep: --set {item!r}: the value is not valid YAML") from None
    return out


def set_threads(threads: int | None) -> None:
    from lmix.experiments.cli import UsageError

    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmix.experiments.sweep import load_spec, parse_shard, run_sweep

    spec = load_spec(args.spec)
    shard = parse_shard(args.shard) if args.shard else None
    overrides = parse_overrides(args.overrides)
    if not args.verbose:
        overrides.setdefault("progress", False)
    out = Path(args.out) if args.out else Path("runs") / spec.name
    set_threads(args.threads)
    result = run_sweep(
        spec,
        out,
        shard=shard,
        overrides=overrides,
        dry_run=args.dry_run,
        keep_going=args.keep_going,
        log=lambda line: print(line, flush=True),
        train_log=print if args.verbose else None,
    )
    if not args.dry_run:
        print(f"report: lmix report {out}")
    return 1 if result.count("failed") else 0
