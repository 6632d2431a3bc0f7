"""``lmix sweep``: train a grid of runs from a YAML spec (see ``lmix.experiments.sweep`` for the format)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from lmix.errors import LmixValueError
from lmix.experiments.commands import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train a grid of runs from a YAML spec (resumable, shardable)",
        description="Expand SPEC.yaml (base settings + grid of alternatives) into runs, each in its own folder "
        "under --out, and train those not done yet. Finished runs are skipped, interrupted ones resumed; "
        "re-run the same command to finish a killed sweep. A run folder holding another run, or a record that cannot be "
        "used (damaged, or a finished run missing its config.yaml or metrics.jsonl), stops the sweep before "
        "anything runs: it never trains over a run's records. Spec format: configs/sweeps/README.md (shipped in the package next to the specs; lmix configs --path table1 shows where).",
    )
    p.add_argument(
        "spec", metavar="SPEC", help="sweep spec: a packaged name (lmix configs, e.g. table1) or a YAML file"
    )
    p.add_argument("--out", metavar="DIR", help="folder of the sweep's runs (default: runs/<spec name>)")
    p.add_argument(
        "--shard",
        metavar="i/N|auto",
        help="run only shard i of N (1-based: 1/N .. N/N); run j (0-based) belongs to shard j %% N + 1. "
        "auto: from a Slurm job array (SLURM_ARRAY_TASK_ID, 0-based, and SLURM_ARRAY_TASK_COUNT; "
        "SLURM_ARRAY_TASK_MIN/STEP are honoured)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="train N runs at once, each in its own process (on CPU each gets CPUs/N threads unless --threads; "
        "on a GPU they share the device); default 1",
    )
    p.add_argument(
        "--gpus",
        default="auto",
        metavar="auto|none|IDS",
        help="with --jobs N: spread the job processes over these GPUs, each job seeing one (the least busy); "
        "auto (default): every visible GPU when there are two or more; none: jobs share the visible devices; "
        "or ids such as 0,1,3. Runs with device cpu or cuda:N keep their device",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs and their status (done/partial/todo/running/failed; conflict or unreadable: the "
        "sweep would refuse to start, and the dry run ends with the same one-line error, exit code 2)",
    )
    add_overrides_argument(
        p, help_text="setting applied to every run (YAML value), e.g. --set data_root=/data --set device=cuda:1"
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="go on past failed runs (the default; kept for old scripts): they get RUN/failed.json, exit code 1",
    )
    p.add_argument("--fail-fast", action="store_true", help="start no new run after the first failed one")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (per job with --jobs; 1 is fastest for small models)",
    )
    p.add_argument("--verbose", action="store_true", help="show the trainer's own log lines and progress bars")
    p.set_defaults(func=run)


def add_overrides_argument(p: argparse.ArgumentParser, *, help_text: str) -> None:
    """Add the repeatable ``--set KEY=VALUE`` option (into ``args.overrides``) read by :func:`parse_overrides`."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> settings; values are parsed as YAML (numbers, lists, true/false)."""
    import yaml  # the train extra: imported on use, so that every lmix command's parser builds without it

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
    """Set torch's CPU threads of this process (``--threads``; None: leave them)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch  # imported on use: building every lmix command's parser stays quick

    torch.set_num_threads(threads)


def _checked_gpus(args: argparse.Namespace) -> list[str]:
    """Check the process options; returns the GPUs to spread the jobs over (``--gpus``)."""
    from lmix.experiments.sweep import resolve_gpus

    if args.jobs < 1:
        raise UsageError(f"lmix sweep: --jobs must be >= 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"lmix sweep: --threads must be >= 1, got {args.threads}")
    if args.keep_going and args.fail_fast:
        raise UsageError("lmix sweep: --keep-going and --fail-fast contradict each other; give one")
    gpus: list[str] = []
    if args.jobs > 1 or args.gpus.strip().lower() not in ("auto", "none"):
        try:
            gpus = resolve_gpus(args.gpus)
        except LmixValueError as err:
            raise UsageError(f"lmix sweep: {err}") from None
    if gpus and args.jobs == 1:
        raise UsageError(
            "lmix sweep: --gpus spreads job processes and needs --jobs N > 1; "
            "to pin a sweep to one GPU use --set device=cuda:N"
        )
    return gpus


_OUT_HINT = "give --out a new folder or a sweep's folder"


def run(args: argparse.Namespace) -> int:
    # The sweep (and through it the trainer, torchvision, ...) is imported when the command runs:
    # building every lmix command's parser stays quick.
    from lmix.experiments.catalog import resolve_config
    from lmix.experiments.io import WriteError, not_a_folder
    from lmix.experiments.sweep import SweepInterrupted, failed_line, load_spec, parse_shard, run_sweep

    gpus = _checked_gpus(args)
    spec = load_spec(resolve_config(args.spec, kind="sweep"))  # a path, or a packaged spec by name
    shard = parse_shard(args.shard) if args.shard else None
    overrides = parse_overrides(args.overrides)
    if not args.verbose:
        overrides.setdefault("progress", False)
    out = Path(args.out) if args.out else Path("runs") / spec.name
    problem = not_a_folder(out, name="--out" if args.out else "the sweep's folder", hint=_OUT_HINT)
    if problem is not None:  # else the dry run would blame each run's records ("failed.json: Not a directory")
        raise UsageError(f"lmix sweep: {problem}")
    if args.jobs == 1:
        set_threads(args.threads)  # with --jobs, each job process sets its own
    try:
        result = run_sweep(
            spec,
            out,
            shard=shard,
            overrides=overrides,
            dry_run=args.dry_run,
            keep_going=not args.fail_fast,
            jobs=args.jobs,
            threads=args.threads if args.jobs > 1 else None,
            gpus=gpus,
            log=lambda line: print(line, flush=True),
            train_log=print if args.verbose else None,
        )
    except SweepInterrupted as err:
        print(err, file=sys.stderr)
        return err.exit_code
    except WriteError as err:  # an --out the user may not write (read-only, full): nothing was written
        print(f"lmix sweep: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # one run in this process (the trainer's TrainingInterrupted: 130 or 143)
        signum = int(getattr(err, "signum", signal.SIGINT))
        print(
            f"lmix sweep: stopped by {signal.Signals(signum).name}; the run in flight keeps its last checkpoint; "
            "re-run the same command to resume",
            file=sys.stderr,
        )
        return 128 + signum
    if not args.dry_run:
        print(f"report: lmix report {out}")
    line = failed_line(result)
    if line is not None:
        print(f"lmix sweep: {line}", file=sys.stderr)
        return 1
    return 0
