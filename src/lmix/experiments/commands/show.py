"""``lmix show``: write a PNG grid of every mixing method's masks and mixed images (sequences, volumes).

Images (the default): rows of the input batch; LMix, FMix, CutMix, Mixup and Cutout (mask and
mixed image per sample, with lam); LMix masks for several k from the same noise; LMix's optional
image sharpening. The default images are crops of scikit-learn's two bundled sample photos (no
download). ``--dataset osuleaf`` (or ``arrowhead``) mixes time series instead: each mask is a
strip above a line plot of the sample, its partner and the mix. ``--volume`` mixes volumes
(B, C, D, H, W), clips panning across the sample photos, and shows slices along depth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 16, 1024, 128
CLIP_FRAMES = 16  # depth of the --volume clips


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="draw the masks and mixed images (or sequences, volumes) of every method (PNG)",
        description="Write a PNG grid: masks and mixed images of LMix, FMix, CutMix, Mixup and Cutout, "
        "LMix masks for several k from the same noise, and LMix's image sharpening. With --dataset, the same "
        "for time series (masks as strips above line plots); with --volume, for volumes (slices along depth).",
    )
    p.add_argument("--out", default="mix.png", help="output PNG file (default: mix.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of every mixer (default: 0)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="folder of .jpg/.png images to mix (the first 8 by name; default: scikit-learn's sample photos)",
    )
    source.add_argument(
        "--dataset",
        metavar="NAME",
        default=None,
        help="mix sequences instead: 8 training series of a bundled time-series data set, osuleaf or arrowhead "
        "(the 'timeseries' extra), classes in turn",
    )
    source.add_argument(
        "--volume",
        action="store_true",
        help=f"mix volumes instead: two {CLIP_FRAMES}-frame clips panning across scikit-learn's sample photos "
        "(B, 3, D, H, W), shown as slices along depth",
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"side of the square images (or volume frames) in pixels, {MIN_SIZE}..{MAX_SIZE} (default: "
        f"{DEFAULT_SIZE}; sequences keep their length)",
    )
    p.add_argument(
        "--max-soft",
        type=float,
        default=None,
        metavar="S",
        help="soft edges for the LMix and FMix masks: the share of pixels ramped on each side, in [0, 0.5] "
        "(default: 0, binary masks)",
    )
    p.add_argument(
        "--reformulate",
        action="store_true",
        help="LMix and FMix draw the area from Beta(alpha + 1, alpha) and keep the own label (lam = 1), as the FMix "
        "reference's reformulation; titles then give the area",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmix.experiments.cli import UsageError

    if args.size is not None and not MIN_SIZE <= args.size <= MAX_SIZE:
        raise UsageError(f"lmix show: --size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {args.size}")
    if args.dataset is not None and args.size is not None:
        raise UsageError("lmix show: --size sets the side of images; a sequence keeps its length (leave --size out)")
    from lmix.experiments.train.config import SEED_BOUNDS, SEED_LIMIT

    if not 0 <= args.seed < SEED_LIMIT:
        raise UsageError(f"lmix show: --seed must be an integer in {SEED_BOUNDS}, got {args.seed}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"lmix show: --out must end in .png, got {args.out!r}")
    _check_out(out)
    size = DEFAULT_SIZE if args.size is None else args.size
    options = _mask_options(args)
    if args.dataset is not None:
        return _show_sequences(args.dataset, args.seed, out, options)

    from lmix.experiments.viz import (
        build_grid_content,
        build_volume_content,
        load_image_folder,
        mixing_figure,
        sample_clip_batch,
        sample_photo_batch,
        save_figure,
    )

    if args.volume:
        volumes = sample_clip_batch(CLIP_FRAMES, size)
        save_figure(mixing_figure(build_volume_content(volumes, seed=args.seed, mask_options=options)), out)
        print(
            f"wrote {out} (2 volumes of {CLIP_FRAMES}x{size}x{size}, clips of the sample photos, seed {args.seed}"
            f"{_options_note(options)})"
        )
        return 0
    if args.images is None:
        images = sample_photo_batch(size)
        source = "scikit-learn sample photos"
    else:
        try:
            images = load_image_folder(args.images, size=size)
        except (FileNotFoundError, NotADirectoryError, ValueError) as err:
            raise UsageError(f"lmix show: --images: {err}") from err
        if images.shape[0] < 2:
            raise UsageError(f"lmix show: --images: need at least 2 images to mix, found 1 in {args.images!r}")
        source = f"{images.shape[0]} images from {args.images}"
    content = build_grid_content(images, seed=args.seed, mask_options=options)
    fig = mixing_figure(content)
    save_figure(fig, out)
    print(f"wrote {out} ({source}, {size}x{size}, seed {args.seed}{_options_note(options)})")
    return 0


def _check_out(out: Path) -> None:
    """Before any work: UsageError where ``--out`` is a folder or lies inside a file; WriteError (one line
    naming it) where its folder takes no new file (no permission, a read-only file system)."""
    from lmix.experiments.cli import UsageError
    from lmix.experiments.io import not_a_file
    from lmix.experiments.records import check_writable

    problem = not_a_file(out, example="mix.png")
    if problem is not None:
        raise UsageError(f"lmix show: {problem}")
    check_writable(out)


def _mask_options(args: argparse.Namespace) -> dict[str, object]:
    """``--max-soft`` and ``--reformulate`` as the figures' mask options, checked by the mixers' own checks."""
    from lmix.errors import LmixError
    from lmix.experiments.cli import UsageError
    from lmix.experiments.viz import check_mask_options

    options: dict[str, object] = {"reformulate": bool(args.reformulate)}
    if args.max_soft is not None:
        options["max_soft"] = args.max_soft
    try:
        return check_mask_options(options)
    except LmixError as err:
        raise UsageError(f"lmix show: --max-soft: {err}") from None


def _options_note(options: dict[str, object]) -> str:
    """``, LMix/FMix max_soft=0.1, reformulate`` for the closing line ("" for the defaults)."""
    parts = [f"max_soft={options['max_soft']:g}"] if options["max_soft"] else []
    parts += ["reformulate"] if options["reformulate"] else []
    return f", LMix/FMix {' '.join(parts)}" if parts else ""


def _show_sequences(name: str, seed: int, out: Path, options: dict[str, object]) -> int:
    """``lmix show --dataset NAME``: the sequence figure of 8 training series of ``name``."""
    from lmix.data.timeseries import TIMESERIES_DATASETS, MissingTimeseriesExtraError
    from lmix.experiments.cli import UsageError
    from lmix.experiments.viz import build_sequence_content, sample_sequence_batch, save_figure, sequence_figure

    if name not in TIMESERIES_DATASETS:
        raise UsageError(
            f"lmix show: --dataset takes a time-series data set ({', '.join(TIMESERIES_DATASETS)}), got {name!r}; "
            "for images give --images DIR"
        )
    try:
        series = sample_sequence_batch(name)
    except MissingTimeseriesExtraError as err:
        raise UsageError(f"lmix show: {err}") from None
    source = f"{series.shape[0]} training series of {name}"
    content = build_sequence_content(series, seed=seed, source=source, mask_options=options)
    save_figure(sequence_figure(content), out)
    print(f"wrote {out} ({source}, length {series.shape[2]}, seed {seed}{_options_note(options)})")
    return 0
