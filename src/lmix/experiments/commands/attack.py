"""``lmix attack``: FGSM accuracy against eps of trained runs (the paper's Fig. 5)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

EPS_HELP = (
    "comma-separated eps list (default: 0,1,2,4,8). Units: 1/255 of the pixel range, unless --eps-units float "
    "is given or every value is < 1 and at least one is written with a decimal point (e.g. 0,0.01,0.03), "
    "which are fractions of the [0, 1] range"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack",
        help="FGSM robustness of trained runs (accuracy against eps, the paper's Fig. 5)",
        description="Attack a run's model with FGSM on its data set's test split, in pixel space [0, 1] with the "
        "normalisation inside the model and the model in eval mode. Writes RUN/fgsm.json ({eps: fractions of the "
        "[0, 1] range, eps_255, acc: percent like summary.json's final_acc}) and RUN/fgsm.png. eps 0 is the clean "
        "test accuracy. --compare overlays several runs in one PNG, attacking only runs without a matching fgsm.json. "
        "Every folder it would write to is checked first: one that cannot be written (read-only, a full disk) is a "
        "one-line error naming the file, exit code 2, and nothing is attacked or written.",
    )
    p.add_argument("--run", metavar="DIR", help="run dir written by lmix train (holds checkpoint.pt)")
    p.add_argument("--eps", default="0,1,2,4,8", metavar="E1,E2,...", help=EPS_HELP)
    p.add_argument(
        "--eps-units",
        choices=["auto", "255", "float"],
        default="auto",
        help="units of --eps: 255 (1/255 of the range), float (fractions of [0, 1]) or auto (see --eps)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="attack batch size (default: the run's batch size)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--amp",
        choices=["run", "none", "bf16", "fp16"],
        default="run",
        help="mixed precision of the forward passes (default: run, the run's own setting on this device)",
    )
    p.add_argument("--data-root", metavar="DIR", help="where the data set lives (default: the run's data_root)")
    p.add_argument("--download", action="store_true", help="download a missing data set with torchvision")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="attack only the first N test images")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="overlay these runs' curves (and --run's) in one PNG; runs whose fgsm.json has the same eps are reused",
    )
    p.add_argument(
        "--out",
        metavar="PNG",
        help="the PNG to write (default: RUN/fgsm.png for one run, ./fgsm-compare.png with --compare)",
    )
    p.add_argument("--force", action="store_true", help="attack --compare runs again even if their fgsm.json matches")
    p.set_defaults(func=run)


def _same_eps(a: list[Any], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        isinstance(x, (int, float)) and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b)
    )


def _reusable(record: dict[str, Any] | None, eps: list[float], limit: int | None, epoch: int) -> bool:
    """An existing fgsm.json answers the same question about the same weights."""
    return (
        record is not None
        and _same_eps(record["eps"], eps)
        and len(record["acc"]) == len(eps)
        and record.get("limit") == limit
        and record.get("epoch") == epoch
    )


def _label(record: dict[str, Any], run_dir: Path, duplicates: bool) -> str:
    label = str(record.get("method", run_dir.name))
    return f"{label} ({run_dir.name})" if duplicates else label


def _line(run_dir: Path, record: dict[str, Any], reused: bool) -> str:
    eps = ", ".join(f"{v:g}" for v in record["eps_255"])
    acc = ", ".join(f"{v:.2f}" for v in record["acc"])
    what = f"reused {run_dir / 'fgsm.json'}" if reused else f"wrote {run_dir / 'fgsm.json'}, {run_dir / 'fgsm.png'}"
    return f"{run_dir}: FGSM accuracy (%) at eps {eps} (/255): {acc}; {what}"


def run(args: argparse.Namespace) -> int:
    # The attack's data sets and figures need the train extra: say so before any argument or run dir is checked.
    import matplotlib  # noqa: F401
    import torchvision  # noqa: F401

    from lmix.experiments.io import WriteError

    eps, eps_255 = _checked_args(args)
    run_dirs = _run_dirs(args)
    # --run is always attacked afresh; --compare runs reuse a matching fgsm.json unless --force.
    reuse = [
        None if (args.run is not None and i == 0) or args.force else _reusable_record(run_dir, args, eps)
        for i, run_dir in enumerate(run_dirs)
    ]
    figure = Path(args.out) if args.out else Path("fgsm-compare.png") if args.compare else None
    try:
        # Every folder the attack writes to, and every run it attacks, checked before any attack spends
        # time: nothing is written otherwise.
        to_attack = [d for d, r in zip(run_dirs, reuse) if r is None]
        _check_writable(to_attack, figure, given=args.out is not None)
        _check_data(to_attack)
        records: list[tuple[Path, dict[str, Any]]] = []
        for run_dir, reused in zip(run_dirs, reuse):
            record = reused if reused is not None else _attack(run_dir, args, eps, eps_255)
            print(_line(run_dir, record, reused is not None))
            _note_clean_mismatch(run_dir, record)
            records.append((run_dir, record))
        if figure is not None:
            _compare_figure(records, figure)
    except WriteError as err:  # a read-only run folder, a full disk: the user's to fix, in one line
        print(f"lmix attack: {err}", file=sys.stderr)
        return 2
    return 0


def _checked_args(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """The eps list (fractions, 1/255 units) once the arguments are checked."""
    from lmix.experiments.attack import parse_eps
    from lmix.experiments.cli import UsageError

    if args.run is None and not args.compare:
        raise UsageError("lmix attack: give --run DIR (and/or --compare RUN ...)")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"lmix attack: --batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"lmix attack: --limit must be >= 1, got {args.limit}")
    try:
        return parse_eps(args.eps, units=args.eps_units)
    except ValueError as err:
        raise UsageError(f"lmix attack: --eps: {err}") from None


def _run_dirs(args: argparse.Namespace) -> list[Path]:
    """Every run dir, checked before any attack spends time; a run named twice is attacked once."""
    from lmix.experiments.records import check_run_dir

    runs: list[Path] = []
    for name in ([args.run] if args.run is not None else []) + list(args.compare or []):
        run_dir = check_run_dir(name)
        if all(run_dir.resolve() != r.resolve() for r in runs):
            runs.append(run_dir)
    return runs


def _reusable_record(run_dir: Path, args: argparse.Namespace, eps: list[float]) -> dict[str, Any] | None:
    """The run's fgsm.json where it answers the same question about the same weights, else None."""
    from lmix.experiments.records import read_checkpoint, read_fgsm

    record = read_fgsm(run_dir)
    if record is not None and _reusable(record, eps, args.limit, read_checkpoint(run_dir)[1].get("epoch", 0)):
        return record
    return None


def _check_writable(run_dirs: list[Path], figure: Path | None, *, given: bool) -> None:
    """WriteError (one line naming the file) unless each run folder, and the figure's folder, can be written;
    UsageError where the figure's path is a folder or lies inside a file (``given``: it is ``--out``'s)."""
    from lmix.experiments.cli import UsageError
    from lmix.experiments.io import not_a_file
    from lmix.experiments.records import FGSM_JSON, check_writable

    if figure is not None:
        problem = not_a_file(figure, name="--out" if given else "the figure", example="fgsm-compare.png")
        if problem is not None:
            raise UsageError(f"lmix attack: {problem}")
    for target in [d / FGSM_JSON for d in run_dirs] + ([figure] if figure is not None else []):
        check_writable(target)


def _check_data(run_dirs: list[Path]) -> None:
    """Refuse (one line) a run FGSM does not apply to, by its config.yaml's data set, before any run is
    attacked. A run whose config.yaml cannot be read is left to the attack, which reads the checkpoint."""
    from lmix.experiments.attack import check_attackable
    from lmix.experiments.records import RecordError, load_config

    for run_dir in run_dirs:
        try:
            config = load_config(run_dir)
        except RecordError:
            continue
        if config is not None and isinstance(config.get("dataset"), str):
            check_attackable(run_dir, config["dataset"])


def _attack(run_dir: Path, args: argparse.Namespace, eps: list[float], eps_255: list[float]) -> dict[str, Any]:
    """Attack the run, then write fgsm.json and fgsm.png; where the PNG fails, fgsm.json is put back as it was."""
    from lmix.experiments.attack import attack_run
    from lmix.experiments.io import atomic_write
    from lmix.experiments.records import FGSM_JSON, FGSM_PNG, write_fgsm
    from lmix.experiments.report.plots import plot_fgsm_runs

    record = attack_run(
        run_dir,
        eps,
        eps_255=eps_255,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        data_root=args.data_root,
        download=args.download,
        limit=args.limit,
        progress=sys.stderr.isatty(),
    )
    path = run_dir / FGSM_JSON
    try:
        previous: bytes | None = path.read_bytes()
    except FileNotFoundError:
        previous = None
    write_fgsm(run_dir, record)
    try:
        label = _label(record, run_dir, False)
        plot_fgsm_runs([(label, record["eps_255"], record["acc"])], run_dir / FGSM_PNG, title=_title(record))
    except BaseException:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, lambda f: f.write(previous))
        raise
    return record


def _compare_figure(records: list[tuple[Path, dict[str, Any]]], out: Path) -> None:
    from lmix.experiments.report.plots import plot_fgsm_runs

    methods = [str(r.get("method")) for _, r in records]
    duplicates = len(set(methods)) < len(methods)
    datasets = sorted({str(r.get("dataset")) for _, r in records})
    title = _title(records[0][1]) if len(records) == 1 else f"FGSM on {', '.join(datasets)}"
    plot_fgsm_runs([(_label(r, d, duplicates), r["eps_255"], r["acc"]) for d, r in records], out, title=title)
    print(f"wrote {out} ({len(records)} run{'s' if len(records) > 1 else ''})")


def _title(record: dict[str, Any]) -> str:
    return f"FGSM: {record.get('method')} {record.get('model')} on {record.get('dataset')}"


def _note_clean_mismatch(run_dir: Path, record: dict[str, Any]) -> None:
    """Say so when eps 0 does not reproduce the recorded test accuracy (another device or precision)."""
    recorded = record.get("recorded_acc")
    if recorded is None or record.get("limit") is not None:
        return
    clean = [a for e, a in zip(record["eps"], record["acc"]) if e == 0]
    if clean and not math.isclose(clean[0], recorded, abs_tol=1e-9):
        print(
            f"note: {run_dir}: clean accuracy here {clean[0]:.2f}% differs from the recorded {recorded:.2f}% "
            f"(device {record.get('device')}, amp {record.get('amp')} differ from training)",
            file=sys.stderr,
        )
