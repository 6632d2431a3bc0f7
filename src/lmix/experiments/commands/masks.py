"""``lmix masks``: statistics of CutMix, FMix and LMix masks against k (regions, boundary, spectrum)."""

from __future__ import annotations

import argparse
import math

from lmix.experiments.commands import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "masks",
        help="mask diagnostics: regions, boundary, largest region and spectrum of CutMix/FMix/LMix masks per k",
        description="Draw N masks per configuration (CutMix, FMix = LMix k=0, LMix at each k; each lam) and "
        "measure the connected regions of each mask and of its complement (4-connectivity), the boundary "
        "share (4-neighbour pixel pairs that differ), the largest region's share of the image and the radial "
        "power spectrum. Prints a table (mean and 95% CI) and writes masks.md, masks.json and PNG figures.",
    )
    p.add_argument("--size", nargs=2, type=int, default=[32, 32], metavar=("H", "W"), help="mask size (default 32 32)")
    p.add_argument("--k", default="0,0.5,1,2,4,8", help="comma-separated LMix k >= 0 (default 0,0.5,1,2,4,8)")
    p.add_argument("--lam", default="0.5", help="comma-separated mask areas in (0, 1) (default 0.5)")
    p.add_argument("--n", type=int, default=1000, help="masks per configuration, >= 2 (default 1000)")
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

    from lmix.experiments.masks import run_mask_study, table_lines, write_study

    ks = _floats(args.k, "--k")
    lams = _floats(args.lam, "--lam")
    if any(k < 0 for k in ks):
        raise UsageError(f"lmix masks: --k values must be >= 0, got {args.k!r}")
    if any(not 0 < x < 1 for x in lams):
        raise UsageError(f"lmix masks: --lam values must lie in (0, 1), got {args.lam!r}")
    h, w = args.size
    if h < 2 or w < 2:
        raise UsageError(f"lmix masks: --size H W must both be >= 2, got {h} {w}")
    if args.n < 2:
        raise UsageError(f"lmix masks: --n must be >= 2 (masks per configuration), got {args.n}")
    if not math.isfinite(args.decay) or args.decay < 0:
        raise UsageError(f"lmix masks: --decay must be >= 0, got {args.decay}")
    if args.seed < 0:
        raise UsageError(f"lmix masks: --seed must be >= 0, got {args.seed}")
    out = Path(args.out) if args.out else Path("runs") / f"masks-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    study = run_mask_study(size=(h, w), ks=ks, lams=lams, n=args.n, decay=args.decay, seed=args.seed)
    paths = write_study(study, out)
    print(
        f"lmix masks: {study.n} masks of {h}x{w} per row, decay {study.decay:g}, seed {study.seed}; "
        f"mean [95% CI] ({study.seconds:.1f} s)"
    )
    print("\n".join(table_lines(study)))
    print(f"wrote {len(paths)} files to {out}: " + ", ".join(p.name for p in paths))
    return 0
