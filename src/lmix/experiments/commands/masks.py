"""``lmix masks``: statistics of CutMix, FMix and LMix masks against k (regions, boundary, spectrum).

``--size`` takes one side per spatial axis: ``L`` (sequences), ``H W`` (images, the default
32 32) or ``D H W`` (volumes), the ``size`` of ``lmix.fourier_masks``.
"""

from __future__ import annotations

import argparse
import math

from lmix.experiments.commands import UsageError
from lmix.experiments.mask_limits import (
    EXAMPLE_MASKS,
    MAX_AT_ONCE,
    MAX_CONFIGURATIONS,
    MAX_IN_ALL,
    MAX_N,
    MAX_SIDE,
    configurations,
    limit_problem,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "masks",
        help="mask diagnostics: regions, boundary, largest region and spectrum of CutMix/FMix/LMix masks per k",
        description="Draw N masks per configuration (CutMix, FMix = LMix k=0, LMix at each k; each lam) and "
        "measure the connected regions of each mask and of its complement (neighbours share a face: runs "
        "in 1-D, 4-connectivity in 2-D, 6 in 3-D), the boundary share (neighbour pairs that differ), the "
        "largest region's share of the mask and the radial power spectrum. Masks are 1-D (--size L), 2-D "
        "(--size H W) or 3-D (--size D H W). Prints a table (mean and 95% CI, clipped to what each statistic "
        "can take) and writes masks.md, masks.json and PNG figures, all or none. Limits (measured at them: "
        f"3.4 GB and 3.5 minutes at most): --n <= {MAX_N:,}; at most {MAX_CONFIGURATIONS} "
        f"configurations (CutMix, FMix and each LMix k, for each lam); every side <= {MAX_SIDE:,}; --n x elements "
        f"per mask (at least {EXAMPLE_MASKS} masks in 1-D and 2-D: the example figure's) <= {MAX_AT_ONCE:,}, and "
        f"that times the configurations <= {MAX_IN_ALL:,}.",
    )
    p.add_argument(
        "--size",
        nargs="+",
        type=int,
        default=[32, 32],
        metavar="SIDE",
        help="mask sides, each >= 2: L (a sequence: masks drawn as strips), H W (an image) or D H W (a volume: "
        f"masks drawn as slices); each <= {MAX_SIDE:,}, and --n x their product <= {MAX_AT_ONCE:,} (default 32 32)",
    )
    p.add_argument("--k", default="0,0.5,1,2,4,8", help="comma-separated LMix k >= 0 (default 0,0.5,1,2,4,8)")
    p.add_argument("--lam", default="0.5", help="comma-separated mask areas in (0, 1) (default 0.5)")
    p.add_argument(
        "--n", type=int, default=1000, help=f"masks per configuration, 2 to {MAX_N:,} (default 1000; see the limits)"
    )
    p.add_argument("--decay", type=float, default=3.0, help="low-pass decay of the Fourier masks (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed (the same noise for every k; default 0)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/masks-<timestamp>)")
    p.set_defaults(func=run)


def _floats(text: str, flag: str) -> list[float]:
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"lmix masks: {flag} must be comma-separated numbers, got {text!r}") from None
        if not math.isfinite(value):
            raise UsageError(f"lmix masks: {flag} values must be finite, got {part!r}")
        values.append(value)
    return values


def run(args: argparse.Namespace) -> int:
    from datetime import datetime
    from pathlib import Path

    from lmix.experiments.io import not_a_folder
    from lmix.experiments.masks import FILES, clipped_note, run_mask_study, size_text, table_lines, write_study

    ks = _floats(args.k, "--k")
    lams = _floats(args.lam, "--lam")
    if any(k < 0 for k in ks):
        raise UsageError(f"lmix masks: --k values must be >= 0, got {args.k!r}")
    if any(not 0 < x < 1 for x in lams):
        raise UsageError(f"lmix masks: --lam values must lie in (0, 1), got {args.lam!r}")
    if not 1 <= len(args.size) <= 3:
        raise UsageError(
            f"lmix masks: --size takes 1 to 3 sides (L, H W or D H W), got {len(args.size)}: "
            + " ".join(map(str, args.size))
        )
    if min(args.size) < 2:
        raise UsageError(f"lmix masks: --size sides must all be >= 2, got {' '.join(map(str, args.size))}")
    if args.n < 2:
        raise UsageError(f"lmix masks: --n must be >= 2 (masks per configuration), got {args.n}")
    if not math.isfinite(args.decay) or args.decay < 0:
        raise UsageError(f"lmix masks: --decay must be >= 0, got {args.decay}")
    from lmix.experiments.train.config import SEED_BOUNDS, SEED_LIMIT

    if not 0 <= args.seed < SEED_LIMIT:
        raise UsageError(f"lmix masks: --seed must be an integer in {SEED_BOUNDS}, got {args.seed}")
    problem = limit_problem(args.size, args.n, configurations(ks, lams), size_name="--size", n_name="--n")
    if problem is not None:
        raise UsageError(f"lmix masks: {problem}")
    out = Path(args.out) if args.out else Path("runs") / f"masks-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    # Checked before the study runs; write_study leaves the folder as it was if one is in the way later.
    problem = not_a_folder(out)
    if problem is not None:
        raise UsageError(f"lmix masks: {problem}")
    for name in FILES:
        if (out / name).is_dir():
            raise UsageError(
                f"lmix masks: {str(out / name)!r} is a folder where lmix masks writes its file {name}; "
                "remove it or give another --out"
            )
    study = run_mask_study(size=tuple(args.size), ks=ks, lams=lams, n=args.n, decay=args.decay, seed=args.seed)
    paths = write_study(study, out)
    print(
        f"lmix masks: {study.n} masks of {size_text(study.size)} per row, decay {study.decay:g}, seed {study.seed}; "
        f"mean [95% CI] ({study.seconds:.1f} s)"
    )
    print("\n".join(table_lines(study)))
    note = clipped_note(study)
    if note is not None:
        print(note)
    print(f"wrote {len(paths)} files to {out}: " + ", ".join(p.name for p in paths))
    return 0
