"""``lmix compare``: the main job: compare mixing methods over several seeds, print the table, draw the figures.

With no arguments it runs a small study on the bundled offline ``digits`` data (no
augmentation, Mixup, CutMix, FMix, LMix; 3 seeds) sized for a 2-core CPU (its measured time:
:mod:`lmix.experiments.commands.durations`), in the regime where mixing can matter: the
default model fits the training subset completely without augmentation (clean training
accuracy ~100%), so the mixing methods are regularisers of an overfitting baseline. The
printed table compares every method with the baseline, paired by seed, with the report's
tests (:func:`summary_lines`), and says which regime the result is in. Every flag scales it up (``--dataset cifar10 --model preact_resnet18
--epochs 200 --seeds 5 --device cuda``). It is ``lmix sweep`` on a generated spec (saved as
OUT/compare.yaml) followed by ``lmix report``; re-running it with the same ``--out`` resumes.

A user error (a flag's value, an ``--out`` that is a file, data not where ``--data-root`` says)
is one line and exit code 2 before anything is written: no ``runs/compare-*`` folder is left.
Where every run fails, there is no report: one line with the first run's reason, exit code 2 for
a user's error (the data) and 1 otherwise; the folder goes too when no run recorded an epoch
(nothing in it is worth keeping), else the line names it (a re-run resumes the runs).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmix.experiments.commands.durations import COMPARE
from lmix.experiments.commands.sweep import add_overrides_argument, parse_overrides, set_threads

if TYPE_CHECKING:
    from lmix.experiments.report import Report
    from lmix.experiments.sweep import SweepSpec

# Chosen by measurement on the 2-core CPU shared with other jobs (3 seeds, 5 methods each):
#   preact_resnet_tiny w16, 500 images, 60 epochs: baseline 100% clean train, test ~98%: every
#     method within noise of a near-saturated test set;
#   preact_resnet_tiny w16, 200 images, batch 64, 100 epochs: baseline 96.5 +- 1.0, mixing +0.5..+1.0,
#     and slower than the default;
#   preact_resnet_tiny w16, 100 images, batch 32, 100 epochs: noisier (std up to 3.9);
#   simple_cnn w32, 200 images, batch 64, 100 epochs: baseline 96.7 +- 0.6 with 100% clean training
#     accuracy (it overfits), mixing +0.3..+1.4: the default (its time: durations.COMPARE).
#     Two invocations gave identical numbers.
# digits' 360 test images make one image 0.28 points, so 3 seeds rarely separate the methods
# significantly; --seeds 5 (5/3 of the time) tightens the intervals.
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "model": "simple_cnn",
    "width": 32,
    "epochs": 100,
    "train_subset": 200,
    "batch_size": 64,
    "lr": 0.1,
    "schedule": "multistep",
}
SEQUENCE_MODEL = "cnn1d"  # the default model for a time-series data set (simple_cnn takes images)
DEFAULT_METHODS = ("none", "mixup", "cutmix", "fmix", "lmix")
DEFAULT_SEEDS = 3
SOURCE = "lmix compare"  # the generated spec's source, as the sweep's messages name it


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help=f"compare mixing methods over seeds: table + figures (default: digits, {COMPARE.phrase} on a 2-core CPU)",
        description="Train every method with several seeds (lmix sweep), then write and print the report "
        "(lmix report). With no arguments: digits, "
        f"{DEFAULTS['model']} (width {DEFAULTS['width']}), {DEFAULTS['train_subset']} training images, "
        f"{DEFAULTS['epochs']} epochs, methods {', '.join(DEFAULT_METHODS)}, {DEFAULT_SEEDS} seeds. "
        "Every setting, --out and the data are checked before anything is written (a mistake: one line, exit "
        "code 2, no folder left); if every run fails, the first one's reason is one line (exit code 2 for a data "
        "problem, else 1), and the folder is kept only where a run recorded an epoch (a re-run resumes it).",
    )
    p.add_argument("--dataset", help=f"data set (default {DEFAULTS['dataset']})")
    p.add_argument("--model", help=f"model (default {DEFAULTS['model']}; {SEQUENCE_MODEL} for a time-series data set)")
    p.add_argument("--width", type=int, help=f"width of the small models (default {DEFAULTS['width']})")
    p.add_argument("--epochs", type=int, help=f"epochs per run (default {DEFAULTS['epochs']})")
    p.add_argument(
        "--train-subset",
        metavar="N|all",
        help=f"stratified subset of the training set (default {DEFAULTS['train_subset']}; 'all': the whole set)",
    )
    p.add_argument("--batch-size", type=int, help=f"batch size (default {DEFAULTS['batch_size']})")
    p.add_argument("--lr", type=float, help=f"learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--schedule", help=f"multistep, cosine or onecycle (default {DEFAULTS['schedule']})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds 0..N-1 (default {DEFAULT_SEEDS})")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated methods (default {','.join(DEFAULT_METHODS)}; see lmix methods)",
    )
    p.add_argument("--data-root", help="folder holding the data set")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    add_overrides_argument(p, help_text="any other training setting for every run, e.g. --set alpha=0.5")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/compare-<timestamp>)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small models run fastest single-threaded, above all on a shared CPU)",
    )
    p.add_argument("--verbose", action="store_true", help="show the trainer's log lines")
    p.set_defaults(func=run)


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep spec (as a mapping) that ``args`` ask for."""
    from lmix.experiments.cli import UsageError

    base = dict(DEFAULTS)
    custom_model = args.model is not None and args.model != DEFAULTS["model"]
    if custom_model and args.width is None:
        base.pop("width")  # the default width belongs to the default model
    custom_data = args.dataset is not None and args.dataset != DEFAULTS["dataset"]
    if custom_data and args.train_subset is None:
        base.pop("train_subset")  # 200 images is the digits default, not a sensible one elsewhere
    for key in ("dataset", "model", "width", "epochs", "batch_size", "lr", "schedule", "data_root", "device"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    if args.train_subset is not None:
        if str(args.train_subset).lower() == "all":
            base.pop("train_subset", None)
        else:
            try:
                base["train_subset"] = int(args.train_subset)
            except ValueError:
                raise UsageError(
                    f"lmix compare: --train-subset must be an integer or 'all', got {args.train_subset!r}"
                ) from None
    base.update(parse_overrides(args.overrides))
    if args.model is None and base["model"] == DEFAULTS["model"] and _holds_sequences(base["dataset"]):
        base["model"] = SEQUENCE_MODEL
        if args.width is None and base.get("width") == DEFAULTS["width"]:
            base.pop("width")  # the default width belongs to the default model
    if not args.verbose:
        base.setdefault("progress", False)
    if args.seeds < 1:
        raise UsageError(f"lmix compare: --seeds must be >= 1, got {args.seeds}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError("lmix compare: --methods is empty; give e.g. none,mixup,lmix")
    if len(set(methods)) != len(methods):
        raise UsageError(f"lmix compare: --methods lists a method twice: {args.methods!r}")
    for key in ("method", "seed"):
        if key in base:
            raise UsageError(f"lmix compare: --set {key}=... : use --methods / --seeds")
    return {"name": "compare", "base": base, "grid": {"method": methods, "seed": list(range(args.seeds))}}


def _holds_sequences(dataset: object) -> bool:
    """Whether ``dataset`` names a time-series data set (an unknown name is left to the run checks)."""
    from lmix.data import dataset_info
    from lmix.errors import LmixError

    try:
        return dataset_info(dataset).spatial_dims == 1  # type: ignore[arg-type]
    except LmixError:
        return False


def summary_lines(report: Report) -> list[str]:
    """The terminal's comparison: per row, each method's final accuracy and its test against the baseline.

    Columns: runs, mean ± std, the mean's 95% interval, and the difference from the baseline
    (``none``) paired by seed with its 95% interval, the paired t-test's p and its Holm adjustment
    over the row's comparisons with the baseline. These are the tests of report.md's "Paired by
    seed" table and report.json's ``paired`` (:func:`lmix.experiments.report.analysis.paired_tests`),
    read from the same ``report``, so the terminal and the report agree.
    """
    from lmix.experiments.report.accounting import counts_text
    from lmix.experiments.report.analysis import FINAL
    from lmix.experiments.report.formats import fmt_p, signed_ci
    from lmix.experiments.report.stats import cell_order, report_datasets, report_rows, row_regime

    out: list[str] = []
    for dataset in report_datasets(report):
        for key, label, cells in report_rows(report, dataset):
            cells = sorted(cells, key=cell_order)
            base = next((c for c in cells if c.method == "none" and not c.variant), None)
            tests = {
                t.a: t
                for t in report.paired.get((dataset, *key), [])
                if base is not None and t.b == base.column_label and t.metric == FINAL
            }
            family = next((len(t.family) for t in tests.values() if t.family), 0)
            header = ["method", "n", "final acc (%)", "95% CI"]
            if base is not None:
                header += [f"vs {base.column_label} [95% CI]", "p", "Holm p"]
            rows = [header]
            for c in cells:
                s = c.final
                row = [
                    c.column_label,
                    str(s.n if s else 0),
                    "-" if s is None else f"{s.mean:.2f}" + ("" if math.isnan(s.std) else f" ± {s.std:.2f}"),
                    "-" if s is None or math.isnan(s.ci95) else f"[{s.mean - s.ci95:.2f}, {s.mean + s.ci95:.2f}]",
                ]
                if base is not None:
                    t = tests.get(c.column_label)
                    row += (
                        ["", "", ""]
                        if t is None
                        else [signed_ci(t.diff, t.ci95), fmt_p(t.p), "" if t.p_holm is None else fmt_p(t.p_holm)]
                    )
                rows.append(row)
            widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
            out.append(f"{dataset}, {label}: final test accuracy over seeds")
            out += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
            if base is None:
                out.append("  no baseline (none) among the methods: nothing to test against")
            elif not family:
                out.append("  p: n/a, a paired test needs 2 or more seeds shared with the baseline (--seeds)")
            else:
                out += [
                    f"  vs {base.column_label}: the difference paired by seed (a seed fixes the training subset, the "
                    "initial weights and the batch order);",
                    f"  p: paired t-test, * = p < 0.05; Holm p: adjusted over the {family} comparisons with "
                    f"{base.column_label}. Exploratory; report.md has the same tests.",
                ]
            regime = row_regime(cells)[0]
            out.append(f"  regime: {regime}")
            if regime.startswith("overfits"):
                out.append("  the baseline fits its training set: the regime where mixing can act as a regulariser")
            elif regime.startswith("underfits"):
                out.append("  the baseline underfits: too little capacity or training for a regulariser to help")
    used = len(report.runs) - len(report.not_used)
    others = counts_text(report.runs)
    out.append(f"{len(report.runs)} runs: {used} finished and used" + (f", {others}" if others else ""))
    out += [f"  {r.status_label}: {r.dir}: {r.detail}" for r in report.not_used]
    return out


def run(args: argparse.Namespace) -> int:
    import yaml

    from lmix.experiments.io import atomic_write_text
    from lmix.experiments.report import build_report, write_report
    from lmix.experiments.sweep import run_sweep

    t0 = time.perf_counter()
    data = build_spec(args)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    set_threads(args.threads)
    spec = _check_before_writing(data, out)  # a user error leaves nothing behind: no OUT, no runs/
    log = lambda line: print(line, flush=True)  # noqa: E731
    base = data["base"]
    log(
        f"lmix compare: {base['dataset']}, {base['model']}"
        + (f" (width {base['width']})" if "width" in base else "")
        + (f", {base['train_subset']} training images" if "train_subset" in base else "")
        + f", {base['epochs']} epochs; methods {', '.join(data['grid']['method'])}; {args.seeds} seed(s); out {out}"
    )
    # the outermost folder this call makes (runs/ too on a first compare): removed if nothing is worth keeping
    created = next((p for p in reversed((out, *out.parents)) if not p.exists()), None)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "compare.yaml",
        "# generated by lmix compare; reproduce with: lmix sweep THIS_FILE --out THIS_FOLDER && lmix report THIS_FOLDER\n"
        + yaml.safe_dump(data, sort_keys=False),
    )
    result = run_sweep(spec, out, log=log, train_log=print if args.verbose else None)
    if result.count("failed") and not result.count("trained") + result.count("skipped"):
        return _no_run_finished(result, out, created=created)
    report = build_report(out)
    paths = write_report(report, out / "report")
    print()
    print("\n".join(summary_lines(report)))
    figures = [p.name for p in paths if p.suffix == ".png"]
    print(f"report: {out / 'report' / 'report.md'}; figures: {', '.join(figures) or 'none'}")
    print(f"lmix compare took {time.perf_counter() - t0:.0f}s ({result.count('trained')} runs trained)")
    return 1 if result.count("failed") else 0


def _check_before_writing(data: dict[str, Any], out: Path) -> SweepSpec:
    """The study's spec, once every user error it can have is ruled out, before anything is written:
    each run's settings (an unknown data set, model, method or ``--set`` key, a model of the other
    input kind: the sweep's own checks), ``--out``, and each data set's files where ``--data-root``
    says they are (the trainer's own look-up).

    Raises:
        UsageError: one line saying what is wrong.
    """
    from lmix.data import resolve_root
    from lmix.data.info import DataNotFoundError, dataset_info
    from lmix.errors import LmixValueError
    from lmix.experiments.cli import UsageError
    from lmix.experiments.io import not_a_folder
    from lmix.experiments.sweep import expand, parse_spec

    problem = not_a_folder(out, hint="give --out a new folder or an earlier lmix compare's folder")
    if problem is not None:
        raise UsageError(f"lmix compare: {problem}")
    try:
        spec = parse_spec(data, source=SOURCE, default_name="compare")
        runs = expand(spec, out)
    except LmixValueError as err:  # "run {seed=0, method=bogus}: unknown mixer 'bogus'; ..."
        raise UsageError(f"lmix compare: {str(err).removeprefix(f'sweep spec {SOURCE}: ')}") from None
    for config in {(r.config.dataset, r.config.data_root, r.config.download, r.config.svhn_extra) for r in runs}:
        dataset, root, download, svhn_extra = config
        if download and root is not None and dataset_info(dataset).downloadable:  # torchvision downloads into it
            problem = not_a_folder(
                root, name="--data-root", hint=f"give --data-root the folder to download {dataset} into"
            )
            if problem is not None:
                raise UsageError(f"lmix compare: {problem}")
        for train in (True, False):
            try:
                resolve_root(dataset, root, download=download, train=train, svhn_extra=svhn_extra)
            except DataNotFoundError as err:
                raise UsageError(f"lmix compare: {_data_problem(err, root)}") from None
    return spec


def _data_problem(err: Exception, root: str | None) -> str:
    """The data look-up's line; where ``--data-root`` is a file, that, with the look-up's hint (how to give the data)."""
    from lmix.experiments.io import not_a_folder

    text = str(err)  # "cifar10: data not found in X (nor in X/cifar10); pass --data-root DIR (...) or --download ..."
    dataset, _, rest = text.partition(": ")
    how = rest.partition("; ")[2]
    problem = None if root is None else not_a_folder(root, name="--data-root", hint=how and f"{dataset}: {how}")
    return text if problem is None else problem


def _no_run_finished(result: Any, out: Path, *, created: Path | None) -> int:
    """Every run failed, so there is no report: one line with the first run's reason. A user's
    error (the data, a path: what ``lmix train`` calls one) exits 2, any other failure 1. The folders
    this call made (``created``: the outermost) are removed where no run recorded an epoch (no metrics
    row, no checkpoint: nothing a re-run could resume, only failed.json) and none is busy in another
    process; otherwise the line says where the runs are (a re-run resumes them)."""
    import shutil

    from lmix.errors import LmixError
    from lmix.experiments.cli import USER_OS_ERRORS
    from lmix.experiments.io import FAILED_JSON
    from lmix.experiments.records import CHECKPOINT
    from lmix.experiments.train.failures import epochs_done

    failed = [o for o in result.outcomes if o.status == "failed"]
    first = failed[0]
    user_error = all(isinstance(o.exception, (LmixError, *USER_OS_ERRORS)) for o in failed)
    kept = any(
        o.status == "busy" or epochs_done(o.run.dir) or (o.run.dir / CHECKPOINT).exists() for o in result.outcomes
    )
    if created is not None and not kept:
        shutil.rmtree(created, ignore_errors=True)
        where = "nothing was kept"
    else:
        where = f"the runs are in {out} (each failed run's {FAILED_JSON} says why; re-run the same command to resume)"
    print(
        f"lmix compare: no run finished ({len(failed)} of {len(result.outcomes)} failed), so no report; "
        f"the first, {first.run.name}: {first.error or 'unknown error'}; {where}",
        file=sys.stderr,
    )
    return 2 if user_error else 1
