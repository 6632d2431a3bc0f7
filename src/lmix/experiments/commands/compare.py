"""``lmix compare``: the main job: compare mixing methods over several seeds, print the table, draw the figures.

With no arguments it runs a small study on the bundled offline ``digits`` data (no
augmentation, Mixup, CutMix, FMix, LMix; 3 seeds) sized to finish in a few minutes on a
2-core CPU, in the regime where mixing can matter: the default model fits the training
subset completely without augmentation (clean training accuracy ~100%), so the mixing
methods are regularisers of an overfitting baseline. The printed table says which regime
the result is in. Every flag scales it up (``--dataset cifar10 --model preact_resnet18
--epochs 200 --seeds 5 --device cuda``). It is ``lmix sweep`` on a generated spec (saved as
OUT/compare.yaml) followed by ``lmix report``; re-running it with the same ``--out`` resumes.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from lmix.experiments.commands.sweep import add_overrides_argument, parse_overrides, set_threads

# Chosen by measurement on the 2-core CPU shared with other jobs (3 seeds, 5 methods each):
#   preact_resnet_tiny w16, 500 images, 60 epochs: baseline 100% clean train, test ~98%: every
#     method within noise of a near-saturated test set;
#   preact_resnet_tiny w16, 200 images, batch 64, 100 epochs: baseline 96.5 +- 1.0, mixing +0.5..+1.0, ~200 s;
#   preact_resnet_tiny w16, 100 images, batch 32, 100 epochs: noisier (std up to 3.9), ~180 s;
#   simple_cnn w32, 200 images, batch 64, 100 epochs: baseline 96.7 +- 0.6 with 100% clean training
#     accuracy (it overfits), mixing +0.3..+1.4 (none significant at 3 seeds), 97-142 s for the
#     whole command depending on the load: the default. Two invocations gave identical numbers.
# digits' 360 test images make one image 0.28 points, so 3 seeds rarely separate the methods
# significantly; --seeds 5 (about 4 minutes) tightens the intervals.
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
DEFAULT_METHODS = ("none", "mixup", "cutmix", "fmix", "lmix")
DEFAULT_SEEDS = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare mixing methods over seeds: table + figures (default: a few minutes on digits, CPU)",
        description="Train every method with several seeds (lmix sweep), then write and print the report "
        "(lmix report). With no arguments: digits, "
        f"{DEFAULTS['model']} (width {DEFAULTS['width']}), {DEFAULTS['train_subset']} training images, "
        f"{DEFAULTS['epochs']} epochs, methods {', '.join(DEFAULT_METHODS)}, {DEFAULT_SEEDS} seeds.",
    )
    p.add_argument("--dataset", help=f"data set (default {DEFAULTS['dataset']})")
    p.add_argument("--model", help=f"model (default {DEFAULTS['model']})")
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
        base.pop("train_subset")  # 500 images is the digits default, not a sensible one elsewhere
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
                raise UsageError(f"--train-subset must be an integer or 'all', got {args.train_subset!r}") from None
    base.update(parse_overrides(args.overrides))
    if not args.verbose:
        base.setdefault("progress", False)
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise UsageError("--methods is empty; give e.g. none,mixup,lmix")
    if len(set(methods)) != len(methods):
        raise UsageError(f"--methods lists a method twice: {args.methods!r}")
    for key in ("method", "seed"):
        if key in base:
            raise UsageError(f"--set {key}=... : use --methods / --seeds")
    return {"name": "compare", "base": base, "grid": {"method": methods, "seed": list(range(args.seeds))}}


def run(args: argparse.Namespace) -> int:
    import yaml

    from lmix.experiments.io import atomic_write_text
    from lmix.experiments.report import build_report, regimes, render_text_summary, write_report
    from lmix.experiments.sweep import parse_spec, run_sweep

    t0 = time.perf_counter()
    data = build_spec(args)
    out = Path(args.out) if args.out else Path("runs") / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    spec = parse_spec(data, source="lmix compare", default_name="compare")
    set_threads(args.threads)
    log = lambda line: print(line, flush=True)  # noqa: E731
    base = data["base"]
    log(
        f"lmix compare: {base['dataset']}, {base['model']}"
        + (f" (width {base['width']})" if "width" in base else "")
        + (f", {base['train_subset']} training images" if "train_subset" in base else "")
        + f", {base['epochs']} epochs; methods {', '.join(data['grid']['method'])}; {args.seeds} seed(s); out {out}"
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "compare.yaml",
        "# generated by lmix compare; reproduce with: lmix sweep THIS_FILE --out THIS_FOLDER && lmix report THIS_FOLDER\n"
        + yaml.safe_dump(data, sort_keys=False),
    )
    result = run_sweep(spec, out, log=log, train_log=print if args.verbose else None)
    report = build_report(out)
    paths = write_report(report, out / "report")
    print()
    print(render_text_summary(report), end="")
    for _dataset, label, regime in regimes(report):
        if regime.startswith("overfits"):
            print(f"{label}: the baseline fits its training set: the regime where mixing can act as a regulariser")
        elif regime.startswith("underfits"):
            print(f"{label}: the baseline underfits: too little capacity or training for a regulariser to help")
    figures = [p.name for p in paths if p.suffix == ".png"]
    print(f"report: {out / 'report' / 'report.md'}; figures: {', '.join(figures) or 'none'}")
    print(f"lmix compare took {time.perf_counter() - t0:.0f}s ({result.count('trained')} runs trained)")
    return 1 if result.count("failed") else 0
