"""``lmix show``: write a PNG grid of every mixing method's masks and mixed images.

Rows: the input batch; LMix, FMix, CutMix, Mixup and Cutout (mask and mixed image per sample,
with lam); LMix masks for several k from the same noise; LMix's optional image sharpening.
The default images are crops of scikit-learn's two bundled sample photos (no download).
"""

from __future__ import annotations

import argparse
from pathlib import Path

MIN_SIZE, MAX_SIZE = 16, 1024


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="draw the masks and mixed images of every method (PNG)",
        description="Write a PNG grid: masks and mixed images of LMix, FMix, CutMix, Mixup and Cutout, "
        "LMix masks for several k from the same noise, and LMix's image sharpening.",
    )
    p.add_argument("--out", default="mix.png", help="output PNG file (default: mix.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of every mixer (default: 0)")
    p.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="folder of .jpg/.png images to mix (the first 8 by name; default: scikit-learn's sample photos)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=128,
        help=f"side of the square images in pixels, {MIN_SIZE}..{MAX_SIZE} (default: 128)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmix.experiments.cli import UsageError

    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise UsageError(f"lmix show: --size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {args.size}")
    if args.seed < 0:
        raise UsageError(f"lmix show: --seed must be >= 0, got {args.seed}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"lmix show: --out must end in .png, got {args.out!r}")

    from lmix.experiments.viz import (
        build_grid_content,
        load_image_folder,
        mixing_figure,
        sample_photo_batch,
        save_figure,
    )

    if args.images is None:
        images = sample_photo_batch(args.size)
        source = "scikit-learn sample photos"
    else:
        try:
            images = load_image_folder(args.images, size=args.size)
        except (FileNotFoundError, NotADirectoryError, ValueError) as err:
            raise UsageError(f"lmix show: --images: {err}") from err
        if images.shape[0] < 2:
            raise UsageError(f"lmix show: --images: need at least 2 images to mix, found 1 in {args.images!r}")
        source = f"{images.shape[0]} images from {args.images}"
    content = build_grid_content(images, seed=args.seed)
    fig = mixing_figure(content)
    save_figure(fig, out)
    print(f"wrote {out} ({source}, {args.size}x{args.size}, seed {args.seed})")
    return 0
